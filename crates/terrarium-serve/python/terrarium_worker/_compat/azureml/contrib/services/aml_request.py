from azureml_inference_server_http.api.aml_request import _rawHttpRequested, rawhttp, AMLRequest  # noqa: F401

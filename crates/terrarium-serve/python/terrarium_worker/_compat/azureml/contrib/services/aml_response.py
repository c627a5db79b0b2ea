from azureml_inference_server_http.api.aml_response import *  # noqa: F401,F403

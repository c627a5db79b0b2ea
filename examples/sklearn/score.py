"""An Azure ML style entry script for the model train.py saved:
`terrarium deploy iris --env sklearn-example --model outputs/model --entry examples/sklearn/score.py`."""

import json
import os

import joblib

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.joblib"))


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {"predictions": model.predict(rows).tolist()}

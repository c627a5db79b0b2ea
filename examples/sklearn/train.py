"""Train a small classifier; the README quickstart runs this with `terrarium run`, then serves
the saved model with `terrarium deploy` and score.py."""

import os

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

X, y = load_iris(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
model = LogisticRegression(max_iter=500).fit(X_train, y_train)
print(f"accuracy: {model.score(X_test, y_test):.3f}")
os.makedirs("outputs/model", exist_ok=True)
joblib.dump(model, "outputs/model/model.joblib")
print("saved outputs/model/model.joblib")

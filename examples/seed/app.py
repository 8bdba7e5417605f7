"""The seed tutorial's service: Flask wrapping Keras ``model.predict`` on ``my_model.h5``.

Written the way the classic guide writes it, so that the benchmark measures what people
deploy before they find ferry: load the model at import, one ``/predict`` route that reads
``{"data": [[...], ...]}`` and answers ``{"predictions": [[...], ...]}``, and Flask's own
server (threaded). Two departures, both for the benchmark harness and neither on the
request path: it binds 127.0.0.1 instead of 0.0.0.0, and the port comes from ``PORT``
(default 5000, as in the guide) so that it can run on a free port.

    python train.py   # -> my_model.h5
    python app.py
    curl -X POST -H 'Content-Type: application/json' -d @sample.json localhost:5000/predict
"""

import os

import numpy as np
from flask import Flask, jsonify, request
from tensorflow.keras.models import load_model

app = Flask(__name__)
model = load_model("my_model.h5")


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json(force=True)
    prediction = model.predict(np.array(data["data"]))
    return jsonify({"predictions": prediction.tolist()})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))

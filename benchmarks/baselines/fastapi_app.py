"""The reference most teams write: FastAPI + ONNX Runtime, one request = one ``session.run``.

A pydantic body model, the session created at import, no batching, served by uvicorn with
one worker (``uvicorn benchmarks.baselines.fastapi_app:app``). The model comes from
``MODEL_PATH``.

Teams write the route in one of two ways, so both are here with the same body:
``/predict`` is ``async def`` (on one core it is the faster: no thread-pool hop), and
``/predict-sync`` is a plain ``def``, which FastAPI runs in its thread pool (its docs' advice
when unsure, and common in ML tutorials since inference blocks). The issue's target ratios
are taken against the faster form served with ``--no-access-log``, so that they are not
flattered; the typical form (``def``, uvicorn's default access log) is reported beside it.
"""

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

session = ort.InferenceSession(os.environ["MODEL_PATH"], providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

app = FastAPI()


class PredictRequest(BaseModel):
    data: list[list[float]]


@app.post("/predict")
async def predict(request: PredictRequest) -> dict[str, list[list[float]]]:
    inputs = np.asarray(request.data, dtype=np.float32)
    outputs = session.run(None, {input_name: inputs})[0]
    return {"predictions": outputs.tolist()}


@app.post("/predict-sync")
def predict_sync(request: PredictRequest) -> dict[str, list[list[float]]]:
    inputs = np.asarray(request.data, dtype=np.float32)
    outputs = session.run(None, {input_name: inputs})[0]
    return {"predictions": outputs.tolist()}

"""The reference most teams write: FastAPI + ONNX Runtime, one request = one ``session.run``.

A pydantic body model, the session created at import, no batching, served by uvicorn with
one worker (``uvicorn benchmarks.baselines.fastapi_app:app``). The model comes from
``MODEL_PATH``. Two choices make it the stronger of the common variants, so that ratios
against it are not flattered: the route is ``async def`` (on one core a thread-pool hop only
costs), and the benchmark runs uvicorn with ``--no-access-log``.
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

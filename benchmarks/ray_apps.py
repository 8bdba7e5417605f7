"""The Ray Serve deployments ferry on Ray is compared with (benchmarks/ray_bench.py).

Written the way Ray's documentation writes them (a ``@serve.deployment`` class with
``@serve.ingress(FastAPI())``), in a module of their own without ``from __future__ import
annotations``, so that FastAPI reads the route's ``Request`` annotation as Ray's examples
have it. Imported only by the benchmark's cluster child process (needs ferry[ray]).
"""

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, Request
from ray import serve

MODEL = "digits"
app = FastAPI()


@serve.deployment
@serve.ingress(app)
class OnnxModel:
    """An ONNX model behind Ray Serve: one session, one route parsing the V2 JSON body."""

    def __init__(self, path: str) -> None:
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @app.post(f"/v2/models/{MODEL}/infer")
    async def infer(self, request: Request) -> dict:
        body = await request.json()
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        return {"model_name": MODEL, "outputs": [{
            "name": self.output_name, "datatype": "FP32", "shape": list(y.shape),
            "data": y.ravel().tolist()}]}


noop_app = FastAPI()
NOOP_ANSWER = {"model_name": MODEL, "outputs": [{"name": "noop", "datatype": "FP32",
                                                 "shape": [1, 1], "data": [0.0]}]}


@serve.deployment
@serve.ingress(noop_app)
class Noop:
    """Ray's ceiling: the same kind of ingress with no model behind it.

    It reads the request body, as every server compared here must: in Ray Serve the body
    travels from the proxy to the replica when the app asks for it.
    """

    @noop_app.post(f"/v2/models/{MODEL}/infer")
    async def infer(self, request: Request) -> dict:
        await request.body()
        return NOOP_ANSWER


noop_unread_app = FastAPI()


@serve.deployment
@serve.ingress(noop_unread_app)
class NoopUnread:
    """The same no-op that never asks for the body: the proxy-to-replica round trip alone."""

    @noop_unread_app.post(f"/v2/models/{MODEL}/infer")
    async def infer(self) -> dict:
        return NOOP_ANSWER

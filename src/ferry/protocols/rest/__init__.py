"""The REST front end of ferry.

The Open Inference Protocol (V2) with Triton's binary tensor data and model repository
extensions, the seed's ``/predict``, and TensorFlow Serving's predict API.

Build it with :func:`ferry.protocols.rest.app.create_app`.
"""

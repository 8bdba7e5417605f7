"""The wire codecs: tensors to and from bytes, V2 JSON and row formats, for every door.

The server's REST and gRPC adapters and both clients code tensors here, so that a datatype,
a length prefix or a shape check is written once and behaves the same on every door. Each
module is one format:

* :mod:`~ferry.codec.raw`: one tensor <-> raw little-endian bytes (the V2 binary extension,
  gRPC ``raw_input_contents`` / ``raw_output_contents``).
* :mod:`~ferry.codec.v2json`: V2 JSON documents (with the binary extension) <-> requests and
  responses.
* :mod:`~ferry.codec.rows`: the row formats of ``/predict`` and TF Serving.
* :mod:`~ferry.codec.request`: the one place an :class:`~ferry.inference.InferRequest` is
  built, after each door has unpacked its own framing.

Nothing here knows HTTP, protobuf or a JSON library: the adapters parse and serialise (the
server with orjson, the REST client with the standard library), so the REST client needs no
server extras. This package imports only the leaves (errors, signature, inference) and numpy.
"""

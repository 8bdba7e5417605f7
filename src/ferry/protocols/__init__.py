"""Protocol adapters: decode a transport's requests, call the engine, encode its answers.

Each adapter (``rest``, ``grpc``) depends on the engine facade and the transport-free types
of :mod:`ferry.inference`, never on another adapter.
"""

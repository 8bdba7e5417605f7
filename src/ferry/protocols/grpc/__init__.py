"""The Open Inference Protocol's ``GRPCInferenceService`` on ``grpc.aio``.

``proto/inference.proto`` is the service, ``_generated/`` the code grpcio-tools makes from it
(``make proto``), ``convert`` maps messages to :mod:`ferry.inference` types, ``errors`` maps
ferry errors to gRPC statuses, ``servicer`` answers the RPCs through the engine, ``health``
serves ``grpc.health.v1`` from the engine's readiness, and ``server`` puts them together.
"""

"""Limits before work: bounds a caller meets before the server spends anything on it.

The per-connection and per-request bounds live with their transport
(:mod:`ferry.protocols.rest.limits`, :class:`ferry.protocols.grpc.server.GrpcLimits`) and
the engine (``max_request_elements``); what holds per *caller* across connections and doors
is a policy of the engine's chain, here:

- :mod:`~ferry.limits.rate`: token buckets per principal (:class:`TokenBuckets`) and the
  :class:`RateLimit` policy (429 with ``Retry-After`` / ``RESOURCE_EXHAUSTED``).

Like :mod:`ferry.security`, it imports only the leaves (:mod:`ferry.call`,
:mod:`ferry.policy`, :mod:`ferry.errors`); ``ferry.server`` plugs it in from the settings.
It needs no optional extra.
"""

from ferry.limits.rate import Rate, RateLimit, TokenBuckets, caller_key

__all__ = ["Rate", "RateLimit", "TokenBuckets", "caller_key"]

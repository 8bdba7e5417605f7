"""What a policy is: the interface every cross-cutting rule implements, and what it decides on.

Authentication, authorization, per-client rate limits, deadlines and audit logging must hold
on every way a request reaches a model. Each is one :class:`Policy`; the engine runs them in
a fixed order (:class:`Stage`) at the top of each of its public calls — inference,
metadata, readiness, the repository index, load and unload — with the call's
:class:`~ferry.call.CallContext` and an :class:`Action` naming what is asked. A policy
refuses by raising a :class:`~ferry.errors.FerryError` (``AuthenticationError`` becomes 401
and ``UNAUTHENTICATED``, ``PermissionDeniedError`` 403 and ``PERMISSION_DENIED``,
``RateLimitedError`` 429 and ``RESOURCE_EXHAUSTED``...); the transports turn it into their
answer as they do for every engine error, so a policy never learns HTTP or gRPC.

The chain is empty by default, and an empty chain costs one truth test per call (the
:class:`Action` is not even built). Policies are synchronous on purpose: they run for every
request, on the event loop; anything slow (fetching keys, reading a file) belongs in the
policy's own background refresh, never in :meth:`Policy.check`.

How to add one::

    class RefuseAnonymous:
        stage = Stage.AUTHENTICATE
        def check(self, call: CallContext, action: Action) -> None:
            if call.credentials is None and action.kind is not Kind.LIVE:
                raise AuthenticationError("send Authorization: Bearer <key>")
            call.principal = "someone"

    Engine(repository, policies=[RefuseAnonymous()])

A leaf module (it imports only the call context): the engine runs policies
(:class:`ferry.engine.policy.PolicyChain`), ``ferry.security`` implements them, and neither
imports the other.
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

from ferry.call import CallContext

__all__ = ["Action", "Kind", "Policy", "Stage"]


class Kind(enum.Enum):
    """What a call asks of the engine (the ``action`` a policy decides on)."""

    LIVE = "live"
    READY = "ready"
    MODEL_READY = "model_ready"
    SERVER_METADATA = "server_metadata"
    MODEL_METADATA = "model_metadata"
    INDEX = "index"
    LOAD = "load"
    UNLOAD = "unload"
    INFER = "infer"


class Action:
    """One call's request: its kind, and the model (and version) it names, if any.

    Built for every call that a policy chain checks, so it is a plain slotted class: a
    frozen dataclass cost twice as much to make (each field set through
    ``object.__setattr__``). Treat it as read-only: policies never change it.
    """

    __slots__ = ("kind", "model", "version")

    def __init__(self, kind: Kind, model: str | None = None,
                 version: str | None = None) -> None:
        self.kind = kind
        self.model = model
        self.version = version

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Action):
            return NotImplemented
        return (self.kind, self.model, self.version) == (other.kind, other.model,
                                                         other.version)

    def __hash__(self) -> int:
        return hash((self.kind, self.model, self.version))

    def __repr__(self) -> str:
        return f"Action(kind={self.kind!r}, model={self.model!r}, version={self.version!r})"


class Stage(enum.IntEnum):
    """Where in the chain a policy runs: the chain's fixed order, first to last.

    Authenticate before authorize (roles need a principal), authorize before rate limit
    (a caller who may not call spends no tokens), rate limit before the deadline check, and
    admission (queues, breakers) last, closest to the work. Audit policies see every call
    that got that far.
    """

    AUTHENTICATE = 10
    AUTHORIZE = 20
    RATE_LIMIT = 30
    DEADLINE = 40
    ADMISSION = 50
    AUDIT = 60


@runtime_checkable
class Policy(Protocol):
    """One cross-cutting rule: return to let the call on, raise a FerryError to refuse it."""

    stage: Stage

    def check(self, call: CallContext, action: Action) -> None:
        """Let ``call`` do ``action``, or raise why not (it may set ``call.principal``)."""
        ...

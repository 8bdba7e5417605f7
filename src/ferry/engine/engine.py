"""The engine facade: the one object the REST and gRPC adapters talk to.

It keeps a table ``model name -> Snapshot`` (the versions served now). Every change to
the table (start, hot swap, unload) builds the new versions *beside* the old ones, warms
them, and then replaces the whole snapshot in one assignment on the event loop: a request
resolves its version from one snapshot and keeps that version object until it is
answered, so a swap never fails a request; the old versions retire once their in-flight
requests are done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from ferry import __version__
from ferry.call import CallContext
from ferry.engine.breaker import Breaker, BreakerState
from ferry.engine.config import PREVIOUS, ModelConfig, read_model_config
from ferry.engine.pipelined import PipelineVersion
from ferry.engine.policy import PolicyChain
from ferry.engine.served import ServedVersion
from ferry.errors import (
    ConfigError,
    FerryError,
    InputError,
    InternalError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    quote_name,
)
from ferry.inference import (
    InferRequest,
    InferResponse,
    ModelIndexEntry,
    ModelMetadata,
    ServerMetadata,
    Tensor,
)
from ferry.observability.metrics import Metrics
from ferry.pipelines import Member, build_graph, parse_pipeline, stored_graph
from ferry.pipelines.create import check_signature
from ferry.policy import Action, Kind, Policy
from ferry.repository import ModelRef, Repository
from ferry.runtimes import Arrays, load_runtime

__all__ = ["EXTENSIONS", "Engine", "Snapshot"]

log = logging.getLogger("ferry.engine")

#: A module constant: an Enum member read as a class attribute costs a slow look-up, and
#: every inference call names this one.
_INFER = Kind.INFER

#: What a request resolves to: a model's version, or a pipeline's (engine/pipelined.py).
Version = ServedVersion | PipelineVersion

#: The protocol extensions both adapters really implement (V2 server metadata).
EXTENSIONS = ["binary_tensor_data", "model_repository"]


class Snapshot:
    """The versions of one model served now; replaced whole, never mutated.

    What every request asks of it (the latest version, the metadata) is worked out once
    here rather than per request.
    """

    __slots__ = ("_labels", "_metadata", "guards", "latest", "versions")

    def __init__(self, versions: dict[int, Version],
                 guards: dict[int, _Guard] | None = None) -> None:
        self.versions = versions
        #: Version -> its breaker and fallback; empty for a model with neither configured.
        self.guards = guards or {}
        #: The highest served version: the target of a request without a version.
        self.latest = versions[max(versions)]
        self._labels = [str(v) for v in sorted(versions)]
        self._metadata: dict[int, ModelMetadata] = {}

    def labels(self) -> list[str]:
        """Served version numbers as strings, ascending."""
        return list(self._labels)

    def metadata(self, name: str, served: Version) -> ModelMetadata:
        """The metadata of one served version (made once; shared, so never modify it)."""
        meta = self._metadata.get(served.version)
        if meta is None:
            m = served.manifest
            meta = self._metadata[served.version] = ModelMetadata(
                name=name, versions=list(self._labels), platform=m.platform,
                inputs=m.signature.inputs, outputs=m.signature.outputs, labels=m.labels)
        return meta


@dataclass(slots=True)
class _Guard:
    """What stands in front of one served version: its breaker and where it falls back to.

    ``fallback`` is ``(model, version)`` (version None: that model's latest), resolved from
    the model's ``fallback`` setting when the version was loaded.
    """

    served: Version
    breaker: Breaker | None
    fallback: tuple[str, int | None] | None

    def fallback_label(self) -> str:
        assert self.fallback is not None
        name, version = self.fallback
        return name if version is None else f"{name}:{version}"


@dataclass
class _State:
    state: str
    reason: str = ""
    pinned: list[int] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _version_number(text: str) -> int | None:
    """A client's version string as a number, or None when it cannot name a version.

    Only plain ASCII digits count (``str.isdigit`` also takes "\uff11" and other scripts'
    digits), and at most 18 of them: ``int()`` of a 5,000-digit string raises ValueError,
    which would surface as a 500 instead of a 404.
    """
    if 0 < len(text) <= 18 and text.isascii() and text.isdigit():
        return int(text)
    return None


def _too_many_elements(total: int, limit: int) -> NoReturn:
    """Refuse a request whose inputs hold ``total`` elements, more than ``limit``."""
    from ferry.errors import PayloadTooLargeError

    raise PayloadTooLargeError(
        f"the request's inputs hold {total} elements, more than this server's limit of "
        f"{limit} (max_request_elements)", hint="send fewer rows per request")


#: The longest V2 ``timeout`` parameter accepted: a day, in microseconds.
_MAX_TIMEOUT_US = 86_400_000_000


def _timeout_parameter(value: object) -> float | None:
    """The deadline a V2 ``timeout`` request parameter asks for (None for 0: no timeout).

    Microseconds from now, as Triton reads the same parameter (its ``schedule_policy``
    extension), so a tritonclient user's ``timeout=`` means the same here.

    Raises:
        InputError: not a whole number of microseconds between 0 and a day.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 <= value <= _MAX_TIMEOUT_US or value != int(value):
        raise InputError(f"parameter 'timeout' must be a whole number of microseconds "
                         f"between 0 and {_MAX_TIMEOUT_US} (a day), got {value!r:.40}")
    if not value:
        return None
    return time.monotonic() + value / 1e6


def _earlier(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _refuse_classification(request: InferRequest) -> None:
    """Refuse the ``classification`` output parameter rather than silently ignore it.

    Triton answers an output requested with ``classification: k`` as its top k classes, a
    BYTES tensor of ``"value:index[:label]"`` strings. ferry does not implement that, and an
    answer of raw scores where labels were asked for would be wrong without saying so; so it
    refuses the request, naming the parameter (docs/serving.md).

    Raises:
        InputError: an output asks for ``classification``.
    """
    for output in request.outputs or ():
        if "classification" in output.parameters:
            raise InputError(
                f"output {quote_name(output.name)}: the 'classification' parameter is not "
                "supported; ask for the output itself and take the top classes from its "
                "scores (POST /predict adds the label of each row's highest score)")


def parse_selection(models: Iterable[str] | None) -> dict[str, list[int] | None]:
    """``["a", "b:2", "b:3"]`` -> ``{"a": None, "b": [2, 3]}`` (None: the version policy).

    Raises:
        InputError: a malformed name or version (the message names it).
    """
    chosen: dict[str, list[int] | None] = {}
    for text in models or ():
        ref = ModelRef.parse(text.strip())
        if ref.version is None:
            chosen.setdefault(ref.name, None)
        else:
            pinned = chosen.get(ref.name) or []
            chosen[ref.name] = sorted({*pinned, ref.version})
    return chosen


class Engine:
    """Serves the models of a repository: validation, batching, admission, hot swap.

    Args:
        repository: where the models are.
        models: which to serve (``name`` or ``name:version``); all models when omitted.
        defaults: per-model settings for models without their own ``config.toml``.
        default_model: the target of ``POST /predict`` without a name (the only model
            when omitted and there is just one).
        metrics: where to count (a fresh registry by default).
        drain_timeout: how long a retiring version waits for its in-flight requests.
        policies: the policy chain every public call passes (:mod:`ferry.policy`),
            in their stage order; none by default.
        max_request_elements: the most tensor elements one inference request may carry,
            all inputs together (413 / INVALID_ARGUMENT past it, before it is queued);
            no bound when None.

    Every public call takes the caller's :class:`~ferry.call.CallContext` first and passes
    the policy chain before anything else; below this facade nothing sees the context.
    """

    def __init__(self, repository: Repository, *, models: Sequence[str] | None = None,
                 defaults: ModelConfig | None = None, default_model: str | None = None,
                 metrics: Metrics | None = None, drain_timeout: float = 30.0,
                 policies: Iterable[Policy] = (),
                 max_request_elements: int | None = None,
                 default_timeout: float | None = None,
                 max_backlog: int | None = None) -> None:
        self.repository = repository
        #: Requests waiting in all queues together past which lower priorities give way.
        self._max_backlog = max_backlog
        #: Seconds a request without a deadline of its own may take (None: no bound).
        self._default_timeout = default_timeout
        self._max_elements = max_request_elements
        self.policies = PolicyChain(policies)
        # What inference tests, for a request: None for an empty chain, so that the empty
        # default costs an attribute load rather than a Python-level __bool__ call.
        self._chain = self.policies if self.policies else None
        self.metrics = metrics if metrics is not None else Metrics()
        self._selection = parse_selection(models)
        self._defaults = defaults or ModelConfig()
        self._default = default_model
        self._drain_timeout = drain_timeout
        self._table: dict[str, Snapshot] = {}
        self._states: dict[str, _State] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self._stopping = False
        self._withdrawn = False  # withdraw(): unready, still serving

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load and warm every chosen model; the engine is ready when this returns.

        Raises:
            NotFoundError: a chosen model or version is not in the repository.
            ConfigError: the repository holds no model to serve, or a config is invalid.
            ArtifactError: a version failed its integrity check or could not load.
        """
        names = list(self._selection) or self.repository.models()
        if not names:
            raise ConfigError(
                f"repository {str(self.repository.root)!r} holds no model to serve",
                hint="import one first: ferry import my_model.h5 --name digits",
            )
        if self._default is not None and self._default not in names:
            raise ConfigError(f"default model {self._default!r} is not among the served "
                              f"models ({', '.join(names)})")
        for name in names:
            self._states[name] = _State("LOADING", pinned=self._selection.get(name))
        for name in names:
            await self._load_model(name)
        for snap in self._table.values():  # fallbacks to models that loaded after theirs
            for guard in snap.guards.values():
                if guard.fallback is not None and guard.fallback[0] != guard.served.name:
                    self._check_fallback(guard, None, pending=False)
        self._started = True

    async def stop(self, timeout: float = 30.0) -> None:
        """Become unready, let in-flight requests finish (up to ``timeout`` s), close all."""
        self._stopping = True
        table, self._table = self._table, {}
        for name in table:
            self.metrics.served(name, ())
        retiring: list[Awaitable[None]] = [served.retire(timeout) for snap in table.values()
                                           for served in snap.versions.values()]
        for state in self._states.values():
            retiring.extend(state.tasks)
        await asyncio.gather(*retiring, return_exceptions=True)

    def withdraw(self) -> None:
        """The first step of a graceful stop: readiness turns false, requests are still served.

        Load balancers and probes see the server unready (V2 ``/v2/health/ready``, gRPC
        ``ServerReady`` and ``grpc.health``) and stop sending, while requests that still
        arrive are answered as before; :meth:`stop` follows.
        """
        self._withdrawn = True

    def live(self, call: CallContext) -> bool:
        """The process is up and its event loop answers."""
        if self.policies:
            self.policies.check(call, Action(Kind.LIVE))
        return not self._stopping

    def ready(self, call: CallContext) -> bool:
        """Started, not stopping (nor withdrawn), and every model has a ready version."""
        if self.policies:
            self.policies.check(call, Action(Kind.READY))
        return (self._started and not self._stopping and not self._withdrawn
                and all(self._table.values()))

    def model_ready(self, call: CallContext, name: str, version: str | None = None) -> bool:
        """Whether ``name`` (at ``version``, or its latest) takes requests now."""
        if self.policies:
            self.policies.check(call, Action(Kind.MODEL_READY, name, version))
        if self._stopping:
            return False
        snap = self._table.get(name)
        if snap is None:
            return False
        if not version:
            return True
        return _version_number(version) in snap.versions

    # ------------------------------------------------------------------ metadata

    def server_metadata(self, call: CallContext) -> ServerMetadata:
        """Name, version and the protocol extensions ferry implements."""
        if self.policies:
            self.policies.check(call, Action(Kind.SERVER_METADATA))
        return ServerMetadata("ferry", __version__, list(EXTENSIONS))

    def model_metadata(self, call: CallContext, name: str, version: str | None = None
                       ) -> ModelMetadata:
        """Metadata of a served model (of one version when given).

        Raises:
            NotFoundError: the model or version is not served (the message lists what is).
        """
        if self.policies:
            self.policies.check(call, Action(Kind.MODEL_METADATA, name, version))
        snap = self._snapshot(name)
        return snap.metadata(name, self._version(snap, name, version))

    def default_model(self) -> str | None:
        """The model ``POST /predict`` serves: the configured one, or the only one."""
        if self._default is not None:
            return self._default
        return next(iter(self._table)) if len(self._table) == 1 else None

    def served_models(self) -> list[str]:
        """Names of the models served now, sorted."""
        return sorted(self._table)

    def served_versions(self, name: str) -> dict[int, Version]:
        """The versions of ``name`` served now, by number (empty when none); read only.

        For views of what a checked call already answered (the console lists instances
        after :meth:`repository_index`); like :meth:`served_models`, it checks nothing.
        """
        snap = self._table.get(name)
        return dict(snap.versions) if snap is not None else {}

    def repository_index(self, call: CallContext, ready_only: bool = False
                         ) -> list[ModelIndexEntry]:
        """Every model of the repository with its state (one row per served version)."""
        if self.policies:
            self.policies.check(call, Action(Kind.INDEX))
        names = sorted(set(self.repository.models()) | set(self._table) | set(self._states))
        rows: list[ModelIndexEntry] = []
        for name in names:
            snap = self._table.get(name)
            if snap is not None:
                rows.extend(ModelIndexEntry(name, label, "READY") for label in snap.labels())
            elif not ready_only:
                state = self._states.get(name)
                if state is None:
                    rows.append(ModelIndexEntry(name, None, "UNAVAILABLE", "not loaded"))
                else:
                    rows.append(ModelIndexEntry(name, None, state.state, state.reason))
        return rows

    # ------------------------------------------------------------------ inference

    async def infer(self, call: CallContext, request: InferRequest) -> InferResponse:
        """Validate ``request`` against the signature, run it (batched), answer.

        The answer is no longer wanted after ``call.deadline`` (the request is dropped from
        its queue then, and never run).

        Raises:
            NotFoundError: unknown model, version or output.
            InputError: an input is missing, unknown, repeated, or of the wrong type/shape.
            RateLimitedError: the model's queue is full (``retry_after`` set).
            UnavailableError: the server is stopping, the version was retired, or its
                circuit breaker is open and no fallback answers (``retry_after`` set).
            DeadlineExceededError: the request's deadline passed.
        """
        self._enter_infer(call, request.model_name, request.model_version)
        snap = self._snapshot(request.model_name)
        served = self._version(snap, request.model_name, request.model_version)
        if snap.guards:
            return await self._guarded(call, request, snap.guards[served.version])
        return await self._infer(call, request, served)

    async def infer_built(self, call: CallContext, model: str, version: str | None,
                          build: Callable[[ModelMetadata], InferRequest]
                          ) -> tuple[InferResponse, ModelMetadata]:
        """Like :meth:`infer`, for a request that can only be decoded knowing the model.

        The row formats (``/predict``, TF Serving) need the model's inputs to turn rows into
        tensors. ``build`` gets the metadata of the version that will answer and returns the
        request; the policy chain runs once, before anything about the model is looked up
        (a caller refused learns nothing of it).

        Returns:
            The answer and the metadata ``build`` was given.
        """
        self._enter_infer(call, model, version)
        snap = self._snapshot(model)
        served = self._version(snap, model, version)
        meta = snap.metadata(model, served)
        if snap.guards:
            return await self._guarded(call, build(meta), snap.guards[served.version]), meta
        return await self._infer(call, build(meta), served), meta

    def _enter_infer(self, call: CallContext, model: str, version: str | None) -> None:
        """Pass an inference call's first checks, before anything of the model is looked up.

        The policy chain, the call's own problem, and whether the engine serves at all.
        """
        chain = self._chain
        if chain is not None:
            chain.check(call, Action(_INFER, model, version))
        if call.problem is not None:
            raise call.problem
        if self._stopping or not self._started:
            self._check_serving()

    def _check_serving(self) -> None:
        if self._stopping:
            raise UnavailableError("the server is shutting down", retry_after=1.0)
        if not self._started:
            raise UnavailableError("the server is starting: its models are loading",
                                   retry_after=1.0)

    async def _infer(self, call: CallContext, request: InferRequest, served: Version
                     ) -> InferResponse:
        signature = served.signature
        arrays: Arrays = {}
        total = 0
        for tensor in request.inputs:
            name = tensor.name
            if name in arrays:
                raise InputError(f"input {quote_name(name)} is given twice")
            arrays[name] = data = tensor.data
            total += data.size
        limit = self._max_elements
        if limit is not None and total > limit:
            _too_many_elements(total, limit)
        signature.check_inputs(arrays)
        outputs: tuple[str, ...] | None = None
        types = served.output_types
        if request.outputs:
            _refuse_classification(request)
            outputs = tuple(dict.fromkeys(o.name for o in request.outputs))
            for name in outputs:
                if name not in types:
                    signature.output(name)  # NotFoundError naming the outputs there are
        deadline = call.deadline
        if request.parameters and "timeout" in request.parameters:
            deadline = _earlier(deadline, _timeout_parameter(request.parameters["timeout"]))
        if deadline is None and self._default_timeout is not None:
            deadline = time.monotonic() + self._default_timeout
        if self._max_backlog is not None:
            self._give_way(served)
        results = await served.infer(arrays, outputs, deadline)
        return InferResponse(
            model_name=request.model_name, model_version=served.label, id=request.id,
            outputs=[Tensor(name, types[name], array.shape, array)
                     for name, array in results.items()],
        )

    def _give_way(self, served: Version) -> None:
        """Refuse ``served``'s request if the server is overloaded and it ranks lower.

        Overloaded: at least ``max_backlog`` requests wait in all queues together. Then a
        model whose ``priority`` is below that of a model with waiting work is refused
        (429), so the capacity left goes to the higher one; the highest priority with
        waiting work is admitted as usual (its own queue bounds it). Counting walks the
        served versions: only done when ``max_backlog`` is set.
        """
        total, top = 0, None
        for snap in self._table.values():
            for version in snap.versions.values():
                waiting = version.queued
                if waiting:
                    total += waiting
                    rank = version.config.priority
                    top = rank if top is None else max(top, rank)
        mine = served.config.priority
        if top is not None and total >= self._max_backlog and mine < top:  # type: ignore[operator]
            raise RateLimitedError(
                f"the server is overloaded ({total} requests are waiting in all queues; "
                f"max_backlog is {self._max_backlog}): model {quote_name(served.name)} "
                f"(priority {mine}) gives way to models of priority {top}",
                retry_after=1.0,
                hint="retry later; raise this model's priority or the server's max_backlog")

    # ------------------------------------------------------------------ breakers, fallbacks

    async def _guarded(self, call: CallContext, request: InferRequest, guard: _Guard
                       ) -> InferResponse:
        """Run ``request`` on a version with a breaker or a fallback (docs/serving.md).

        The version answers while its breaker lets it; while the breaker is open, or when
        the version's queue is full, the fallback answers if one is configured, and the
        request is refused otherwise (503 with the cool-down left, or the 429 as it was).
        A request that fails is not retried on the fallback: it ran, and counts.
        """
        served = guard.served
        try:
            response = await self._attempt(call, request, served, guard.breaker)
        except RateLimitedError as exc:
            if guard.fallback is None:
                raise
            return await self._fall_back(call, request, guard, "its queue is full",
                                         exc.retry_after)
        if response is not None:
            return response
        assert guard.breaker is not None
        wait = guard.breaker.retry_after()
        if guard.fallback is None:
            raise UnavailableError(
                f"model {quote_name(served.name)} version {served.label} is unavailable: "
                "its circuit breaker is open after repeated failures",
                hint="retry after its cool-down; a fallback (config.toml) would answer "
                "meanwhile", retry_after=wait)
        return await self._fall_back(call, request, guard, "its circuit breaker is open",
                                     wait)

    async def _attempt(self, call: CallContext, request: InferRequest, served: Version,
                       breaker: Breaker | None) -> InferResponse | None:
        """Run on ``served`` through ``breaker``: the answer, or None when it refuses.

        A runtime failure (InternalError) or an answer over the latency bound counts
        against the version; a client's error, a full queue, a passed deadline or a
        cancelled call says nothing about it.
        """
        if breaker is None:
            return await self._infer(call, request, served)
        ticket = breaker.admit()
        if ticket is None:
            return None
        start = time.perf_counter()
        try:
            response = await self._infer(call, request, served)
        except InternalError:
            breaker.failed(ticket)
            raise
        except BaseException:
            breaker.released(ticket)
            raise
        breaker.succeeded(ticket, time.perf_counter() - start)
        return response

    async def _fall_back(self, call: CallContext, request: InferRequest, guard: _Guard,
                         why: str, retry_after: float) -> InferResponse:
        """Answer with the guard's fallback, or refuse naming why neither can answer."""
        served = guard.served
        assert guard.fallback is not None
        name, version = guard.fallback
        refused = (f"model {quote_name(served.name)} version {served.label} is unavailable "
                   f"({why})")
        snap = self._table.get(name)
        target = None
        if snap is not None:
            target = snap.latest if version is None else snap.versions.get(version)
        if target is None:
            raise UnavailableError(f"{refused} and its fallback {guard.fallback_label()} is "
                                   "not served", retry_after=max(retry_after, 0.1))
        other = snap.guards.get(target.version) if snap is not None else None
        response = await self._attempt(call, request, target,
                                       other.breaker if other is not None else None)
        if response is None:
            assert other is not None and other.breaker is not None
            raise UnavailableError(
                f"{refused} and the circuit breaker of its fallback {name}:{target.label} is "
                "open too", retry_after=max(min(retry_after, other.breaker.retry_after()), 0.1))
        response.model_name = target.name
        call.fallback = f"{target.name}:{target.label}"
        self.metrics.fell_back(served.name)
        return response

    def _guards(self, name: str, loaded: dict[int, Version], config: ModelConfig
                ) -> dict[int, _Guard]:
        """The breakers and fallbacks of a model's versions about to be served.

        A version kept from the current snapshot keeps its breaker (a reload does not
        close an open one). A fallback must be served: one of these versions, or a version
        of another model served now (checked again once every model has loaded, when the
        server starts), taking the same inputs.

        Raises:
            ConfigError: the configured fallback is not served, or takes other inputs.
        """
        if config.breaker is None and config.fallback is None:
            return {}
        current = self._table.get(name)
        before = current.guards if current is not None else {}
        guards: dict[int, _Guard] = {}
        for version, served in loaded.items():
            kept = before.get(version)
            breaker = None
            if kept is not None and kept.served is served:
                breaker = kept.breaker
            elif config.breaker is not None:
                breaker = self._breaker(served, config)
            guards[version] = _Guard(served, breaker,
                                     self._fallback_of(name, version, loaded, config))
        for guard in guards.values():
            self._check_fallback(guard, loaded if guard.fallback and
                                 guard.fallback[0] == name else None)
        return guards

    def _breaker(self, served: Version, config: ModelConfig) -> Breaker:
        settings = config.breaker
        assert settings is not None
        metrics, model, label = self.metrics, served.name, served.label

        def changed(state: BreakerState) -> None:
            snap = self._table.get(model)
            guard = snap.guards.get(served.version) if snap is not None else None
            if guard is not None and guard.served is served:  # not a retired version's
                metrics.breaker_changed(model, label, state)
            level = logging.INFO if state is BreakerState.CLOSED else logging.WARNING
            log.log(level, "circuit breaker of %s:%s is %s", model, label,
                    state.name.lower().replace("_", "-"))

        return Breaker(
            failures=settings.failures, window=settings.window_s,
            cooldown=settings.cooldown_s, half_open_calls=settings.half_open_calls,
            latency=None if settings.latency_ms is None else settings.latency_ms / 1000.0,
            on_change=changed)

    @staticmethod
    def _fallback_of(name: str, version: int, loaded: dict[int, Version],
                     config: ModelConfig) -> tuple[str, int | None] | None:
        """Where ``name:version`` falls back to; None for the fallback itself (no chains)."""
        text = config.fallback
        if text is None:
            return None
        if text == PREVIOUS:
            older = [v for v in loaded if v < version]
            if not older and len(loaded) < 2:
                raise ConfigError(
                    f"model {quote_name(name)}: fallback = 'previous' needs an older served "
                    f"version, and only version {version} is served",
                    hint="serve two versions (version_policy = 'latest:2') or name the "
                    "fallback")
            return (name, max(older)) if older else None
        if text.isdigit():
            number = int(text)
            return None if number == version else (name, number)
        ref = ModelRef.parse(text)
        if ref.name == name and ref.version in (version, None):
            if ref.version is None and version != max(loaded):
                return name, max(loaded)  # this model's latest
            return None
        return ref.name, ref.version

    def _check_fallback(self, guard: _Guard, loaded: dict[int, Version] | None,
                        *, pending: bool = True) -> None:
        """Raise ConfigError unless ``guard``'s fallback is served and takes its inputs.

        ``loaded``: the versions being loaded when the fallback is of the same model
        (None: another model, looked up in the table; while the server starts and that
        model is still to load, the check waits for :meth:`start`).
        """
        if guard.fallback is None:
            return
        served = guard.served
        name, version = guard.fallback
        label = guard.fallback_label()
        where = f"model {quote_name(served.name)} version {served.label}"
        if loaded is not None:
            target = loaded.get(version) if version is not None else None
            if target is None:
                raise ConfigError(
                    f"{where}: its fallback {label} is not served (served versions: "
                    f"{', '.join(map(str, sorted(loaded)))})",
                    hint="serve it too, e.g. version_policy = 'all' or 'latest:2' in the "
                    "model's config.toml")
        else:
            snap = self._table.get(name)
            if snap is None and pending and not self._started and name in self._states:
                return  # loads later in start(), which checks again
            target = None
            if snap is not None:
                target = snap.latest if version is None else snap.versions.get(version)
            if target is None:
                served_now = (", ".join(snap.labels()) if snap is not None
                              else "the model is not served")
                raise ConfigError(f"{where}: its fallback {label} is not served "
                                  f"({served_now})",
                                  hint="serve that model and version as well")
        if target.signature.inputs != served.signature.inputs:
            raise ConfigError(f"{where}: its fallback {label} takes other inputs",
                              hint="a fallback must take the same inputs (names, datatypes, "
                              "shapes)")
        theirs = {s.name: s.datatype for s in target.signature.outputs}
        missing = [s.name for s in served.signature.outputs
                   if theirs.get(s.name) != s.datatype]
        if missing:
            raise ConfigError(f"{where}: its fallback {label} lacks output "
                              f"{quote_name(missing[0])} (or gives it another datatype)",
                              hint="a fallback must give the same outputs")

    # ------------------------------------------------------------------ repository

    async def load_model(self, call: CallContext, name: str) -> None:
        """Load (or reload) ``name``: the versions its policy picks now, hot-swapped in.

        New versions load and warm beside the served ones; the table switches in one step;
        versions no longer chosen retire after their in-flight requests. If loading fails,
        the served versions stay and the error is raised.

        Raises:
            NotFoundError: no such model (or pinned version) in the repository.
            InputError: ``name`` is not a valid model name.
            ArtifactError, ConfigError: a version or its config could not be loaded.
        """
        if self.policies:
            self.policies.check(call, Action(Kind.LOAD, name))
        await self._load_model(name)

    async def _load_model(self, name: str) -> None:
        self._check_known(name)
        async with self._lock(name):
            if self._stopping:
                raise UnavailableError(
                    f"cannot load {quote_name(name)}: the server is shutting down")
            state = self._states.setdefault(name, _State("LOADING"))
            try:
                wanted = self._wanted(name, state.pinned)
                config = read_model_config(self.repository.model_dir(name), self._defaults)
                current = self._table.get(name)
                have = current.versions if current is not None else {}
                loaded: dict[int, Version] = {}
                loop = asyncio.get_running_loop()
                for version in wanted:
                    if version in have and have[version].config == config:
                        loaded[version] = have[version]
                        continue
                    served = await loop.run_in_executor(None, self._load, name, version, config)
                    await self._attach(served, loop)
                    loaded[version] = served
            except Exception as exc:
                if name not in self._table:
                    state.state, state.reason = "UNAVAILABLE", str(exc)
                raise
            if self._stopping:
                # stop() began while these versions loaded and did not see them: close the
                # new ones here, or their runtimes and threads would outlive the engine.
                await asyncio.gather(*(served.retire(0.0) for v, served in loaded.items()
                                       if have.get(v) is not served))
                raise UnavailableError(
                    f"cannot load {quote_name(name)}: the server is shutting down")
            try:
                guards = self._guards(name, loaded, config)
            except ConfigError as exc:
                await asyncio.gather(*(served.retire(0.0) for v, served in loaded.items()
                                       if have.get(v) is not served))
                if name not in self._table:
                    state.state, state.reason = "UNAVAILABLE", str(exc)
                raise
            self._table[name] = snap = Snapshot(loaded, guards)
            self.metrics.served(name, snap.labels())
            for version, served in loaded.items():
                guard = guards.get(version)
                breaker = guard.breaker if guard is not None else None
                self.metrics.breaker_changed(name, served.label,
                                             None if breaker is None else breaker.state)
            state.state, state.reason = "READY", ""
            for version, served in have.items():
                if loaded.get(version) is not served:
                    self._retire_later(state, served)
            log.info("serving %s versions %s", name, ", ".join(map(str, sorted(loaded))))

    async def unload_model(self, call: CallContext, name: str) -> None:
        """Stop serving ``name``; in-flight requests finish first.

        Raises:
            NotFoundError: the model is neither served nor in the repository.
            InputError: ``name`` is not a valid model name.
        """
        if self.policies:
            self.policies.check(call, Action(Kind.UNLOAD, name))
        self._check_known(name)
        async with self._lock(name):
            snap = self._table.pop(name, None)
            if snap is None and name not in self.repository.models():
                raise NotFoundError(f"unknown model {quote_name(name)}")
            self.metrics.served(name, ())
            state = self._states.setdefault(name, _State("UNAVAILABLE"))
            state.state, state.reason = "UNAVAILABLE", "unloaded"
            if snap is not None:
                await asyncio.gather(*(served.retire(self._drain_timeout)
                                       for served in snap.versions.values()))
            # The request id of the call that asked is on the line (observability.logging).
            log.info("unloaded %s", name)

    # ------------------------------------------------------------------ internals

    def _check_known(self, name: str) -> None:
        """Refuse a name the engine has never had before keeping anything for it.

        Loads and unloads name models from clients: a lock, a state or an index row kept for
        each name a client made up would grow without bound. A name the engine
        serves, or has state for, or that the repository holds, gets them; any other is
        refused here.

        Raises:
            InputError: not a valid model name (``../../etc``).
            NotFoundError: a valid name the repository does not hold.
        """
        if name in self._table or name in self._states or self.repository.versions(name):
            return
        if self.policies:
            raise NotFoundError(f"model {quote_name(name)} is not in the repository")
        known = ", ".join(self.repository.models()) or "none"
        raise NotFoundError(f"model {quote_name(name)} is not in repository "
                            f"{str(self.repository.root)!r} (models: {known})")

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _snapshot(self, name: str) -> Snapshot:
        snap = self._table.get(name)
        if snap is None:
            served = self._listing("served models", sorted(self._table))
            if name in self._states:
                raise NotFoundError(f"model {quote_name(name)} is not loaded{served}")
            raise NotFoundError(f"unknown model {quote_name(name)}{served}")
        return snap

    def _listing(self, what: str, names: list[str]) -> str:
        """`` (what: a, b)`` for a not-found message, or nothing when policies guard calls.

        Listing what exists helps a user find the right name; with a policy chain (say,
        authorization scoped to model-name patterns) it would tell a caller about models
        the chain keeps from it, so the message names only what the caller asked for.
        """
        if self.policies:
            return ""
        return f" ({what}: {', '.join(names) or 'none'})"

    @staticmethod
    def _version(snap: Snapshot, name: str, version: str | None) -> Version:
        if not version:
            return snap.latest
        number = _version_number(version)
        served = snap.versions.get(number) if number is not None else None
        if served is None:
            raise NotFoundError(f"model {quote_name(name)} has no served version "
                                f"{quote_name(version)} "
                                f"(versions: {', '.join(snap.labels())})")
        return served

    def _wanted(self, name: str, pinned: list[int] | None) -> list[int]:
        have = self.repository.versions(name)
        if not have:
            known = ", ".join(self.repository.models()) or "none"
            raise NotFoundError(f"model {quote_name(name)} is not in repository "
                                f"{str(self.repository.root)!r} (models: {known})")
        if pinned is not None:
            missing = [v for v in pinned if v not in have]
            if missing:
                raise NotFoundError(f"model {quote_name(name)} has no version {missing[0]} "
                                    f"(versions: {', '.join(map(str, have))})")
            return pinned
        config = read_model_config(self.repository.model_dir(name), self._defaults)
        chosen = config.policy.select(have)
        if not chosen:
            raise NotFoundError(f"model {quote_name(name)}: version policy "
                                f"{config.version_policy!r} picks none of versions "
                                f"{', '.join(map(str, have))}")
        return chosen

    def _load(self, name: str, version: int, config: ModelConfig) -> Version:
        """Verify, load and warm one version (blocking; runs on a loader thread)."""
        start = time.perf_counter()
        stored = self.repository.open(f"{name}:{version}")
        manifest = stored.manifest
        if manifest.kind == "pipeline":
            # Checked against the repository first: depth (and so loops of pipelines)
            # before any member is loaded; then against the served members (_link).
            stored_graph(self.repository, manifest, stored.artifact_path)
            spec = parse_pipeline(stored.artifact_path.read_bytes(), f"{name}:{version}")
            pipeline = PipelineVersion(manifest, spec, config, self.metrics)
            pipeline.load_seconds = time.perf_counter() - start
            log.info("loaded pipeline %s:%s (%d steps)", name, version, len(spec.steps))
            return pipeline
        runtimes = [load_runtime(manifest.runtime, stored.artifact_path, manifest.signature,
                                 config.runtime) for _ in range(config.instances)]
        served = ServedVersion(manifest, runtimes, config, self.metrics)
        try:
            served.warm()
        except BaseException:
            served.close()
            raise
        served.load_seconds = time.perf_counter() - start
        log.info("loaded %s:%s in %.3f s", name, version, served.load_seconds)
        return served

    async def _attach(self, served: Version, loop: asyncio.AbstractEventLoop) -> None:
        """Start serving a loaded version (a pipeline's members are linked first)."""
        if isinstance(served, PipelineVersion):
            await self._link(served)
        served.attach(loop)

    async def _link(self, pipeline: PipelineVersion) -> None:
        """Serve a pipeline's members (loading those not served yet), then check it on them.

        Raises:
            ConfigError: a member cannot be served, or a pinned version is not served.
            ArtifactError: the pipeline does not fit its served members (the message names
                the step and the edge).
        """
        where = f"pipeline {pipeline.name}:{pipeline.label}"
        for sid, step in pipeline.spec.steps.items():
            if step.kind != "model":
                continue
            ref = ModelRef.parse(step.target)
            if ref.name not in self._table:
                try:
                    await self._load_model(ref.name)
                except FerryError as exc:
                    raise ConfigError(f"{where}: step {sid!r}: its model {ref.name!r} could "
                                      f"not be served: {exc.message}") from None
            snap = self._table[ref.name]
            if ref.version is not None and ref.version not in snap.versions:
                raise ConfigError(f"{where}: step {sid!r} is pinned to {ref}, which is not "
                                  f"served (served versions: {', '.join(snap.labels())})",
                                  hint="serve that version too, e.g. version_policy = 'all' "
                                  f"in {ref.name}'s config.toml")

        def resolve(text: str) -> Member:
            ref = ModelRef.parse(text)
            snap = self._table[ref.name]
            served = snap.latest if ref.version is None else snap.versions[ref.version]
            labels = served.manifest.labels
            return Member(ref.name, served.version, ref.version is not None, served.signature,
                          tuple(labels) if labels else None,
                          served.depth if isinstance(served, PipelineVersion) else 0)

        graph = build_graph(pipeline.spec, resolve, where=where)
        check_signature(graph, pipeline.manifest, where)
        pipeline.link(graph, self._run_member)

    async def _run_member(self, name: str, version: int | None, arrays: Arrays,
                          deadline: float | None) -> Arrays:
        """Run a pipeline's model step on the served member, through the normal path.

        The member's version is resolved here, right before it is admitted (no await
        between), so a hot swap of a member followed by its latest version is atomic.

        Raises:
            UnavailableError: the member is no longer served.
        """
        snap = self._table.get(name)
        served = None
        if snap is not None:
            served = snap.latest if version is None else snap.versions.get(version)
        if served is None:
            label = name if version is None else f"{name}:{version}"
            raise UnavailableError(f"its model {label} is not served now", retry_after=1.0)
        call = CallContext("ferry-pipeline", "internal", "pipeline", deadline=deadline)
        types = {spec.name: spec.datatype for spec in served.signature.inputs}
        inputs = [Tensor(key, types.get(key, ""), array.shape, array)
                  for key, array in arrays.items()]
        request = InferRequest(model_name=name, inputs=inputs, model_version=served.label)
        if snap is not None and snap.guards:
            response = await self._guarded(call, request, snap.guards[served.version])
        else:
            response = await self._infer(call, request, served)
        return {tensor.name: tensor.data for tensor in response.outputs}

    def _retire_later(self, state: _State, served: Version) -> None:
        task = asyncio.get_running_loop().create_task(served.retire(self._drain_timeout))
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

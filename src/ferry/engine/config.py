"""Per-model serving settings: batching, instances, threads, queue bound, version policy.

They live beside the model in the repository, in ``<repo>/<model>/config.toml``, so that an
operator tunes a model where it is stored and a new version inherits the tuning (manifests
are immutable; this file is not). The repository ignores entries that are not version
numbers, so the file never looks like a version. Every key is optional; missing keys come
from the server's defaults (``[model_defaults]`` in ``ferry.toml``)::

    version_policy = "latest:2"     # latest | latest:N | all | 1,3
    instances = 2                   # runtime sessions, each run by its own thread
    max_queue = 128                 # requests waiting; more are refused at once (429)

    [runtime]                       # ferry.runtimes.RuntimeOptions
    intra_op_threads = 1

    [batching]
    max_batch_size = 64             # rows gathered into one run
    max_queue_delay_ms = 0.5        # with several instances: wait this long for a fuller batch
    preferred_batch_sizes = [32, 64]

    fallback = "previous"           # answers while a version's breaker is open or its queue
                                    # is full: "previous", a version (1), or "other:3"
    [breaker]                       # a circuit breaker per served version (none without it)
    failures = 5                    # runtime failures (or slow answers) within window_s
    window_s = 10.0                 #   that open it
    latency_ms = 250.0              # an answer slower than this counts as a failure
    cooldown_s = 5.0                # open this long, then half-open
    half_open_calls = 1             # trial requests while half-open; that many successes close it
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ferry.errors import ConfigError, InputError
from ferry.repository import ModelRef, VersionPolicy
from ferry.runtimes import RuntimeOptions

__all__ = [
    "MODEL_CONFIG_NAME",
    "PREVIOUS",
    "BatchingConfig",
    "BreakerConfig",
    "ModelConfig",
    "config_error",
    "merge",
    "read_model_config",
]

#: The per-model settings file, beside the version directories.
MODEL_CONFIG_NAME = "config.toml"


class BatchingConfig(BaseModel):
    """Dynamic batching of one model (only used when its signature has a batch axis)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="gather concurrent requests into one run")
    max_batch_size: int = Field(
        64, ge=1, le=1 << 16,
        description="most rows in one run; a single request with more rows runs alone",
    )
    max_queue_delay_ms: float = Field(
        0.0, ge=0.0, le=10_000.0,
        description="while another instance of the model is busy, how long a free instance "
        "may wait for a fuller batch; an idle model never waits",
    )
    preferred_batch_sizes: tuple[int, ...] = Field(
        (), description="batch sizes the runtime handles best; a gathered batch is cut to "
        "the largest one it can fill exactly",
    )

    @model_validator(mode="after")
    def _preferred_within_max(self) -> BatchingConfig:
        bad = [s for s in self.preferred_batch_sizes if not 1 <= s <= self.max_batch_size]
        if bad:
            raise ValueError(
                f"preferred_batch_sizes {list(self.preferred_batch_sizes)}: each must be "
                f"between 1 and max_batch_size ({self.max_batch_size}), got {bad[0]}"
            )
        return self


#: The ``fallback`` of a model whose versions each fall back to the next older served one.
PREVIOUS = "previous"


class BreakerConfig(BaseModel):
    """The circuit breaker of each served version of one model (ferry.engine.breaker)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failures: int = Field(
        5, ge=1, le=10_000,
        description="runtime failures (or answers slower than latency_ms) within window_s "
        "that open the breaker; a client's bad input, a full queue or a passed deadline "
        "never counts",
    )
    window_s: float = Field(10.0, gt=0.0, le=86_400.0,
                            description="the sliding window the failures are counted in")
    latency_ms: float | None = Field(
        None, gt=0.0, le=3_600_000.0,
        description="an answer slower than this (queue wait included) counts as a failure; "
        "none by default",
    )
    cooldown_s: float = Field(
        5.0, gt=0.0, le=86_400.0,
        description="how long an open breaker refuses (or sends to the fallback) before it "
        "lets trial requests through",
    )
    half_open_calls: int = Field(
        1, ge=1, le=1_000,
        description="trial requests let through at a time while half-open; that many "
        "successful trials close the breaker, one failing trial opens it again",
    )


def _serving_runtime_defaults() -> RuntimeOptions:
    # A server shares its cores between the event loop (parsing requests) and the runtime;
    # spinning runtime threads would take CPU from the parsing that feeds them.
    return RuntimeOptions(allow_spinning=False)


class ModelConfig(BaseModel):
    """Everything ferry can tune about serving one model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version_policy: str = Field(
        "latest", description="which versions to serve: latest, latest:N, all, or '1,3'"
    )
    instances: int = Field(
        1, ge=1, le=64, description="runtime sessions of each version, each with its own thread"
    )
    max_queue: int = Field(
        256, ge=1, le=1_000_000,
        description="requests that may wait for an instance; more wait in line for room "
        "(max_waiting) or, with max_waiting = 0, are refused at once",
    )
    max_waiting: int = Field(
        4096, ge=0, le=1_000_000,
        description="requests past max_queue that wait in line for room instead of being "
        "refused (back-pressure: clients that resend at once get slower answers, not a "
        "storm of 429s); past it, 429 at once. 0: refuse past max_queue",
    )
    max_wait_ms: float = Field(
        2000.0, gt=0.0, le=3_600_000.0,
        description="how long a request in that line may wait for room before it is "
        "refused with 429 (its own deadline, if sooner, answers 504)",
    )
    priority: int = Field(
        0, ge=-1000, le=1000,
        description="under global overload (more requests waiting in all models' queues "
        "together than the server's max_backlog), requests for a model of lower priority "
        "than a model with waiting work are refused (429) so that the higher one keeps "
        "its capacity",
    )
    warmup: bool = Field(True, description="run each instance before it becomes ready")
    inline_below_ms: float = Field(
        0.1, ge=0.0, le=10.0,
        description="with one instance, run a batch on the event loop instead of a thread "
        "when the warm-up predicts it takes less than this: cheaper than the thread "
        "hand-off (0 = always use the thread)",
    )
    runtime: RuntimeOptions = Field(default_factory=_serving_runtime_defaults)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    breaker: BreakerConfig | None = Field(
        None, description="a circuit breaker for each served version; none by default")
    fallback: str | None = Field(
        None, description="what answers while a version's breaker is open or its queue is "
        "full: 'previous' (the next older served version), a version number of this model, "
        "or another model as 'name:version' (or 'name' for its latest); it must be served "
        "and take the same inputs",
    )

    @field_validator("version_policy")
    @classmethod
    def _valid_policy(cls, value: str) -> str:
        try:
            VersionPolicy.parse(value)
        except InputError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("fallback", mode="before")
    @classmethod
    def _valid_fallback(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value  # None, or a type pydantic names in its own error
        if value == PREVIOUS:
            return value
        if value.isascii() and value.isdigit():
            if int(value) < 1:
                raise ValueError("a fallback version number is 1 or more")
            return value
        try:
            ModelRef.parse(value)
        except InputError as exc:
            raise ValueError(f"expected 'previous', a version number or 'model:version' "
                             f"({exc.message})") from None
        return value

    @property
    def policy(self) -> VersionPolicy:
        """The parsed version policy."""
        return VersionPolicy.parse(self.version_policy)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two nested dicts of settings; ``override`` wins, tables merge key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_error(exc: ValidationError, where: str) -> ConfigError:
    """Turn pydantic's validation error into a ``ConfigError`` naming key, value and rule."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return ConfigError(f"{where}: unknown setting {key!r}", hint="check its spelling")
    value = first.get("input")
    shown = "" if isinstance(value, Mapping) else f" = {value!r}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(f"{where}: {key}{shown}: {message}{more}")


def read_model_config(model_dir: Path, defaults: ModelConfig | None = None) -> ModelConfig:
    """Read ``<model_dir>/config.toml`` over ``defaults`` (the file may be absent).

    Raises:
        ConfigError: the file is not TOML or holds an unknown key or invalid value; the
            message names the file, the key, the value and what is allowed.
    """
    defaults = defaults or ModelConfig()
    path = model_dir / MODEL_CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return defaults
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return ModelConfig.model_validate(merge(defaults.model_dump(), data))
    except ValidationError as exc:
        raise config_error(exc, str(path)) from None

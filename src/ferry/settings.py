"""Server settings: defaults, then ``ferry.toml``, then ``FERRY_*`` variables, then flags.

Validated once at startup, so a typo in a setting stops the server with one line naming
the key and the rule instead of surfacing later as odd behaviour. Per-model settings
(batching, instances, queue bound) live beside each model in the repository
(``<repo>/<model>/config.toml``); ``[model_defaults]`` here applies to models without one.

Example ``ferry.toml``::

    repository = "model-repository"
    models = ["digits", "fraud:3"]
    http_port = 8000
    grpc_port = 8001
    workers = 2
    log_format = "json"

    [model_defaults]
    max_queue = 512
    [model_defaults.batching]
    max_batch_size = 64

    [security]                      # auth is off unless a keys file or JWT key is given
    api_keys_file = "/etc/ferry/keys.json"
    audit_log = "/var/log/ferry/audit.jsonl"

Environment: ``FERRY_HTTP_PORT=9000``, ``FERRY_MODELS=digits,fraud:3``,
``FERRY_MODEL_DEFAULTS__MAX_QUEUE=512``, ``FERRY_SECURITY__API_KEYS_FILE=keys.json``
(``__`` separates nested keys).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ferry.engine.config import ModelConfig, config_error
from ferry.errors import ConfigError

__all__ = ["RateLimitSettings", "RateRule", "SecuritySettings", "ServerSettings",
           "load_settings"]

_MIB = 1 << 20


class SecuritySettings(BaseModel):
    """``[security]``: authentication, authorization and the audit log (docs/serving.md).

    Authentication is on as soon as an API keys file or a JWT key is configured, and off
    otherwise (``ferry demo``, ``make serve``): then every caller may do everything.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_keys_file: Path | None = Field(
        None, description="API keys file written by `ferry keys add` (turns auth on)")
    jwt_hs256_secret_file: Path | None = Field(
        None, description="file holding the HS256 secret JWTs are signed with (turns auth on)")
    jwt_jwks_file: Path | None = Field(
        None, description="JWKS file of the public keys (RS256, ES256) JWTs are signed with "
        "(turns auth on)")
    jwt_audience: str | None = Field(None, description="the `aud` a JWT must carry")
    jwt_issuer: str | None = Field(None, description="the `iss` a JWT must carry")
    jwt_leeway: float = Field(30.0, ge=0.0, le=300.0,
                              description="seconds of clock skew allowed on `exp`/`nbf`")
    open_health: bool = Field(True, description="liveness and readiness need no credentials")
    audit_log: str | None = Field(
        None, description="audit log file (JSON lines), '-' for stderr; none when unset")
    trusted_keys_file: Path | None = Field(
        None, description="public keys (`ed25519 <base64> comment` lines); when set, every "
        "version loaded must carry a signature by one of them (`ferry sign`)")

    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain of the server: REST and gRPC speak TLS "
        "(with tls_key_file; reloaded on SIGHUP)")
    tls_key_file: Path | None = Field(
        None, description="PEM private key of tls_cert_file (unencrypted, mode 0600)")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA certificate(s): every client must present a certificate "
        "signed by it (mTLS)")
    tls_client_principal: bool = Field(
        False, description="a call without a bearer credential authenticates as its verified "
        "client certificate, principal 'cert:<CN>' (needs tls_client_ca_file; turns auth on)")
    tls_client_grants: tuple[str, ...] = Field(
        ("infer:*",), description="grants ('role:pattern') of a principal authenticated by "
        "its client certificate")

    @property
    def enabled(self) -> bool:
        """Whether callers must authenticate: a keys file, a JWT key or client certificates."""
        return self.tls_client_principal or any(path is not None for path in (
            self.api_keys_file, self.jwt_hs256_secret_file, self.jwt_jwks_file))

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> SecuritySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs TLS: set tls_cert_file and tls_key_file")
        if self.tls_client_principal and self.tls_client_ca_file is None:
            raise ValueError("tls_client_principal needs client certificates: set "
                             "tls_client_ca_file")
        return self

    @model_validator(mode="after")
    def _jwt_claims_need_a_jwt_key(self) -> SecuritySettings:
        if self.jwt_hs256_secret_file is None and self.jwt_jwks_file is None:
            for name in ("jwt_audience", "jwt_issuer"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} needs a JWT key: set jwt_hs256_secret_file "
                                     "or jwt_jwks_file")
        return self


class RateRule(BaseModel):
    """One caller's token bucket: ``rate`` calls a second, ``burst`` at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0.0, description="calls a second (the bucket's refill)")
    burst: int | None = Field(
        None, ge=1, description="calls at once (the bucket's size); default: one second's "
        "worth of rate, at least 1")

    @property
    def bucket(self) -> int:
        """The bucket's size: ``burst``, or one second's worth of ``rate`` (at least 1)."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


class RateLimitSettings(BaseModel):
    """``[rate_limit]``: a token bucket per caller (principal, or host when anonymous).

    Off unless ``rate`` is set. Refused calls get 429 with ``Retry-After`` (gRPC
    ``RESOURCE_EXHAUSTED`` with ``retry-after`` metadata); health calls are never counted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float | None = Field(
        None, gt=0.0, description="calls a second each caller may make; off when unset")
    burst: int | None = Field(
        None, ge=1, description="calls a caller may make at once (the bucket's size); "
        "default: one second's worth of rate, at least 1")
    calls: Literal["infer", "all"] = Field(
        "infer", description="which calls take a token: 'infer' (inference only) or 'all' "
        "(every call but liveness and readiness)")
    max_callers: int = Field(
        65_536, ge=1, description="most callers' buckets kept; the least recently used is "
        "dropped past it")
    principals: dict[str, RateRule] = Field(
        default_factory=dict, description="rules for particular callers, keyed as the "
        "audit log names them: 'key:NAME', 'jwt:SUB', 'cert:CN', or 'ip:HOST' for "
        "anonymous callers")

    @property
    def enabled(self) -> bool:
        """Whether calls are counted at all (``rate`` is set)."""
        return self.rate is not None

    @model_validator(mode="after")
    def _burst_needs_a_rate(self) -> RateLimitSettings:
        if self.rate is None and (self.burst is not None or self.principals):
            raise ValueError("burst and principals need a rate: set [rate_limit] rate")
        return self


class ServerSettings(BaseSettings):
    """Everything ``ferry serve`` can be told (flags, ``ferry.toml`` or ``FERRY_*``)."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    repository: Path = Field(Path("model-repository"), description="the model repository")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="models to serve, 'name' or 'name:version'; all models when empty")
    default_model: str | None = Field(None, description="the model POST /predict serves")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every one)")
    http_port: int = Field(8000, ge=0, le=65535, description="REST port (0: pick a free one)")
    grpc_port: int = Field(8001, ge=0, le=65535, description="gRPC port (0: pick a free one)")
    workers: int = Field(1, ge=1, le=64, description="server processes sharing the ports")
    max_body_bytes: int = Field(64 * _MIB, ge=1024, description="largest REST request body")
    max_message_bytes: int = Field(64 * _MIB, ge=1024, description="largest gRPC message")
    max_request_elements: int = Field(
        16 * _MIB, ge=1, description="most tensor elements in one inference request, all "
        "inputs together, on every door (413 / INVALID_ARGUMENT past it)")
    http_max_connections: int = Field(
        4096, ge=1, description="REST connections open at once; a connection past it is "
        "closed as soon as it is accepted")
    http_keep_alive: float = Field(
        30.0, gt=0.0, description="seconds an idle keep-alive REST connection stays open")
    http_head_timeout: float = Field(
        10.0, gt=0.0, description="seconds a REST request head may take to arrive (408 "
        "after)")
    grpc_max_concurrent_streams: int = Field(
        100, ge=1, description="gRPC calls open at once on one connection (announced to "
        "clients as SETTINGS_MAX_CONCURRENT_STREAMS)")
    grpc_max_concurrent_rpcs: int = Field(
        1024, ge=1, description="gRPC calls open at once in the process; RESOURCE_EXHAUSTED "
        "past it")
    grpc_max_connection_idle: float = Field(
        300.0, gt=0.0, description="seconds a gRPC connection with no call open stays open")
    grpc_handshake_timeout: float = Field(
        10.0, gt=0.0, description="seconds a new gRPC connection may take to complete its "
        "handshake (TLS and the HTTP/2 preface); closed after")
    drain_timeout: float = Field(
        30.0, ge=0.0, description="seconds a stopping server or a retired version waits "
        "for in-flight requests")
    shutdown_grace: float = Field(
        0.0, ge=0.0, description="seconds a stopping server keeps serving with readiness "
        "false (so load balancers stop sending) before it closes its ports and drains")
    max_backlog: int | None = Field(
        None, ge=1, description="requests waiting in all models' queues together past which "
        "the server is overloaded: then models of lower priority (config.toml 'priority') "
        "than one with waiting work are refused (429); unset: models never give way")
    request_timeout: float | None = Field(
        None, gt=0.0, description="seconds an inference request without a deadline of its "
        "own may take (X-Ferry-Timeout-Ms, the V2 'timeout' parameter, gRPC's deadline): "
        "past it, queued work is dropped and answered 504 / DEADLINE_EXCEEDED; unset: none")
    watch: bool = Field(False, description="poll the repository and hot-swap new versions")
    watch_interval: float = Field(2.0, gt=0.0, description="seconds between repository polls")
    console: bool = Field(
        True, description="serve the web console at /console (models, try it, live, admin); "
        "behind the same authentication as the admin routes when [security] is on")
    log_format: Literal["json", "text"] = Field("json", description="log lines as JSON or text")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info")
    model_defaults: ModelConfig = Field(default_factory=ModelConfig,
                                        description="per-model settings without config.toml")
    security: SecuritySettings = Field(
        default_factory=SecuritySettings,
        description="authentication, authorization, audit log; off unless configured")
    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings,
        description="a token bucket per caller; off unless [rate_limit] rate is set")

    @field_validator("models", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags beat ``FERRY_*`` variables, which beat the TOML file."""
        # Flags (init) beat the environment, which beats the file (passed under _file).
        return init_settings, env_settings, _FileSource(settings_cls)


class _FileSource(InitSettingsSource):
    """The TOML file's values, handed over through :func:`load_settings`."""

    data: dict[str, Any] = {}

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls, init_kwargs=dict(_FileSource.data))


def load_settings(config: Path | None = None, **flags: Any) -> ServerSettings:
    """Read settings from ``config`` (TOML), ``FERRY_*`` variables and ``flags``.

    Flags given as ``None`` are ignored (not given on the command line).

    Raises:
        ConfigError: the file cannot be read or parsed, or a value is invalid; the message
            names the source, the key, the value and the rule.
    """
    data: dict[str, Any] = {}
    where = "settings (flags and FERRY_* environment)"
    if config is not None:
        where = f"{config} (or FERRY_* environment, flags)"
        try:
            data = tomllib.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--config {config}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--config {config}: cannot read it ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config}: not valid TOML ({exc})") from None
    _FileSource.data = data
    try:
        return ServerSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, where) from None
    finally:
        _FileSource.data = {}

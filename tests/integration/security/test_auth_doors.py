"""Issue 15 items 2 and 5: authentication, authorization and the audit log on every door.

Real servers, real clients, real credentials: API keys made with :class:`KeyStore` (one
revoked), an HS256 JWT signed with PyJWT, and the policies built by the composition root
(:func:`ferry.server.security_policies`) from a ``[security]`` section, as ``ferry serve``
builds them. Three REST doors — ferry's HTTP/1.1 inference lane, the ASGI app under it, and
the app under stock uvicorn with h11 — and gRPC on the same engine as ferry's REST port.
A last test runs ``ferry serve --api-keys-file --audit-log`` as a subprocess.

Every log record of the in-process servers is kept, and the audit file read, to check that
no key, token or secret used here ever appears in either.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import jwt as pyjwt
import numpy as np
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.engine import Engine
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.protocols.grpc.server import bind, build_server
from ferry.security import KeyStore
from ferry.server import security_policies
from ferry.settings import SecuritySettings
from rest_server import Served, build_repository, serve
from secrets_used import remember

pytestmark = pytest.mark.timeout(300)

ROW = [0.5, -1.0, 2.0, 0.25]
V2_BODY = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                    "data": ROW}]})
JSON = {"content-type": "application/json"}
#: A model that exists but the scoped callers may not see, and one that does not exist.
HIDDEN, MISSING = "pair", "nope"


@dataclass
class Creds:
    """Every credential of the run (the secrets the log checks look for)."""

    infer_mlp: str  # API key, infer:mlp
    admin: str  # API key, admin:*
    reader: str  # API key, read:*
    revoked: str  # API key, revoked before the servers start
    token: str  # HS256 JWT, infer:mlp
    expired: str  # HS256 JWT, expired an hour ago
    secret: str  # the HS256 secret

    def all(self) -> list[str]:
        return [self.infer_mlp, self.admin, self.reader, self.revoked, self.token,
                self.expired, self.secret, *(k.rsplit("_", 1)[1] for k in
                                             (self.infer_mlp, self.admin, self.reader,
                                              self.revoked))]


class _Keep(logging.Handler):
    """Keeps every record formatted, traceback included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + json.dumps(
            {k: str(v) for k, v in vars(record).items()}))


@dataclass
class Setup:
    ferry: Served
    h11: Served
    grpc: str
    creds: Creds
    audit: Path
    logs: _Keep


def _token(secret: str, sub: str, grants: list[str], exp: float) -> str:
    return pyjwt.encode({"sub": sub, "exp": int(exp), "ferry_grants": grants}, secret,
                        algorithm="HS256")


async def _start_grpc(engine: Engine):
    server = build_server(engine)
    port = bind(server, "127.0.0.1", 0)
    await server.start()
    return server, port


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("auth")
    repo = build_repository(root)
    store = KeyStore(root / "keys.json")
    revoked = store.add("old", ["infer:*"])
    store.revoke("old")
    secret = secrets.token_urlsafe(48)
    (root / "hs256.secret").write_text(secret + "\n")
    now = time.time()
    creds = Creds(infer_mlp=store.add("infer-mlp", ["infer:mlp"]),
                  admin=store.add("ops", ["admin:*"]), reader=store.add("dash", ["read:*"]),
                  revoked=revoked, token=_token(secret, "alice", ["infer:mlp"], now + 3600),
                  expired=_token(secret, "bob", ["admin:*"], now - 3600), secret=secret)
    remember(*creds.all())
    audit = root / "audit.jsonl"
    settings = SecuritySettings(api_keys_file=root / "keys.json",
                                jwt_hs256_secret_file=root / "hs256.secret",
                                audit_log=str(audit))
    logs = _Keep()
    root_logger, ferry_logger = logging.getLogger(), logging.getLogger("ferry")
    level = ferry_logger.level
    root_logger.addHandler(logs)
    ferry_logger.setLevel(logging.DEBUG)
    ours, our_audit = security_policies(settings)
    stock, stock_audit = security_policies(settings)
    try:
        with serve(Engine(repo, policies=ours), repo) as rest, \
                serve(Engine(repo, policies=stock), repo, lane="h11") as h11:
            server, port = rest.call(_start_grpc(rest.engine))
            try:
                yield Setup(rest, h11, f"127.0.0.1:{port}", creds, audit, logs)
            finally:
                rest.call(server.stop(grace=1))
    finally:
        root_logger.removeHandler(logs)
        ferry_logger.setLevel(level)
        for log in (our_audit, stock_audit):
            assert log is not None
            log.close()


_counter = iter(range(1_000_000))


def _rid(tag: str) -> str:
    return f"{tag}-{next(_counter)}-{time.monotonic_ns()}"


def _url(setup: Setup, door: str) -> str:
    return (setup.h11 if door == "uvicorn-h11" else setup.ferry).url


def _bearer(value: str | None) -> dict[str, str]:
    return {} if value is None else {"authorization": f"Bearer {value}"}


# (what, method, path template, body): {m} is the model. "infer" with a Content-Length body
# is ferry's lane on the ferry door; "infer, chunked" goes to its ASGI app.
REST_CALLS = {
    "infer": ("POST", "/v2/models/{m}/infer", V2_BODY),
    "infer, chunked": ("POST", "/v2/models/{m}/infer", None),
    "predict": ("POST", "/predict/{m}", orjson.dumps({"data": [ROW]})),
    "tf serving": ("POST", "/v1/models/{m}:predict", orjson.dumps({"instances": [ROW]})),
    "metadata": ("GET", "/v2/models/{m}", b""),
    "model ready": ("GET", "/v2/models/{m}/ready", b""),
    "index": ("POST", "/v2/repository/index", b""),
    "load": ("POST", "/v2/repository/models/{m}/load", b""),
    "unload": ("POST", "/v2/repository/models/{m}/unload", b""),
}


def _rest(setup: Setup, door: str, what: str, model: str, auth: dict[str, str],
          rid: str | None = None) -> httpx.Response:
    method, path, body = REST_CALLS[what]
    headers = {**JSON, **auth, "x-request-id": rid or _rid("r")}
    content = iter([V2_BODY[:9], V2_BODY[9:]]) if body is None else body
    with httpx.Client(base_url=_url(setup, door), timeout=30) as client:
        return client.request(method, path.format(m=model), content=content, headers=headers)


def _grpc(setup: Setup, method: str, model: str, auth: str | None,
          rid: str | None = None) -> object:
    messages = {
        "ModelInfer": _infer_message(model),
        "ModelMetadata": pb.ModelMetadataRequest(name=model),
        "ModelReady": pb.ModelReadyRequest(name=model),
        "ServerLive": pb.ServerLiveRequest(),
        "ServerReady": pb.ServerReadyRequest(),
        "ServerMetadata": pb.ServerMetadataRequest(),
        "RepositoryIndex": pb.RepositoryIndexRequest(),
        "RepositoryModelLoad": pb.RepositoryModelLoadRequest(model_name=model),
        "RepositoryModelUnload": pb.RepositoryModelUnloadRequest(model_name=model),
    }
    metadata = [("x-request-id", rid or _rid("g"))]
    if auth is not None:
        metadata.append(("authorization", f"Bearer {auth}"))
    with grpc.insecure_channel(setup.grpc) as channel:
        if method == "health":
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), metadata=metadata, timeout=30)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return getattr(stub, method)(messages[method], metadata=metadata, timeout=30)


def _infer_message(model: str) -> pb.ModelInferRequest:
    infer = pb.ModelInferRequest(model_name=model)
    infer.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    infer.raw_input_contents.append(np.array([ROW], np.float32).tobytes())
    return infer


def _grpc_error(setup: Setup, method: str, model: str, auth: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _grpc(setup, method, model, auth)
    return caught.value


DOORS = ["ferry", "uvicorn-h11"]
BAD = ["missing", "wrong key", "revoked key", "not bearer", "garbage", "expired token"]


def _bad(creds: Creds, which: str) -> dict[str, str]:
    return {
        "missing": {},
        "wrong key": _bearer("fk_0123abcd_" + "A" * 43),
        "revoked key": _bearer(creds.revoked),
        "not bearer": {"authorization": f"Basic {creds.secret}"},
        "garbage": _bearer("not-a-key-or-token"),
        "expired token": _bearer(creds.expired),
    }[which]


# ------------------------------------------------------------------------------ 401


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("what", ["infer", "infer, chunked", "predict", "metadata", "index",
                                  "load"])
def test_bad_credentials_are_401_on_every_rest_door(setup, door, which, what):
    auth = _bad(setup.creds, which)
    response = _rest(setup, door, what, "mlp", auth)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="ferry"'
    assert not any(secret in response.text for secret in setup.creds.all())


@pytest.mark.parametrize("which", ["missing", "wrong key", "revoked key", "expired token"])
@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady",
                                    "ServerMetadata", "RepositoryIndex",
                                    "RepositoryModelLoad", "RepositoryModelUnload"])
def test_bad_credentials_are_unauthenticated_on_grpc(setup, which, method):
    auth = _bad(setup.creds, which).get("authorization")
    error = _grpc_error(setup, method, "mlp", auth.split(" ", 1)[1] if auth else None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert not any(secret in (error.details() or "") for secret in setup.creds.all())


# ------------------------------------------------------------------------- health


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_is_open_without_credentials(setup, door, path):
    with httpx.Client(base_url=_url(setup, door), timeout=30) as client:
        assert client.get(path).status_code == 200


@pytest.mark.parametrize("method", ["ServerLive", "ServerReady", "health"])
def test_grpc_health_is_open_without_credentials(setup, method):
    _grpc(setup, method, "", None)


# ---------------------------------------------------------------- 403 and scopes


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("cred", ["key", "jwt"])
def test_an_infer_scoped_caller_may_infer_and_read_its_model_only(setup, door, cred):
    auth = _bearer(setup.creds.infer_mlp if cred == "key" else setup.creds.token)
    for what in ("infer", "infer, chunked", "predict", "tf serving", "metadata",
                 "model ready"):
        response = _rest(setup, door, what, "mlp", auth)
        assert response.status_code == 200, (what, response.text)
    for what, model in [("infer", HIDDEN), ("infer, chunked", HIDDEN), ("predict", HIDDEN),
                        ("metadata", HIDDEN), ("load", "mlp"), ("unload", "mlp"),
                        ("index", "mlp")]:
        response = _rest(setup, door, what, model, auth)
        assert response.status_code == 403, (what, model, response.text)
        assert "is not allowed for this caller" in response.json()["error"]
    # Refused before the engine acted: mlp is still served.
    assert _rest(setup, door, "model ready", "mlp", auth).status_code == 200


@pytest.mark.parametrize("cred", ["key", "jwt"])
def test_an_infer_scoped_caller_on_grpc(setup, cred):
    auth = setup.creds.infer_mlp if cred == "key" else setup.creds.token
    answer = _grpc(setup, "ModelInfer", "mlp", auth)
    assert answer.model_name == "mlp"  # type: ignore[attr-defined]
    assert _grpc(setup, "ModelMetadata", "mlp", auth).name == "mlp"  # type: ignore[attr-defined]
    assert _grpc(setup, "ModelReady", "mlp", auth).ready  # type: ignore[attr-defined]
    for method, model in [("ModelInfer", HIDDEN), ("ModelMetadata", HIDDEN),
                          ("RepositoryModelLoad", "mlp"), ("RepositoryModelUnload", "mlp"),
                          ("RepositoryIndex", "")]:
        error = _grpc_error(setup, method, model, auth)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, (method, error.details())
    assert _grpc(setup, "ModelReady", "mlp", auth).ready  # type: ignore[attr-defined]


@pytest.mark.parametrize("door", DOORS)
def test_a_reader_reads_everything_and_infers_nothing(setup, door):
    auth = _bearer(setup.creds.reader)
    assert _rest(setup, door, "index", "", auth).status_code == 200
    assert _rest(setup, door, "metadata", HIDDEN, auth).status_code == 200
    assert _rest(setup, door, "infer", "mlp", auth).status_code == 403


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("what", ["infer", "infer, chunked", "predict", "tf serving",
                                  "metadata", "model ready", "load", "unload"])
def test_a_hidden_model_and_a_missing_one_answer_the_same(setup, door, what):
    auth = _bearer(setup.creds.infer_mlp)
    answers = []
    for model in (HIDDEN, MISSING):
        rid = f"same-{what}-{door}"
        response = _rest(setup, door, what, model, auth, rid=rid)
        answers.append((response.status_code, response.text.replace(model, "NAME"),
                        sorted((k, v) for k, v in response.headers.items()
                               if k not in ("date", "content-length"))))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403
    # Whereas a caller allowed to look does tell them apart: the refusal hides that.
    admin = _bearer(setup.creds.admin)
    assert _rest(setup, door, "metadata", MISSING, admin).status_code == 404
    assert _rest(setup, door, "metadata", HIDDEN, admin).status_code == 200


@pytest.mark.parametrize("method", ["ModelInfer", "ModelMetadata", "ModelReady",
                                    "RepositoryModelLoad", "RepositoryModelUnload"])
def test_a_hidden_model_and_a_missing_one_answer_the_same_on_grpc(setup, method):
    answers = []
    for model in (HIDDEN, MISSING):
        error = _grpc_error(setup, method, model, setup.creds.infer_mlp)
        answers.append((error.code(), (error.details() or "").replace(model, "NAME")))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.PERMISSION_DENIED


# ------------------------------------------------------------------------ admin


@pytest.mark.parametrize("door", DOORS)
def test_admin_unloads_and_loads_over_rest(setup, door):
    auth = _bearer(setup.creds.admin)
    assert _rest(setup, door, "unload", "mlp", auth).status_code == 200
    assert _rest(setup, door, "model ready", "mlp", auth).status_code == 404
    assert _rest(setup, door, "infer", "mlp", auth).status_code == 404  # not served now
    assert _rest(setup, door, "load", "mlp", auth).status_code == 200
    assert _rest(setup, door, "infer", "mlp", auth).status_code == 200


def test_admin_unloads_and_loads_over_grpc(setup):
    auth = setup.creds.admin
    _grpc(setup, "RepositoryModelUnload", "mlp", auth)
    assert not _grpc(setup, "ModelReady", "mlp", auth).ready  # type: ignore[attr-defined]
    _grpc(setup, "RepositoryModelLoad", "mlp", auth)
    assert _grpc(setup, "ModelReady", "mlp", auth).ready  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ audit


def _audit_lines(setup: Setup) -> list[dict[str, object]]:
    return [json.loads(line) for line in setup.audit.read_text().splitlines()]


def test_the_audit_log_has_admin_actions_and_refusals_with_who_where_and_which(setup):
    c = setup.creds
    ids = {name: _rid(name) for name in ("unload", "load", "grpc-unload", "grpc-load",
                                         "denied", "grpc-denied", "no-key", "grpc-no-key",
                                         "revoked")}
    _rest(setup, "ferry", "unload", "mlp", _bearer(c.admin), ids["unload"])
    _rest(setup, "uvicorn-h11", "load", "mlp", _bearer(c.admin), ids["load"])
    _rest(setup, "ferry", "load", "mlp", _bearer(c.admin))
    _grpc(setup, "RepositoryModelUnload", "mlp", c.admin, ids["grpc-unload"])
    _grpc(setup, "RepositoryModelLoad", "mlp", c.admin, ids["grpc-load"])
    _rest(setup, "ferry", "infer", HIDDEN, _bearer(c.infer_mlp), ids["denied"])
    with pytest.raises(grpc.RpcError):
        _grpc(setup, "RepositoryModelUnload", "mlp", c.token, ids["grpc-denied"])
    _rest(setup, "uvicorn-h11", "infer", "mlp", {}, ids["no-key"])
    with pytest.raises(grpc.RpcError):
        _grpc(setup, "ModelInfer", "mlp", None, ids["grpc-no-key"])
    _rest(setup, "ferry", "infer", "mlp", _bearer(c.revoked), ids["revoked"])

    by_id = {line["request_id"]: line for line in _audit_lines(setup)}
    expected = {
        "unload": ("unload", "key:ops", "rest", "allowed"),
        "load": ("load", "key:ops", "rest", "allowed"),
        "grpc-unload": ("unload", "key:ops", "grpc", "allowed"),
        "grpc-load": ("load", "key:ops", "grpc", "allowed"),
        "denied": ("permission_denied", "key:infer-mlp", "rest", "refused"),
        "grpc-denied": ("permission_denied", "jwt:alice", "grpc", "refused"),
        "no-key": ("auth_failure", None, "rest", "refused"),
        "grpc-no-key": ("auth_failure", None, "grpc", "refused"),
        "revoked": ("auth_failure", None, "rest", "refused"),
    }
    for name, (event, principal, protocol, outcome) in expected.items():
        line = by_id[ids[name]]
        assert (line["event"], line["principal"], line["protocol"], line["outcome"]) == (
            event, principal, protocol, outcome), name
        assert "127.0.0.1" in str(line["peer"]), name
        assert str(line["time"]).endswith("Z")
    assert by_id[ids["unload"]]["model"] == "mlp"
    assert by_id[ids["denied"]]["model"] == HIDDEN
    assert by_id[ids["revoked"]]["reason"] == "unknown or revoked API key"


def test_no_secret_appears_in_the_audit_log_or_any_log_line(setup):
    c = setup.creds
    # Make sure every secret was sent at least once, refused or not.
    for auth in (c.infer_mlp, c.admin, c.reader, c.revoked, c.token, c.expired):
        _rest(setup, "ferry", "infer", "mlp", _bearer(auth))
        _rest(setup, "uvicorn-h11", "load", "mlp", _bearer(auth))
        with pytest.raises(grpc.RpcError):
            _grpc(setup, "ModelInfer", MISSING, auth)
    _rest(setup, "ferry", "metadata", "mlp", {"authorization": f"Basic {c.secret}"})
    audit = setup.audit.read_text()
    logs = "\n".join(setup.logs.lines)
    assert audit.count("\n") > 10 and logs
    for secret in c.all():
        assert secret not in audit
        assert secret not in logs


# ---------------------------------------------------------------- ferry serve


def test_ferry_serve_takes_auth_from_flags_and_environment(tmp_path):
    from serving import ferry_serve

    repo = build_repository(tmp_path)
    store = KeyStore(tmp_path / "keys.json")
    key = store.add("ci", ["infer:mlp"])
    secret = secrets.token_urlsafe(48)
    (tmp_path / "jwt.secret").write_text(secret)
    token = _token(secret, "carol", ["admin:*"], time.time() + 600)
    audit = tmp_path / "audit.jsonl"
    env = {"FERRY_SECURITY__JWT_HS256_SECRET_FILE": str(tmp_path / "jwt.secret")}
    with ferry_serve(repo.root, "--api-keys-file", str(tmp_path / "keys.json"),
                     "--audit-log", str(audit), env=env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/v2/models/mlp/infer", content=V2_BODY,
                               headers=JSON).status_code == 401
            assert client.post("/v2/models/mlp/infer", content=V2_BODY,
                               headers={**JSON, **_bearer(key)}).status_code == 200
            assert client.post("/v2/repository/models/mlp/unload",
                               headers=_bearer(key)).status_code == 403
            assert client.post("/v2/repository/models/mlp/load",
                               headers=_bearer(token)).status_code == 200
        with grpc.insecure_channel(server.grpc) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(_infer_message("mlp"), timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.ModelInfer(_infer_message("mlp"), timeout=30,
                            metadata=[("authorization", f"Bearer {key}")])
        output = server.output()
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events.count("auth_failure") == 2 and "permission_denied" in events
    assert "load" in events
    assert "authentication on (API keys and JWT)" in output
    for text in (output, audit.read_text()):
        for leaked in (key, key.rsplit("_", 1)[1], token, secret):
            assert leaked not in text


def test_auth_is_off_without_a_keys_file_or_jwt_key():
    assert security_policies(SecuritySettings()) == ([], None)
    assert not SecuritySettings(audit_log="-", open_health=False).enabled

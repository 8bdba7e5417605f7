"""Encryption in transit: TLS and mTLS on every REST door and on gRPC, with ``ferry serve``.

The test makes its own PKI with ``cryptography``: a CA the servers trust, a second CA they
do not, server and client certificates. Each server is a real ``ferry serve`` subprocess
(``--tls-cert``/``--tls-key``/``--tls-client-ca`` flags, ``[security]`` from the
environment), reached by httpx and grpcio as clients would. Checked: handshakes succeed
with the right certificates and fail with wrong ones (a server certificate from a CA the
client does not trust, no client certificate, a client certificate from another CA), TLS
1.0/1.1 are refused, the verified certificate's subject is the principal when configured
(on the lane, the ASGI app and gRPC alike: 200 vs 403, and the audit log), and SIGHUP
reloads the certificate, key and client CA for new connections.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import numpy as np
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ferry.errors import ConfigError
from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc
from ferry.security.tls import ServerTls, common_name
from ferry.settings import SecuritySettings
from pki import Issued, issue
from rest_server import build_repository
from serving import Server, ferry_serve

pytestmark = pytest.mark.timeout(300)

ROW = [0.5, -1.0, 2.0, 0.25]
V2_BODY = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                    "data": ROW}]})
JSON = {"content-type": "application/json"}

# ------------------------------------------------------------------------- the PKI


@dataclass
class Pki:
    ca: Issued  # what the servers trust for clients, and clients trust for servers
    other_ca: Issued  # trusted by nobody at first
    server: Issued  # 127.0.0.1 / localhost, signed by ca
    client: Issued  # CN=client-ci, signed by ca
    stranger: Issued  # CN=stranger, signed by other_ca
    folder: Path

    def path(self, stem: str) -> Path:
        return self.folder / stem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = issue("ferry test CA", None, ca=True)
    other = issue("another CA", None, ca=True)
    pki = Pki(ca, other, issue("127.0.0.1", ca, server=True), issue("client-ci", ca),
              issue("stranger", other), folder)
    (folder / "ca.crt").write_bytes(ca.cert)
    (folder / "other-ca.crt").write_bytes(other.cert)
    pki.server.write(folder, "server")
    pki.client.write(folder, "client")
    pki.stranger.write(folder, "stranger")
    return pki


def _client_context(pki: Pki, trust: str = "ca.crt", cert: str | None = None
                    ) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.path(trust)))
    if cert is not None:
        context.load_cert_chain(pki.path(f"{cert}.crt"), pki.path(f"{cert}.key"))
    return context


def _grpc_credentials(pki: Pki, trust: str = "ca.crt", cert: str | None = None
                      ) -> grpc.ChannelCredentials:
    pair = {}
    if cert is not None:
        pair = {"private_key": pki.path(f"{cert}.key").read_bytes(),
                "certificate_chain": pki.path(f"{cert}.crt").read_bytes()}
    return grpc.ssl_channel_credentials(root_certificates=pki.path(trust).read_bytes(), **pair)


def _infer_message(model: str = "mlp") -> pb.ModelInferRequest:
    infer = pb.ModelInferRequest(model_name=model)
    infer.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    infer.raw_input_contents.append(np.array([ROW], np.float32).tobytes())
    return infer


def _grpc_call(server: Server, credentials: grpc.ChannelCredentials, method: str = "ModelInfer",
               message: object | None = None, metadata: list[tuple[str, str]] | None = None
               ) -> object:
    with grpc.secure_channel(server.grpc, credentials) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        return getattr(stub, method)(message or _infer_message(), timeout=30,
                                     metadata=metadata or ())


def _grpc_code(server: Server, credentials: grpc.ChannelCredentials, **kwargs: object
               ) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        _grpc_call(server, credentials, **kwargs)  # type: ignore[arg-type]
    return caught.value.code()


def _peer_serial(server: Server, context: ssl.SSLContext) -> int:
    """The serial number of the certificate a new REST connection is shown."""
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# Requests of every REST door: a plain Content-Length body is ferry's inference lane, a
# chunked body and a GET go through its ASGI app.
def _rest(client: httpx.Client, what: str, model: str = "mlp",
          headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {**JSON, **(headers or {})}
    if what == "lane":
        return client.post(f"/v2/models/{model}/infer", content=V2_BODY, headers=headers)
    if what == "asgi":
        return client.post(f"/v2/models/{model}/infer", headers=headers,
                           content=iter([V2_BODY[:9], V2_BODY[9:]]))
    if what == "metadata":
        return client.get(f"/v2/models/{model}", headers=headers)
    assert what == "unload"
    return client.post(f"/v2/repository/models/{model}/unload", headers=headers)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("tls")).root


# ------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(pki: Pki, repo: Path) -> Iterator[Server]:
    with ferry_serve(repo, "--tls-cert", str(pki.path("server.crt")),
                     "--tls-key", str(pki.path("server.key")),
                     tls=_client_context(pki)) as server:
        yield server


@pytest.mark.parametrize("door", ["lane", "asgi", "metadata"])
def test_tls_handshake_with_the_right_ca(tls_server, pki, door):
    with httpx.Client(base_url=tls_server.url, verify=_client_context(pki),
                      timeout=30) as client:
        response = _rest(client, door)
    assert response.status_code == 200, response.text
    assert tls_server.url.startswith("https://")
    assert f"REST  {tls_server.url}" in tls_server.output()


def test_tls_on_grpc_with_the_right_ca(tls_server, pki):
    answer = _grpc_call(tls_server, _grpc_credentials(pki))
    assert answer.model_name == "mlp"  # type: ignore[attr-defined]


def test_a_client_that_does_not_trust_the_servers_ca_fails(tls_server, pki):
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"), \
            httpx.Client(base_url=tls_server.url, verify=_client_context(pki, "other-ca.crt"),
                         timeout=30) as client:
        _rest(client, "lane")
    assert _grpc_code(tls_server, _grpc_credentials(pki, "other-ca.crt")) == \
        grpc.StatusCode.UNAVAILABLE


def test_plain_http_and_plain_grpc_are_not_answered(tls_server):
    with pytest.raises(httpx.TransportError):
        httpx.get(tls_server.url.replace("https://", "http://") + "/v2/health/live",
                  timeout=10)
    with grpc.insecure_channel(tls_server.grpc) as channel, \
            pytest.raises(grpc.RpcError) as caught:
        pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(),
                                                             timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_before_1_2_is_refused(tls_server, pki, version):
    old = _client_context(pki)
    with warnings.catch_warnings():  # ssl deprecates these versions, as it should
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = version
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer the old versions at all
    with pytest.raises(ssl.SSLError) as caught:
        _peer_serial(tls_server, old)
    # The server's refusal, not the client's (which would fail before sending anything,
    # with NO_PROTOCOLS_AVAILABLE): an alert, or the connection closed on the ClientHello.
    reason = str(caught.value).upper()
    assert isinstance(caught.value, ssl.SSLEOFError) or "ALERT" in reason or \
        "UNSUPPORTED_PROTOCOL" in reason, caught.value
    assert "NO_PROTOCOLS_AVAILABLE" not in reason


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_1_2_and_1_3_are_served(tls_server, pki, version):
    context = _client_context(pki)
    context.minimum_version = context.maximum_version = version
    assert _peer_serial(tls_server, context) == pki.server.serial


# ------------------------------------------------------------------------- mTLS


@dataclass
class Mtls:
    server: Server
    audit: Path


@pytest.fixture(scope="module")
def mtls_server(pki: Pki, repo: Path) -> Iterator[Mtls]:
    audit = pki.folder / "audit.jsonl"
    env = {"FERRY_SECURITY__TLS_CLIENT_PRINCIPAL": "true",
           "FERRY_SECURITY__TLS_CLIENT_GRANTS": '["infer:mlp"]'}
    with ferry_serve(repo, "--tls-cert", str(pki.path("server.crt")),
                     "--tls-key", str(pki.path("server.key")),
                     "--tls-client-ca", str(pki.path("ca.crt")), "--audit-log", str(audit),
                     env=env, tls=_client_context(pki, cert="client")) as server:
        yield Mtls(server, audit)


@pytest.mark.parametrize("cert", [None, "stranger"])
@pytest.mark.parametrize("door", ["lane", "asgi", "metadata"])
def test_mtls_refuses_a_missing_or_untrusted_client_certificate(mtls_server, pki, cert, door):
    # With TLS 1.3 the client may finish its side of the handshake before the server has
    # checked its certificate: the refusal (an alert) can surface on the first read.
    with pytest.raises(httpx.TransportError), \
            httpx.Client(base_url=mtls_server.server.url,
                         verify=_client_context(pki, cert=cert), timeout=30) as client:
        _rest(client, door)


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_mtls_refuses_a_missing_or_untrusted_client_certificate_on_grpc(mtls_server, pki,
                                                                        cert):
    assert _grpc_code(mtls_server.server, _grpc_credentials(pki, cert=cert)) == \
        grpc.StatusCode.UNAVAILABLE


def test_the_client_certificate_is_the_principal_on_every_rest_door(mtls_server, pki):
    with httpx.Client(base_url=mtls_server.server.url,
                      verify=_client_context(pki, cert="client"), timeout=30) as client:
        for door in ("lane", "asgi", "metadata"):
            assert _rest(client, door).status_code == 200, door
            # The grants are tls_client_grants: infer:mlp, nothing else.
            assert _rest(client, door, model="pair").status_code == 403, door
        assert _rest(client, "unload").status_code == 403
        # A bearer credential, when sent, decides: a bad one is refused despite the cert.
        bad = {"authorization": "Bearer fk_0123abcd_" + "A" * 43}
        assert _rest(client, "lane", headers=bad).status_code == 401
        assert _rest(client, "asgi", headers=bad).status_code == 401
    denied = _audit(mtls_server.audit, "permission_denied", "rest")
    assert {e["principal"] for e in denied} == {"cert:client-ci"}
    assert {e["door"] for e in denied} == {"http11", "asgi"}


def test_the_client_certificate_is_the_principal_on_grpc(mtls_server, pki):
    credentials = _grpc_credentials(pki, cert="client")
    answer = _grpc_call(mtls_server.server, credentials)
    assert answer.model_name == "mlp"  # type: ignore[attr-defined]
    assert _grpc_code(mtls_server.server, credentials, message=_infer_message("pair")) == \
        grpc.StatusCode.PERMISSION_DENIED
    assert _grpc_code(mtls_server.server, credentials,
                      metadata=[("authorization", "Bearer not-a-key")]) == \
        grpc.StatusCode.UNAUTHENTICATED
    denied = _audit(mtls_server.audit, "permission_denied", "grpc")
    assert [e["principal"] for e in denied] == ["cert:client-ci"]


def _audit(path: Path, event: str, protocol: str) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in entries if e["event"] == event and e["protocol"] == protocol]


def test_tls_with_workers(pki, repo):
    with ferry_serve(repo, "--workers", "2", "--tls-cert", str(pki.path("server.crt")),
                     "--tls-key", str(pki.path("server.key")),
                     tls=_client_context(pki)) as server:
        assert f"REST  {server.url}" in server.output() and server.url.startswith("https")
        with httpx.Client(base_url=server.url, verify=_client_context(pki),
                          timeout=30) as client:
            assert _rest(client, "lane").status_code == 200
        assert _grpc_call(server, _grpc_credentials(pki)).model_name == "mlp"  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- SIGHUP


def test_sighup_reloads_certificate_key_and_client_ca(pki, repo, tmp_path):
    # Start: server certificate from ca, clients from ca.
    cert, key = pki.server.write(tmp_path, "live")
    client_ca = tmp_path / "clients.crt"
    client_ca.write_bytes(pki.ca.cert)
    old = _client_context(pki, cert="client")
    with ferry_serve(repo, "--tls-cert", str(cert), "--tls-key", str(key),
                     "--tls-client-ca", str(client_ca), tls=old) as server, \
            httpx.Client(base_url=server.url, verify=old, timeout=30) as kept:
        assert _rest(kept, "lane").status_code == 200  # a connection opened before
        assert _peer_serial(server, old) == pki.server.serial
        # Rotate everything: a new server certificate from the other CA, and only the
        # other CA's clients from now on.
        rotated = issue("127.0.0.1", pki.other_ca, server=True)
        rotated.write(tmp_path, "live")
        client_ca.write_bytes(pki.other_ca.cert)
        os.kill(server.process.pid, signal.SIGHUP)
        _wait_for(lambda: "TLS certificate reloaded" in server.output(), server)
        new = _client_context(pki, trust="other-ca.crt", cert="stranger")
        assert _peer_serial(server, new) == rotated.serial
        with httpx.Client(base_url=server.url, verify=new, timeout=30) as client:
            assert _rest(client, "lane").status_code == 200
        # The old client certificate is no longer trusted, on REST and on gRPC.
        with pytest.raises(httpx.TransportError), \
                httpx.Client(base_url=server.url, verify=_client_context(
                    pki, trust="other-ca.crt", cert="client"), timeout=30) as client:
            _rest(client, "lane")
        assert _grpc_code(server, _grpc_credentials(pki, "other-ca.crt", "client")) == \
            grpc.StatusCode.UNAVAILABLE
        # gRPC: new connections get the new certificate (only the other CA verifies it).
        answer = _grpc_call(server, _grpc_credentials(pki, "other-ca.crt", "stranger"))
        assert answer.model_name == "mlp"  # type: ignore[attr-defined]
        assert _grpc_code(server, _grpc_credentials(pki, "ca.crt", "client")) == \
            grpc.StatusCode.UNAVAILABLE
        # The connection opened before the reload keeps its session.
        assert _rest(kept, "lane").status_code == 200
        # A broken file on the next SIGHUP is reported; the current material stays.
        key.write_bytes(b"not a key")
        os.kill(server.process.pid, signal.SIGHUP)
        _wait_for(lambda: "TLS reload failed" in server.output(), server)
        assert _peer_serial(server, new) == rotated.serial
        output = server.output()
    assert rotated.key.decode() not in output and pki.server.key.decode() not in output


def _wait_for(condition, server: Server, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


# ------------------------------------------------------------------------- settings


def test_tls_settings_are_checked_at_startup(pki, tmp_path):
    with pytest.raises(ValueError, match="go together"):
        SecuritySettings(tls_cert_file=pki.path("server.crt"))
    with pytest.raises(ValueError, match="tls_client_ca_file needs TLS"):
        SecuritySettings(tls_client_ca_file=pki.path("ca.crt"))
    with pytest.raises(ValueError, match="tls_client_principal needs client certificates"):
        SecuritySettings(tls_cert_file=pki.path("server.crt"),
                         tls_key_file=pki.path("server.key"), tls_client_principal=True)
    assert not SecuritySettings(tls_cert_file=pki.path("server.crt"),
                                tls_key_file=pki.path("server.key")).enabled
    with pytest.raises(ConfigError, match="does not exist"):
        ServerTls(tmp_path / "missing.crt", pki.path("server.key"))
    with pytest.raises(ConfigError, match="not a usable PEM") as caught:
        ServerTls(pki.path("server.crt"), pki.path("client.key"))  # key of another cert
    assert "PRIVATE KEY" not in str(caught.value)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(pki.server.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError, match="encrypted"):
        ServerTls(pki.path("server.crt"), encrypted)


def test_the_asgi_tls_extension_names_the_common_name():
    assert common_name("CN=client-ci,O=ferry tests") == "client-ci"
    assert common_name("O=ferry tests") is None
    assert common_name("CN=a\\,b,O=x") == "a,b"

"""The README's "Production" configuration, started exactly as written.

The test takes the ``ferry.toml`` block of the README's Production section as it is, makes
the files it names the way the README says (``ferry import``, ``ferry keys add``,
``ferry signing-key new``, ``ferry sign``; a CA and a server certificate made with
``cryptography``), starts ``ferry serve --config ferry.toml`` in that folder and calls it as
a client would: over TLS, with and without the key, and checks the audit log. Only the
ports change (free ones) and ``host`` (127.0.0.1: tests bind nothing else).
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from builders import mlp_onnx
from pki import issue
from secrets_used import remember
from serving import ROOT, ferry_serve, free_port

pytestmark = pytest.mark.timeout(300)

README = (ROOT / "README.md").read_text()


def _production_toml() -> str:
    section = README.split("## Production", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```toml\n(.*?)```", section, re.S)
    assert found is not None, "the README's Production section lost its ferry.toml"
    return found.group(1)


def _ferry(folder: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ferry", *args], cwd=folder, text=True,
                          capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, f"ferry {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _prepare(folder: Path, *, sign: bool) -> tuple[dict[str, str], str, ssl.SSLContext]:
    """The README's ferry.toml in ``folder`` with every file it names, made as documented.

    Returns the settings it names, an ``infer:digits*`` API key, and a client TLS context
    that trusts the server's CA.
    """
    config = _production_toml()
    settings = dict(re.findall(r'^(\w+) = "([^"]+)"', config, re.M))
    # What the README promises to turn on: every key must be in the file a user copies.
    for key in ("repository", "api_keys_file", "tls_cert_file", "tls_key_file",
                "trusted_keys_file", "audit_log"):
        assert key in settings, f"the production ferry.toml has no {key}"
    # Tests listen on loopback only; the ports come from the command line (free ones).
    assert 'host = "0.0.0.0"' in config
    (folder / "ferry.toml").write_text(config.replace('host = "0.0.0.0"', 'host = "127.0.0.1"'))
    for name in ("api_keys_file", "tls_cert_file", "trusted_keys_file", "audit_log"):
        (folder / settings[name]).parent.mkdir(parents=True, exist_ok=True)

    # A model imported (and signed) as the README says; the public key in the trusted list.
    _ferry(folder, "--repo", settings["repository"], "import",
           str(mlp_onnx(folder / "mlp.onnx")), "--name", "digits")
    public = _ferry(folder, "signing-key", "new", "release.pem", "--comment", "release-ci")
    (folder / settings["trusted_keys_file"]).write_text(public)
    if sign:
        _ferry(folder, "--repo", settings["repository"], "sign", "digits",
               "--key", "release.pem")
    key = _ferry(folder, "keys", "add", "ci", "--grant", "infer:digits*",
                 "--keys-file", settings["api_keys_file"]).strip()
    assert key.startswith("fk_")
    remember(key)

    # TLS files where the README puts them, from a CA the client trusts.
    ca = issue("production CA", None, ca=True)
    server = issue("127.0.0.1", ca, server=True)
    (folder / settings["tls_cert_file"]).write_bytes(server.cert)
    (folder / settings["tls_key_file"]).write_bytes(server.key)
    (folder / settings["tls_key_file"]).chmod(0o600)
    return settings, key, ssl.create_default_context(cadata=ca.cert.decode())


def test_the_readme_production_configuration_serves_as_documented(tmp_path: Path) -> None:
    settings, key, client_tls = _prepare(tmp_path, sign=True)
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "data": [0.5, -1.0, 2.0, 0.25]}]})
    with ferry_serve(None, "--config", "ferry.toml", cwd=tmp_path, tls=client_tls,
                     log_format=None, timeout=120) as served:
        assert served.url.startswith("https://")
        with httpx.Client(base_url=served.url, verify=client_tls, timeout=30) as client:
            headers = {"content-type": "application/json", "x-request-id": "prod-ok"}
            ok = client.post("/v2/models/digits/infer", content=body,
                             headers={**headers, "authorization": f"Bearer {key}"})
            assert ok.status_code == 200, ok.text
            assert ok.json()["outputs"][0]["shape"] == [1, 3]
            refused = client.post("/v2/models/digits/infer", content=body,
                                  headers={**headers, "x-request-id": "prod-no-key"})
            assert refused.status_code == 401
            assert client.get("/v2/health/ready").status_code == 200  # open_health
            unload = client.post("/v2/repository/models/digits/unload",
                                 headers={"authorization": f"Bearer {key}",
                                          "x-request-id": "prod-unload"})
            assert unload.status_code == 403  # an infer key is no admin
        with pytest.raises(httpx.TransportError):  # TLS only: clear text is refused
            httpx.get(served.url.replace("https://", "http://") + "/v2/health/ready",
                      timeout=5)
        log = served.output()
    assert log.lstrip().startswith("{")  # log_format = "json", from the file
    audit_text = (tmp_path / settings["audit_log"]).read_text()
    events = {line["request_id"]: line["event"]
              for line in map(json.loads, audit_text.splitlines())}
    assert events.get("prod-no-key") == "auth_failure"
    assert events.get("prod-unload") == "permission_denied"
    secret = key.rsplit("_", 1)[1]
    assert secret not in log and secret not in audit_text


def test_the_production_configuration_refuses_an_unsigned_version(tmp_path: Path) -> None:
    _prepare(tmp_path, sign=False)
    done = subprocess.run(
        [sys.executable, "-m", "ferry", "serve", "--config", "ferry.toml",
         "--http-port", str(free_port()), "--grpc-port", str(free_port())],
        cwd=tmp_path, text=True, capture_output=True, timeout=120, check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert "digits" in said and "sign" in said.lower(), said

"""Issue 15 item 6: schemathesis against the server's own OpenAPI document, every check.

Real servers (tests/rest_server.py, ferry's HTTP/1.1 protocol under uvicorn) over the test
repository: one with authentication off, one with it on (an API key from
:class:`~ferry.security.KeyStore`, ``Authenticate`` + ``Authorize``), called with a valid key
and with none. The schema is loaded from the live ``/openapi.json`` and run as
``schemathesis run --checks all`` runs it (schemathesis' engine): every built-in check
(server errors, status codes, content types, response schemas and headers, schema-valid
requests accepted, schema-violating requests refused, missing required headers, unsupported
methods and ``Allow``), positive and negative data, in the coverage, fuzzing and stateful
phases. (schemathesis' pytest plugin for a schema from a fixture, ``from_fixture``, fails
under pytest 9.2: it reads and sets ``Function._nodeid``, which pytest no longer has.)

Bounded and reproducible: 25 examples per operation and phase, a fixed seed, Hypothesis
derandomized, no example database, a per-request timeout (a hang fails the run) and a
per-test timeout; about 15 s a run on two cores.

One allowance, written down in ``CONFIG``: on the inference routes a schema-valid body may be
answered 400 ("tensors that do not fit the model", a documented response). Whether tensors fit
a model depends on the model named (its inputs, datatypes and shapes change with the models a
server holds) and on ``data`` agreeing with ``shape`` (a count and rectangular nesting), which
no JSON schema can state; everything structural is in the schema, and the unit tests of the
document (tests/unit/protocols/rest/test_openapi.py) pin it. Everywhere else schemathesis'
default statuses apply: a schema-valid request may only be refused for a missing model
(404) or credential (401/403), never with a 400.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from ferry.engine import Engine
from ferry.protocols.rest.routes import ROUTES
from ferry.repository import Repository
from ferry.security import Authenticate, Authorize, KeyStore
from rest_server import Served, make_engine, serve
from secrets_used import remember

pytestmark = pytest.mark.timeout(300)

#: The models of the test repository (tests/rest_server.py build_repository).
MODELS = ("mlp", "alltypes", "half", "pair")
#: Seconds per request: a server that does not answer in time fails the run (a hang).
REQUEST_TIMEOUT = 10

# `schemathesis run --checks all`, bounded: a few dozen cases per operation and phase, a
# fixed seed and derandomized Hypothesis (CI reproducible), no example database.
#
# Model and version path parameters come from the served models 70 % of the time, so the
# fuzzing reaches the decoders and the engine, not only "404: no such model"; the other
# 30 % are generated from the document's name rule. Unload gets no dictionary, so that the
# run unloads fewer of the models it tests; schemathesis still learns served names from
# answers (the repository index) and unloads some, after which calls naming them answer
# 404 or 503, documented too.
CONFIG = f"""
seed = 15
request-timeout = {REQUEST_TIMEOUT}

[generation]
max-examples = 25
deterministic = true
database = "none"

[checks]
enabled = true

[dictionaries.models]
values = {list(MODELS)!r}
[dictionaries.versions]
values = ["1"]

[[operations]]
exclude-path-regex = "/unload$"
[operations.parameters]
"path.model" = {{ dictionary = "models", probability = 0.7 }}
"path.version" = {{ dictionary = "versions", probability = 0.7 }}

# The inference routes: a schema-valid body may not fit the model named (see the docstring).
[[operations]]
include-path-regex = "(/infer|:predict|^/predict(/.*)?)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "429"]
"""

#: Operations that do not call the engine: open whatever the security settings.
OPEN_PATHS = ("/metrics", "/openapi.json", "/docs", "/v2/health/live", "/v2/health/ready",
              # The web console's pages and files hold no data (its JSON endpoints do).
              "/console", "/console/try", "/console/live", "/console/admin",
              "/console/static/{asset}")


@dataclass
class Run:
    """What one schemathesis run found: failures and errors, and every answer's status."""

    failures: list[str] = field(default_factory=list)
    #: (operation label, method, status, whether the case was schema-valid) of each answer.
    statuses: list[tuple[str, str, int, bool]] = field(default_factory=list)
    cases: int = 0

    def report(self) -> str:
        return f"{len(self.failures)} problems in {self.cases} cases:\n" + "\n\n".join(
            self.failures[:20])


def fuzz(served: Served, *, headers: dict[str, str] | None = None) -> Run:
    """``schemathesis run --checks all`` against ``served``'s own /openapi.json."""
    config = SchemathesisConfig.from_str(CONFIG)
    if headers:
        config.projects.default.update(headers=headers)
    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=config,
                                           timeout=REQUEST_TIMEOUT)
    run = Run()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            run.failures.append(f"error in {event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            run.failures.append(f"schemathesis failed: {event.exception!r}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        for case_id, node in recorder.cases.items():
            run.cases += 1
            interaction = recorder.interactions.get(case_id)
            if interaction is not None and interaction.response is not None:
                case = node.value
                positive = case.meta is not None and case.meta.generation.mode.is_positive
                run.statuses.append((case.operation.label, case.method.upper(),
                                     interaction.response.status_code, positive))
            for check in recorder.checks.get(case_id, ()):
                if check.status == Status.FAILURE and check.failure_info is not None:
                    failure = check.failure_info.failure
                    run.failures.append(
                        f"{recorder.label}: {check.name}: {failure.title}\n"
                        f"{failure.message[:500]}\n{check.failure_info.code_sample[:800]}")
        if event.status == Status.ERROR:
            run.failures.append(f"{recorder.label}: the scenario errored")
    return run


# ------------------------------------------------------------------ the servers


@pytest.fixture(scope="module")
def open_server(rest_repo: Repository) -> Iterator[Served]:
    """Authentication off (ferry serve's default)."""
    with serve(make_engine(rest_repo), rest_repo) as served:
        yield served


@pytest.fixture(scope="module")
def key_store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore(Path(tmp_path_factory.mktemp("keys")) / "keys.json")


@pytest.fixture(scope="module")
def infer_key(key_store: KeyStore) -> str:
    """A key that may read and infer every model, and not load or unload (403)."""
    key = key_store.add("fuzz", ["infer:*"])
    remember(key)
    return key


@pytest.fixture(scope="module")
def auth_server(rest_repo: Repository, key_store: KeyStore, infer_key: str
                ) -> Iterator[Served]:
    """Authentication on: API keys, then roles (health stays open, the default)."""
    engine = Engine(rest_repo, policies=[Authenticate(keys=key_store), Authorize()])
    with serve(engine, rest_repo) as served:
        yield served


# ------------------------------------------------------------------ the runs


def test_open_server_conforms_to_its_document(open_server):
    run = fuzz(open_server)
    assert run.cases > 500
    assert not run.failures, run.report()
    assert all(status < 500 for _, _, status, _ in run.statuses)


def test_authenticated_calls_conform_to_the_document(auth_server, infer_key):
    run = fuzz(auth_server, headers={"Authorization": f"Bearer {infer_key}"})
    assert run.cases > 500
    assert not run.failures, run.report()
    # The key reads and infers: served models answer 200; load/unload need admin (403).
    ok = {label for label, _, status, _ in run.statuses if status == 200}
    assert "POST /v2/models/{model}/infer" in ok or "GET /v2/models/{model}" in ok
    refused = {label for label, _, status, _ in run.statuses if status == 403}
    assert "POST /v2/repository/models/{model}/load" in refused


def test_calls_without_a_credential_are_refused(auth_server):
    """Every check still holds, and nothing that calls the engine answers without a key.

    A body the route cannot read at all is refused before the engine sees the call (400,
    413 or 415, with no model looked up), and a path that names no route is 404/405;
    everything else is 401. Health stays open (the
    default, ``open_health``), and so do /metrics, /openapi.json and /docs, which do not
    call the engine.
    """
    run = fuzz(auth_server)
    assert not run.failures, run.report()
    refused: set[str] = set()
    for label, method, status, positive in run.statuses:
        path = label.split(" ", 1)[1]
        if path in OPEN_PATHS:
            continue
        assert not 200 <= status < 400, (label, status)
        assert status in (400, 401, 404, 405, 413, 415), (label, status)
        if method == "GET" and positive:
            assert status == 401, (label, status)
        if status == 401:
            refused.add(label)
    # POST /predict names no model: with no default model (this repository has four) it is
    # 404 "no default model" before any model is looked up, key or not.
    engine_ops = {f"{r.method} {r.path}" for r in ROUTES
                  if r.path not in (*OPEN_PATHS, "/predict")}
    assert engine_ops <= refused, engine_ops - refused

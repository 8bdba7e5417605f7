"""The console behind authentication, and turned off.

With ``[security]`` on, the console's pages hold no data and stay open, while its JSON
endpoints go through the engine's policy chain like every other route (401 without a key,
403 without ``read:*``), and a ``read`` key sees everything but cannot load or unload: the
admin page shows the server's 403 and nothing changes. ``console = false`` answers 404.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from ferry.engine import Engine
from ferry.protocols.rest.app import create_app
from ferry.security import KeyStore
from ferry.server import security_policies
from ferry.settings import SecuritySettings
from rest_server import build_repository, serve
from secrets_used import remember


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-auth")
    repo = build_repository(root)
    store = KeyStore(root / "keys.json")
    keys = {"reader": store.add("dash", ["read:*"]), "mlp": store.add("ci", ["infer:mlp"]),
            "admin": store.add("ops", ["admin:*"])}
    remember(*keys.values())
    policies, _ = security_policies(SecuritySettings(api_keys_file=root / "keys.json"))
    with serve(Engine(repo, policies=policies), repo) as served:
        yield served, keys


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_data_endpoints_pass_the_policy_chain(secured):
    served, keys = secured
    with httpx.Client(base_url=served.url, timeout=30) as http:
        page = http.get("/console")
        assert page.status_code == 200 and "Models" in page.text  # no data in it
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for path in ("/console/api/models", "/console/api/live"):
            refused = http.get(path)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == 'Bearer realm="ferry"'
            narrow = http.get(path, headers=_bearer(keys["mlp"]))  # infer:mlp is not read:*
            assert narrow.status_code == 403, narrow.text
            ok = http.get(path, headers=_bearer(keys["reader"]))
            assert ok.status_code == 200, ok.text
            assert keys["reader"] not in ok.text
        names = [m["name"] for m in http.get("/console/api/models",
                                              headers=_bearer(keys["reader"])).json()["models"]]
        assert "mlp" in names
        # The admin routes the page calls: refused for a reader, as on any door.
        load = http.post("/v2/repository/models/mlp/unload", headers=_bearer(keys["reader"]))
        assert load.status_code == 403, load.text
    assert "mlp" in served.engine.served_models()


def test_a_read_key_in_the_browser_sees_the_models_but_cannot_unload(secured, open_tab):
    served, keys = secured
    tab = open_tab(served.url)
    page = tab.page
    page.goto("/console/admin")
    key = page.get_by_label("API key or token")
    key.wait_for()  # the 401 asked for a key
    key.fill(keys["reader"])
    page.get_by_role("button", name="Use key").click()
    row = page.locator('tr[data-model="mlp"]')
    row.wait_for()
    assert row.locator("[data-state]").get_attribute("data-state") == "READY"
    row.locator('button[data-action="unload"]').click()
    page.get_by_role("button", name="Confirm").click()
    status = page.locator("#status")
    deadline = 100
    while "403" not in status.inner_text() and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert "unload of model 'mlp' is not allowed" in status.inner_text()
    assert keys["reader"] not in page.content()
    assert "mlp" in served.engine.served_models()
    assert tab.errors == [] and tab.blocked == []


async def _console_off(app) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://ferry") as http:
        for path in ("/console", "/console/live", "/console/api/models",
                     "/console/static/console.js"):
            answer = await http.get(path)
            assert answer.status_code == 404, path
            assert "error" in answer.json()
        assert "console = false" in (await http.get("/console")).json()["error"]
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "redoc.standalone.js" in docs.text
        renderer = await http.get("/console/static/redoc.standalone.js")
        assert renderer.status_code == 200
        assert renderer.headers["content-type"].startswith("text/javascript")
        again = await http.get("/console/static/redoc.standalone.js",
                               headers={"If-None-Match": renderer.headers["etag"]})
        assert again.status_code == 304


def test_console_off_answers_404_but_docs_still_render(tmp_path):
    # In a thread with a loop of its own: the browser's session keeps Playwright's event
    # loop running in this one, so neither pytest-asyncio nor asyncio.run may start here.
    repo = build_repository(tmp_path)
    app = create_app(Engine(repo), console_on=False)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_console_off(app))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if failure:
        raise failure[0]

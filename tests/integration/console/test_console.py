"""The web console in a real headless Chromium against a real server serving the seed network.

The seed network (Keras Dense 64-64-10, trained here on scikit-learn's bundled digits and
imported with labels and a parity check) is served by uvicorn with ferry's HTTP/1.1
protocol on a free 127.0.0.1 port. Every page is driven as a person would: click, draw,
confirm. Pages run offline (conftest.py aborts any other host) and must raise no script
error.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from ferry.demo import DEMO_LABELS
from ferry.formats import ImportOptions, import_model
from ferry.repository import Repository
from rest_server import make_engine, serve


@pytest.fixture(scope="module")
def digits(tmp_path_factory, seed_h5, seed_data):
    repo = Repository(tmp_path_factory.mktemp("console") / "repo")
    import_model(repo, seed_h5, "digits",
                 options=ImportOptions(samples=seed_data.x_test[:32], labels=DEMO_LABELS))
    with serve(make_engine(repo), repo) as served:
        yield served


def _until(page, expression: str, timeout: float = 30.0) -> None:
    """Wait until ``expression`` is true in the page (polled with evaluate(), which the
    pages' Content-Security-Policy allows, unlike wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not true after {timeout} s: {expression}"
        page.wait_for_timeout(100)


def _clean(tab):
    assert tab.errors == [], tab.errors
    assert tab.blocked == [], f"the page reached outside the server: {tab.blocked}"


def test_models_page_lists_the_demo_model_with_parity_figures(digits, open_tab):
    manifest = digits.repo.manifest("digits")
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/console")
    section = page.locator('section[data-model="digits"]')
    section.wait_for()
    row = section.locator('tr[data-version="1"]')
    assert row.locator("[data-status]").inner_text() == "ready"
    text = row.inner_text()
    assert "keras" in text and "onnxruntime" in text
    assert manifest.source.sha256[:16] in text
    assert manifest.converter and manifest.converter in text
    parity = row.locator(".parity").inner_text()
    assert "passed" in parity and "max |Δ|" in parity
    assert f"{manifest.parity.samples} samples" in parity
    assert f"tolerance {manifest.parity.tolerance}" in parity
    assert ", ".join(DEMO_LABELS) in text
    tab.screenshot("console-models", docs=True)
    # Phone width: the page itself never scrolls sideways (wide tables scroll in place).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    tab.screenshot("console-models-phone")
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    _clean(tab)


def _quarters(row: np.ndarray) -> np.ndarray:
    """The pad's levels (0, 0.25, ..., 1) nearest to a digits row scaled to [0, 1]."""
    return np.round(row * 4) / 4


def _a_digit_the_model_reads(digits, seed_data) -> tuple[np.ndarray, int]:
    """A test image whose pad version (quarter levels) the served model reads correctly."""
    rows = _quarters(seed_data.x_test).astype(np.float32)
    with httpx.Client(base_url=digits.url, timeout=60) as http:
        scores = np.asarray(http.post("/predict/digits", json={"data": rows.tolist()})
                            .json()["predictions"])
    top2 = np.sort(scores, axis=1)[:, -2:]
    for i in np.argsort(-(top2[:, 1] - top2[:, 0])):  # the most clear-cut first
        if np.argmax(scores[i]) == seed_data.y_test[i]:
            return rows[i], int(seed_data.y_test[i])
    raise AssertionError("the model reads none of the test digits")


def _draw(page, levels: np.ndarray) -> None:
    """Replay an 8x8 image as pointer strokes: one pass per quarter of ink, row by row."""
    box = page.locator("#pad").bounding_box()
    cell = box["width"] / 8

    def centre(x: int, y: int) -> tuple[float, float]:
        return box["x"] + (x + 0.5) * cell, box["y"] + (y + 0.5) * cell

    passes = np.rint(levels.reshape(8, 8) * 4).astype(int)
    for level in range(1, 5):
        for y in range(8):
            x = 0
            while x < 8:
                if passes[y, x] < level:
                    x += 1
                    continue
                start = x
                while x < 8 and passes[y, x] >= level:
                    x += 1
                page.mouse.move(*centre(start, y))
                page.mouse.down()
                for cx in range(start + 1, x):
                    page.mouse.move(*centre(cx, y), steps=3)
                page.mouse.up()


def test_drawing_a_known_digit_on_the_pad_returns_it(digits, seed_data, open_tab):
    image, digit = _a_digit_the_model_reads(digits, seed_data)
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/console/try?model=digits")
    page.locator("#pad-section").wait_for(state="visible")
    _draw(page, image)
    sent = page.evaluate("JSON.parse(document.getElementById('try-input').value)")
    assert np.allclose(sent["inputs"][0]["data"], image)  # the pad holds exactly the image
    page.get_by_role("button", name="Predict the drawing").click()
    verdict = page.locator("#try-verdict")
    verdict.wait_for()
    assert verdict.get_attribute("data-label") == str(digit)
    bars = page.locator(".bars li")
    assert bars.count() == 10
    assert "Softmax of the logits" in page.locator("#try-result").inner_text()
    assert page.locator(".bars li.best").get_attribute("data-label") == str(digit)
    tab.screenshot("console-try", docs=True)
    name = sent["inputs"][0]["name"]
    # The labelled editor holds a valid V2 request too: sent as typed, answered 200.
    page.get_by_label("Request body (V2 JSON), pre-filled with a valid example").fill(
        json.dumps({"inputs": [{"name": name, "shape": [1, 64], "datatype": "FP32",
                                "data": image.tolist()}]}))
    page.get_by_role("button", name="Send the request").click()
    # (sending clears the last answer at once, so the verdict below is the new request's)
    _until(page, "document.getElementById('try-verdict') !== null")
    assert page.locator("#try-verdict").get_attribute("data-label") == str(digit)
    # A request the model cannot take: the server's 400 is shown, named.
    page.get_by_label("Request body (V2 JSON), pre-filled with a valid example").fill(
        json.dumps({"inputs": [{"name": name, "shape": [1, 3], "datatype": "FP32",
                                "data": [1, 2, 3]}]}))
    page.get_by_role("button", name="Send the request").click()
    _until(page, "document.getElementById('status').textContent.startsWith('400')")
    # The pad by keyboard: clear it, move the frame right and down, darken twice.
    page.get_by_role("button", name="Clear the pad").click()
    page.locator("#pad").focus()
    for key in ("ArrowRight", "ArrowDown", "Space", "Space"):
        page.keyboard.press(key)
    data = page.evaluate("JSON.parse(document.getElementById('try-input').value)")
    assert data["inputs"][0]["data"][9] == 0.5 and sum(data["inputs"][0]["data"]) == 0.5
    # Phone width: the page never scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    _clean(tab)


def _load(url: str, rows: list[list[float]], seconds: float, stop: threading.Event) -> None:
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline and not stop.is_set():
            assert http.post("/predict/digits", json={"data": rows}).status_code == 200


def test_the_live_view_moves_while_a_bounded_load_runs(digits, seed_data, open_tab):
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/console/live")
    _until(page, "window.ferryLive && window.ferryLive.readings() >= 2")
    before = int(page.locator("#live-total").inner_text().replace(",", ""))
    chart_before = page.locator("#chart-lat").screenshot()
    rows = seed_data.x_test[:4].tolist()
    stop = threading.Event()
    # Bounded: at most 10 s, stopped as soon as the page has shown what is asserted.
    workers = [threading.Thread(target=_load, args=(digits.url, rows, 10.0, stop))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        # Within the load: the counter has grown and the latency chart has drawn points.
        _until(page, "window.ferryLive.latency.data[1].some(v => v !== null && v > 0)", timeout=10)
        _until(page, "Number(document.getElementById('live-total').textContent"
                     f".replace(/,/g, '')) > {before + 20}", timeout=10)
        assert page.evaluate("Math.max(...window.ferryLive.rps.data[1])") > 0
        _until(page, "Number(document.getElementById('live-rps').textContent"
                     ".replace(/,/g, '')) > 0", timeout=10)
        _until(page, "window.ferryLive.latency.data[1].filter(v => v > 0).length >= 3", timeout=10)
        row = page.locator('#live-models tr[data-model="digits"]')
        assert row.count() == 1
        tab.screenshot("console-live", docs=True)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert page.locator("#chart-lat").screenshot() != chart_before
    page.set_viewport_size({"width": 390, "height": 844})  # phone width: no sideways scroll
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # No layout jump: the charts keep their size while they update.
    heights = page.evaluate("[...document.querySelectorAll('.chart')].map(c => c.offsetHeight)")
    page.wait_for_timeout(1500)
    assert page.evaluate("[...document.querySelectorAll('.chart')].map(c => c.offsetHeight)") == heights
    _clean(tab)


def _confirm(page, action: str, accept: bool) -> None:
    page.locator(f'tr[data-model="digits"] button[data-action="{action}"]').click()
    dialog = page.locator("dialog#confirm")
    dialog.wait_for(state="visible")
    page.get_by_role("button", name="Confirm" if accept else "Cancel").click()
    dialog.wait_for(state="hidden")


def test_load_and_unload_from_the_admin_page_change_the_status(digits, open_tab):
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/console/admin")
    state = page.locator('tr[data-model="digits"] [data-state]')
    state.wait_for()
    assert state.get_attribute("data-state") == "READY"
    _confirm(page, "unload", accept=False)  # cancelled: nothing changes
    _until(page, "document.getElementById('status').textContent === 'Nothing changed.'")
    assert "digits" in digits.engine.served_models()
    _confirm(page, "unload", accept=True)
    _until(page, "document.getElementById('status').textContent === 'digits unloaded.'")
    _until(page, "document.querySelector('tr[data-model=\"digits\"] [data-state]')"
                 ".dataset.state !== 'READY'")
    assert "digits" not in digits.engine.served_models()
    tab.screenshot("console-admin-unloaded")
    _confirm(page, "load", accept=True)
    _until(page, "document.getElementById('status').textContent === 'digits loaded.'")
    _until(page, "document.querySelector('tr[data-model=\"digits\"] [data-state]')"
                 ".dataset.state === 'READY'")
    assert "digits" in digits.engine.served_models()
    tab.screenshot("console-admin", docs=True)
    _clean(tab)


def test_the_api_docs_page_renders_offline(digits, open_tab):
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/docs")
    page.locator("h1").first.wait_for()
    assert page.locator("h1").first.inner_text().startswith("ferry")  # the API's title
    page.get_by_text("Run inference (JSON tensors, or JSON + binary tensor data)").first.wait_for(
        state="attached")  # an operation of /openapi.json, rendered
    tab.screenshot("api-docs", full_page=False, docs=True)
    _clean(tab)


def test_a_npy_or_json_file_fills_the_request(digits, seed_data, open_tab, tmp_path):
    image, digit = _a_digit_the_model_reads(digits, seed_data)
    npy = tmp_path / "row.npy"
    np.save(npy, image.reshape(1, 64).astype(np.float64))  # float64: the server's FP32 input
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([image.tolist()]))
    tab = open_tab(digits.url)
    page = tab.page
    page.goto("/console/try?model=digits")
    page.locator("#pad-section").wait_for(state="visible")
    for path in (npy, rows):
        page.get_by_label("Or load the input from a file (.npy or .json)").set_input_files(str(path))
        _until(page, "document.getElementById('status').textContent.startsWith('Loaded')")
        sent = page.evaluate("JSON.parse(document.getElementById('try-input').value)")["inputs"][0]
        assert sent["shape"] == [1, 64] and np.allclose(sent["data"], image), path.name
        page.get_by_role("button", name="Send the request").click()
        _until(page, "document.getElementById('try-verdict') !== null")
        assert page.locator("#try-verdict").get_attribute("data-label") == str(digit), path.name
    _clean(tab)


@pytest.mark.parametrize("path", ["/console", "/console/try", "/console/live", "/console/admin"])
def test_every_control_has_a_label(digits, open_tab, path):
    tab = open_tab(digits.url)
    page = tab.page
    page.goto(path)
    page.wait_for_load_state("networkidle")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button, canvas[tabindex]')]
        .filter(e => !e.closest('[hidden]') && !e.closest('dialog:not([open])'))
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !(e.tagName === 'BUTTON' && e.textContent.trim()))
        .map(e => e.outerHTML.slice(0, 80))""")
    assert unlabelled == []
    assert page.locator("h1").count() == 1
    assert page.locator('nav a[aria-current="page"]').count() == 1
    _clean(tab)

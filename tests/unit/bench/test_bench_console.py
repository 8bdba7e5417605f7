"""The console-open run's watcher (issue 21's bench row): polls, and fails when unanswered."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from benchmarks.processes import ServerError
from benchmarks.results import V2_JSON_CONSOLE
from benchmarks.run import ConsoleWatcher
from benchmarks.security import console_open


class _Live(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/console/api/live" else 404
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Live)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_watcher_polls_the_live_view_while_the_run_goes_on(base: str) -> None:
    with ConsoleWatcher(f"{base}/console/api/live", on=True, interval=0.01) as watcher:
        threading.Event().wait(0.2)
    assert watcher.answered >= 2


def test_a_console_that_never_answers_fails_the_run(base: str) -> None:
    with pytest.raises(ServerError, match="never answered 200"), \
            ConsoleWatcher(f"{base}/console/off", on=True, interval=0.01):
        threading.Event().wait(0.1)


def test_off_it_does_nothing_and_the_variant_turns_it_on() -> None:
    with ConsoleWatcher("http://127.0.0.1:9/never", on=False) as watcher:
        pass
    assert watcher.answered == 0
    variant = console_open()
    assert variant.console and variant.route == V2_JSON_CONSOLE and not variant.env

"""The ``--workers`` supervisor's decisions (ferry.server._Supervisor), on a fake clock with
fake processes: when a dead worker is restarted, when the server gives up, and when
stopping workers may send their clients away. The real processes, signals and sockets are
in tests/e2e/test_serve.py and tests/e2e/test_graceful_stop.py.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ferry.server as server
from ferry.errors import NotFoundError
from ferry.settings import ServerSettings


class FakeProcess:
    def __init__(self, pid: int, exitcode: int | None = None) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.sentinel = object()

    def join(self, timeout: float | None = None) -> None:
        pass


class FakePipe:
    def __init__(self, reports: list[dict[str, Any]] | None = None) -> None:
        self.reports = list(reports or [])
        self.sent: list[object] = []

    def poll(self, timeout: float = 0.0) -> bool:
        return bool(self.reports)

    def recv(self) -> dict[str, Any]:
        if not self.reports:
            raise EOFError
        return self.reports.pop(0)

    def send(self, message: object) -> None:
        self.sent.append(message)

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(server.time, "monotonic", fake)
    return fake


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The signals the supervisor sends (recorded, never sent: the PIDs are made up)."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(server.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


@pytest.fixture
def supervisor(tmp_path: Path, clock: Clock, kills: list[tuple[int, int]]
               ) -> Iterator[server._Supervisor]:
    settings = ServerSettings(repository=tmp_path, workers=2, http_port=18000, grpc_port=18001)
    sup = server._Supervisor(settings, None, str(tmp_path))
    for index, worker in enumerate(sup.workers):
        _ready(sup, worker, pid=100 + index)
    sup.announced = True
    yield sup
    for worker in sup.workers:
        worker.process = worker.reports = None
    sup.close()


def _ready(sup: server._Supervisor, worker: server._Worker, pid: int) -> None:
    worker.process, worker.reports = FakeProcess(pid), FakePipe([{"host": "127.0.0.1"}])
    worker.restart_at = None
    sup.read_report(worker)
    assert worker.ready


def _dies(sup: server._Supervisor, worker: server._Worker, code: int,
          reports: list[dict[str, Any]] | None = None) -> None:
    assert worker.process is not None
    worker.process.exitcode = code
    if reports:
        worker.reports = FakePipe(reports)
    sup.ended(worker)


def test_a_worker_that_keeps_crashing_waits_longer_each_time_up_to_the_bound(
        supervisor: server._Supervisor, clock: Clock) -> None:
    worker = supervisor.workers[0]
    delays = []
    for attempt in range(10):
        _dies(supervisor, worker, -signal.SIGKILL)
        assert worker.restart_at is not None
        delays.append(round(worker.restart_at - clock.now, 3))
        clock.now = worker.restart_at + 1.0  # restarted, ready, dies again a second later
        _ready(supervisor, worker, pid=200 + attempt)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert not supervisor.stopping  # crashes after being ready never stop the server


def test_a_worker_that_served_a_while_is_restarted_quickly_again(
        supervisor: server._Supervisor, clock: Clock) -> None:
    worker = supervisor.workers[0]
    for attempt in range(4):
        _dies(supervisor, worker, 1)
        assert worker.restart_at is not None
        clock.now = worker.restart_at
        _ready(supervisor, worker, pid=300 + attempt)
    clock.now += server.STABLE_AFTER
    _dies(supervisor, worker, -signal.SIGSEGV)
    assert worker.restart_at == clock.now + server.RESTART_DELAY


def test_five_deaths_in_a_row_before_ready_stop_the_server(
        supervisor: server._Supervisor, clock: Clock, kills: list[tuple[int, int]],
        caplog: pytest.LogCaptureFixture) -> None:
    worker, other = supervisor.workers
    _dies(supervisor, worker, -signal.SIGKILL)  # it had served: not a start failure
    error = {"error": "model 'mlp' is not in repository", "kind": "NotFoundError"}
    for attempt in range(server.START_FAILURES):
        assert not supervisor.stopping
        assert worker.restart_at is not None
        clock.now = worker.restart_at
        worker.process, worker.reports = FakeProcess(400 + attempt), FakePipe()
        worker.ready, worker.restart_at = False, None
        _dies(supervisor, worker, 1, [dict(error)])
    assert supervisor.stopping and supervisor.failed
    assert worker.restart_at is None
    assert (other.process.pid, signal.SIGTERM) in kills  # the survivor is stopped
    stops = [r.getMessage() for r in caplog.records if "stopping the server" in r.getMessage()]
    assert stops == ["worker ferry-worker-0 exited with code 1 before it was ready: model "
                     "'mlp' is not in repository (5 times in a row); stopping the server"]


def test_a_start_error_before_the_server_was_ever_ready_is_raised_as_is(
        supervisor: server._Supervisor) -> None:
    supervisor.announced = False
    worker = supervisor.workers[1]
    worker.ready = False
    with pytest.raises(NotFoundError, match="model 'ghost' is not in repository"):
        _dies(supervisor, worker, 1, [{"error": "model 'ghost' is not in repository",
                                       "kind": "NotFoundError", "hint": None}])


def test_stopping_workers_send_clients_away_only_once_every_port_is_closed(
        supervisor: server._Supervisor) -> None:
    first, second = supervisor.workers
    supervisor.begin_stop()
    first.reports = FakePipe([{"closed": True}])
    supervisor.read_report(first)
    assert first.reports.sent == []  # the other worker's port is still open
    second.reports = FakePipe([{"closed": True}])
    supervisor.read_report(second)
    assert first.reports.sent == second.reports.sent == ["closed"]


def test_a_worker_that_dies_while_the_others_wait_releases_them(
        supervisor: server._Supervisor) -> None:
    first, second = supervisor.workers
    supervisor.begin_stop()
    first.reports = FakePipe([{"closed": True}])
    supervisor.read_report(first)
    pipe = first.reports
    _dies(supervisor, second, -signal.SIGKILL)
    assert pipe.sent == ["closed"]
    assert supervisor.stop_codes == [-signal.SIGKILL]  # a death while stopping is reported

"""The load generators' reports: wrk through post.lua's WRK_JSON line, h2load's summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.loadgen import (
    LUA_SCRIPT,
    LoadgenError,
    h2load_command,
    parse_h2load,
    parse_wrk,
    percentile,
    wrk_command,
)

# What wrk prints with benchmarks/wrk/post.lua: its own report, then the script's line.
WRK_OUTPUT = """\
Running 15s test @ http://127.0.0.1:8000/predict
  1 threads and 64 connections
  Latency Distribution
     50%    3.10ms
     99%    9.80ms
  150000 requests in 15.00s, 30.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  10000.00
WRK_JSON {"requests": 150000, "duration_us": 15000000, "bytes": 31457280, "p50_us": 3100, \
"p90_us": 5000, "p99_us": 9800, "max_us": 20000, "mean_us": 3300.5, "non2xx": 12, \
"connect": 0, "read": 1, "write": 0, "timeout": 2, "statuses": {"200": 149988, "429": 10, \
"503": 2}}
"""


def test_wrk_report_counts_non_2xx_and_socket_errors() -> None:
    result = parse_wrk(WRK_OUTPUT, 64)
    assert result.requests == 150000
    assert result.rps == pytest.approx(10000.0)
    assert (result.p50_ms, result.p99_ms) == (3.1, 9.8)
    assert result.errors == 12 + 1 + 2  # non-2xx, read error, timeouts
    assert "429: 10" in result.detail and "503: 2" in result.detail
    assert "timeout 2" in result.detail


def test_wrk_report_without_errors_counts_none() -> None:
    line = ('WRK_JSON {"requests": 10, "duration_us": 1000000, "bytes": 1, "p50_us": 1, '
            '"p90_us": 1, "p99_us": 2, "max_us": 3, "mean_us": 1.0, "non2xx": 0, '
            '"connect": 0, "read": 0, "write": 0, "timeout": 0, "statuses": {"200": 10}}')
    result = parse_wrk(line, 1)
    assert result.errors == 0
    assert result.detail == "statuses 200: 10"


def test_wrk_output_without_the_script_line_is_refused() -> None:
    with pytest.raises(LoadgenError, match="no WRK_JSON"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n", 64)


def test_lua_script_counts_every_status_outside_2xx() -> None:
    script = LUA_SCRIPT.read_text()
    assert "function response(status" in script
    assert "status < 200 or status > 299" in script
    assert 'thread:get("counts")' in script


def test_wrk_command_posts_the_body_through_the_script(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    command = wrk_command("http://127.0.0.1:9/x", body, connections=64, seconds=15)
    assert command[:5] == ["wrk", "-t1", "-c64", "-d15s", "--timeout=10s"]
    assert command[command.index("-s") + 1] == str(LUA_SCRIPT)
    assert command[-4:] == ["http://127.0.0.1:9/x", "--", str(body), "application/json"]


H2LOAD_OUTPUT = """\
finished in 18.00s, 5000.00 req/s, 350.53KB/s
requests: 75003 total, 75003 started, 75003 done, 75000 succeeded, 3 failed, 1 errored, 0 timeout
status codes: 75002 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 1.71MB (1794697) total
"""


def test_h2load_report_uses_the_measured_phase_and_its_log() -> None:
    log = [f"1795558619510501\t200\t{us}" for us in range(1000, 101000, 1000)]  # 1..100 ms
    result = parse_h2load(H2LOAD_OUTPUT, log, 64)
    assert result.requests == 75000
    assert result.seconds == pytest.approx(15.0)  # 75000 / 5000 req/s, not 18 s with warm-up
    assert result.rps == pytest.approx(5000.0)
    assert (result.p50_ms, result.p99_ms) == (50.0, 99.0)
    assert result.errors == 3  # "failed" includes the errored call and the 4xx
    assert "4xx 1" in result.detail


def test_h2load_report_without_summary_is_refused() -> None:
    with pytest.raises(LoadgenError, match="h2load"):
        parse_h2load("connect: Connection refused\n", [], 1)


def test_h2load_command_sends_grpc_headers_one_stream_per_connection(tmp_path: Path) -> None:
    command = h2load_command("http://127.0.0.1:9/inference.GRPCInferenceService/ModelInfer",
                             tmp_path / "b.bin", connections=1, seconds=15, warmup=3,
                             log_file=tmp_path / "log.tsv")
    assert {"-c1", "-m1", "-D15000ms", "--warm-up-time=3000ms"} <= set(command)
    assert command[command.index("-H") + 1] == "content-type: application/grpc"
    assert "te: trailers" in command


@pytest.mark.parametrize(("q", "want"), [(50, 5), (99, 10), (100, 10), (1, 1)],
                         ids=["p50", "p99", "max", "p1"])
def test_percentile_is_nearest_rank(q: float, want: int) -> None:
    assert percentile(list(range(10, 0, -1)), q) == want

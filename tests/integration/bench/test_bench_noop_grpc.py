"""Issue 14's gRPC ceiling: the no-op grpc.aio servicer, started as the harness starts it.

It must answer a real ModelInfer call with the fixed answer it was given (whatever the
request's tensors hold), share ferry's gRPC server options, and be measured by the harness's
noop group with h2load like ferry's gRPC door.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from benchmarks.baselines import noop_grpc
from benchmarks.processes import Service, free_port, running
from benchmarks.results import GRPC, NOOP_GRPC
from benchmarks.run import H2LOAD, Bench, Options, noop_grpc_counts
from benchmarks.workloads import Workload, check_grpc, grpc_method

from ferry.protocols.grpc._generated import inference_pb2 as pb
from ferry.protocols.grpc._generated import inference_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = (9.5, -11.0, -6.25, -4.0, -3.5, -0.5, -2.0, -2.75, -2.25, -0.5)


def _workload(tmp_path: Path) -> Workload:
    return Workload("W1", "test", "digits", tmp_path / "none.onnx", "dense_input", "dense_2",
                    tuple([0.25] * 64), EXPECTED)


@pytest.fixture
def noop_server(tmp_path: Path) -> Iterator[tuple[str, Workload]]:
    w = _workload(tmp_path)
    answer = tmp_path / "answer.bin"
    answer.write_bytes(w.grpc_answer())
    port = free_port()
    target = f"127.0.0.1:{port}"
    service = Service("noop-grpc-test", noop_grpc.command(sys.executable, port, answer),
                      log=tmp_path / "noop-grpc.log", cwd=ROOT, core=None)
    with running(service, lambda: noop_grpc_counts(target) is not None, timeout=60):
        yield target, w


def test_noop_grpc_shares_ferrys_server_options() -> None:
    from ferry.protocols.grpc.server import DEFAULT_MAX_MESSAGE_BYTES, GrpcLimits, _options

    assert _options(DEFAULT_MAX_MESSAGE_BYTES, GrpcLimits()) == noop_grpc.SERVER_OPTIONS
    assert GrpcLimits().max_concurrent_rpcs == noop_grpc.MAX_CONCURRENT_RPCS


def test_the_answer_is_the_shape_ferry_gives(tmp_path: Path) -> None:
    w = _workload(tmp_path)
    answer = pb.ModelInferResponse.FromString(w.grpc_answer())
    assert (answer.model_name, answer.model_version) == ("digits", "1")
    assert [(o.name, o.datatype, list(o.shape)) for o in answer.outputs] == [
        ("dense_2", "FP32", [1, 10])]
    assert np.array_equal(np.frombuffer(answer.raw_output_contents[0], np.float32),
                          np.asarray(EXPECTED, np.float32))
    check_grpc(w.grpc_answer(), w)


def test_noop_grpc_answers_every_model_infer_with_the_fixed_answer(
        noop_server: tuple[str, Workload]) -> None:
    target, w = noop_server
    with grpc.insecure_channel(target) as channel:
        raw = channel.unary_unary(grpc_method())(w.grpc_message(), timeout=10)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # Tensors that ferry would refuse (wrong datatype, too few bytes): not decoded here.
        nonsense = pb.ModelInferRequest(model_name="other")
        nonsense.inputs.add(name="x", datatype="NOPE", shape=[3, 3])
        nonsense.raw_input_contents.append(b"\x00")
        typed = stub.ModelInfer(nonsense, timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
    assert raw == w.grpc_answer()
    check_grpc(raw, w)
    assert typed.SerializeToString() == w.grpc_answer()
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert noop_grpc_counts(target) == {"OK": 2.0}  # the two ModelInfer calls


@pytest.mark.skipif(shutil.which("h2load") is None or shutil.which("taskset") is None,
                    reason="h2load (make bench installs nghttp2-client) or taskset missing")
def test_the_noop_group_measures_the_noop_grpc_servicer_with_h2load(tmp_path: Path) -> None:
    options = Options(duration=1.0, warmup=0.5, workdir=tmp_path / "work",
                      out=tmp_path / "results.md", groups=frozenset({"noop"}),
                      connections=(2,), cold_runs=0, rounds=1)
    bench = Bench(options)
    w = _workload(tmp_path)
    bench.noop_grpc(w)
    [m] = bench.report.measurements
    assert (m.workload, m.server, m.route, m.connections, m.client) == (
        "W1", NOOP_GRPC, GRPC, 2, H2LOAD)
    assert m.result is not None, m.note
    assert m.result.requests > 10 and m.result.errors == 0
    assert "server: gRPC OK" in m.result.detail and "not OK 0" in m.result.detail
    # the same request file as ferry's gRPC runs, and the answer file it served
    assert (options.workdir / "bodies" / "W1-grpc.bin").read_bytes() == w.grpc_body()
    assert (options.workdir / "bodies" / "W1-grpc-answer.bin").read_bytes() == w.grpc_answer()


@pytest.mark.skipif(shutil.which("h2load") is None or shutil.which("taskset") is None,
                    reason="h2load (make bench installs nghttp2-client) or taskset missing")
def test_answers_the_server_did_not_count_are_errors(noop_server: tuple[str, Workload],
                                                     tmp_path: Path) -> None:
    """A server that counts fewer answers than h2load saw (grpc refused calls before the
    servicer ran) gets the difference as errors, and statuses other than OK count too."""
    target, w = noop_server
    bench = Bench(Options(duration=1.0, warmup=0.5, workdir=tmp_path / "work",
                          out=tmp_path / "results.md", groups=frozenset({"noop"}),
                          connections=(2,), cold_runs=0, rounds=1))
    scrapes = iter([{"OK": 0.0}, {"OK": 5.0, "UNAVAILABLE": 3.0}])

    class _Alive:
        def cpu_seconds(self) -> float:
            return 0.0

    bench.grpc_runs(_Alive(), w, target, lambda: next(scrapes),  # type: ignore[arg-type]
                    server=NOOP_GRPC)
    [m] = bench.report.measurements
    assert m.result is not None, m.note
    assert m.result.requests > 10
    assert m.result.errors == m.result.requests - 5  # 3 not OK + the uncounted rest
    assert "not OK 3" in m.result.detail and "not counted by the server" in m.result.detail

"""ONNX Runtime session options: the thread count follows the process's CPU affinity."""

from __future__ import annotations

import os

import pytest

from ferry.runtimes.base import RuntimeOptions
from ferry.runtimes.onnxruntime import session_options, usable_cpus

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")


def test_default_threads_are_the_cpus_the_process_may_use():
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # as `taskset -c N` would
        assert usable_cpus() == 1
        assert session_options(RuntimeOptions()).intra_op_num_threads == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)


def test_an_explicit_thread_count_wins():
    assert session_options(RuntimeOptions(intra_op_threads=3)).intra_op_num_threads == 3

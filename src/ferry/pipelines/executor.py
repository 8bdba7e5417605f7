"""Running a validated pipeline graph: pure, given how to run each model and custom step.

The executor owns the order and the wiring: it feeds each step the values of the steps
before it, runs the built-in transforms itself (numpy, on the calling thread), and hands
model and custom steps to the caller's ``run_step`` callable. So one executor serves both
the engine (``run_step`` submits a member model to the engine's own path: validation,
admission, batching) and in-process use (``run_step`` calls a loaded runtime).

Steps of one dependency level run concurrently (:func:`run_graph`, ``asyncio.gather``);
:func:`run_graph_sync` runs them one after the other. Every error names its step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ferry.errors import FerryError, InternalError
from ferry.pipelines.graph import Graph, Step
from ferry.pipelines.spec import INPUTS
from ferry.runtimes import Arrays
from ferry.signature import TensorSpec

__all__ = ["AsyncRunStep", "Observe", "SyncRunStep", "call_custom", "run_graph",
           "run_graph_sync"]

log = logging.getLogger("ferry.pipelines")

#: How the caller runs a model or custom step: ``(step, named inputs) -> named outputs``.
AsyncRunStep = Callable[[Step, Arrays], Awaitable[Arrays]]
SyncRunStep = Callable[[Step, Arrays], Arrays]
#: Told each step's wall time: ``(step id, seconds)``.
Observe = Callable[[str, float], None]


def call_custom(step: Step, arrays: Arrays) -> Arrays:
    """Run a custom step and check that it answered with the outputs it declared.

    Raises:
        InternalError: it raised something else than a FerryError, or answered wrongly.
    """
    assert step.custom is not None
    result = step.custom(arrays)
    if not isinstance(result, dict):
        raise InternalError(f"custom step {step.spec.target!r} returned "
                            f"{type(result).__name__}, not a dict of arrays")
    for name, port in step.outputs.items():
        array = result.get(name)
        if array is None or getattr(array, "dtype", None) is None:
            raise InternalError(f"custom step {step.spec.target!r} gave no array {name!r}")
        TensorSpec(name=name, datatype=port.datatype, shape=port.shape).check(
            array, role="custom step output")
    return result


def _named(step: Step, exc: BaseException) -> BaseException:
    """``exc`` with the step named in its message (a copy: errors may be shared)."""
    where = f"pipeline step {step.id!r} ({step.spec.kind} {step.spec.target})"
    if isinstance(exc, FerryError):
        if exc.message.startswith("pipeline step "):
            where = f"pipeline step {step.id!r}"
        named = type(exc).__new__(type(exc))
        named.__dict__.update(exc.__dict__)
        named.message = f"{where}: {exc.message}"
        Exception.__init__(named, named.message)
        if isinstance(exc.__cause__, BaseException):
            named.__cause__ = exc.__cause__
        return named
    log.error("%s failed", where, exc_info=exc)
    return InternalError(f"{where} failed: {type(exc).__name__}: {exc}")


def _outputs(graph: Graph, values: dict[str, Arrays]) -> Arrays:
    return {name: values[s.step][s.output] for name, s in graph.spec.outputs.items()}


def _transform(step: Step, values: dict[str, Arrays]) -> Arrays:
    assert step.transform is not None
    return step.transform(step.gather(values))


async def run_graph(graph: Graph, inputs: Arrays, run_step: AsyncRunStep, *,
                    observe: Observe | None = None) -> Arrays:
    """Run ``graph`` on validated ``inputs``; the steps of a level run concurrently.

    Raises:
        FerryError: a step failed; the message starts with ``pipeline step 'ID' (...)``.
    """
    values: dict[str, Arrays] = {INPUTS: inputs}
    for level in graph.levels:
        if len(level) == 1:
            step = level[0]
            values[step.id] = await _run_one(step, values, run_step, observe)
            continue
        results = await asyncio.gather(*(_run_one(step, values, run_step, observe)
                                         for step in level), return_exceptions=True)
        for step, result in zip(level, results, strict=True):
            if isinstance(result, BaseException):
                raise result
            values[step.id] = result
    return _outputs(graph, values)


async def _run_one(step: Step, values: dict[str, Arrays], run_step: AsyncRunStep,
                   observe: Observe | None) -> Arrays:
    start = time.perf_counter()
    try:
        if step.transform is not None:
            result = _transform(step, values)
        else:
            result = await run_step(step, step.gather(values))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        raise _named(step, exc) from None
    if observe is not None:
        observe(step.id, time.perf_counter() - start)
    return result


def run_graph_sync(graph: Graph, inputs: Arrays, run_step: SyncRunStep, *,
                   observe: Observe | None = None) -> Arrays:
    """Run ``graph`` on the calling thread, one step after another (in-process use).

    Raises:
        FerryError: a step failed; the message names it.
    """
    values: dict[str, Arrays] = {INPUTS: inputs}
    for level in graph.levels:
        for step in level:
            start = time.perf_counter()
            try:
                if step.transform is not None:
                    values[step.id] = _transform(step, values)
                else:
                    values[step.id] = run_step(step, step.gather(values))
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                raise _named(step, exc) from None
            if observe is not None:
                observe(step.id, time.perf_counter() - start)
    return _outputs(graph, values)


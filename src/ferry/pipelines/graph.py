"""Validation: a parsed pipeline checked against its members, as a runnable graph.

:func:`build_graph` resolves every model step (through a ``resolve`` callable: the
repository at import, the served models in the engine), loads every custom step's entry
point, orders the steps (refusing cycles), checks datatype and shape along every edge,
derives the pipeline's own signature and checks how deep pipelines nest. Nothing here runs a
model; :mod:`ferry.pipelines.executor` runs the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from ferry.errors import ArtifactError, NotFoundError
from ferry.pipelines.spec import INPUTS, PipelineSpec, Source, StepSpec
from ferry.pipelines.transforms import Port, Transform, make_transform, merge_shapes
from ferry.runtimes import Arrays
from ferry.signature import Signature, TensorSpec, format_shape

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_DEPTH",
    "CustomStep",
    "Graph",
    "Member",
    "Step",
    "build_graph",
    "load_custom_step",
]

#: How deep pipelines may nest: a pipeline whose step is a pipeline whose step is a pipeline
#: is 3 deep. Deeper is refused at import and at load.
MAX_DEPTH = 3
#: The entry-point group of custom Python steps (``[project.entry-points."ferry.pipeline_steps"]``).
ENTRY_POINT_GROUP = "ferry.pipeline_steps"


class CustomStep(Protocol):
    """What a custom step's entry point gives, once called with the step's options.

    The entry point names a factory (a class or a function): ``factory(**options)`` returns
    an object with ``outputs`` (the output specs for the given input specs; raise
    ``ValueError`` to refuse them, with a message that says why) and ``__call__`` (named
    arrays in, named arrays out, of those specs). Its code comes from the installed
    package, never from the repository.
    """

    def outputs(self, inputs: Mapping[str, TensorSpec]) -> Sequence[TensorSpec]:
        """The specs of the outputs for these inputs (``ValueError``: refused)."""
        ...

    def __call__(self, inputs: Arrays) -> Arrays:
        """Run on named arrays of the input specs."""
        ...


@dataclass(frozen=True)
class Member:
    """A model step's target as validation sees it."""

    name: str
    version: int
    pinned: bool
    signature: Signature
    labels: tuple[str, ...] | None = None
    #: 0 for a model, else how deep the member pipeline itself nests.
    depth: int = 0

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"


#: ``resolve(reference)`` -> the member that a model step names (raises NotFoundError).
Resolve = Callable[[str], Member]


@dataclass
class Step:
    """One validated step: what feeds it and what it gives."""

    spec: StepSpec
    #: (slot, source): a member's or custom step's input name, or a transform's position.
    feed: list[tuple[str | int, Source]]
    outputs: dict[str, Port]
    member: Member | None = None
    transform: Transform | None = None
    custom: CustomStep | None = None
    deps: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        """The step's name in the pipeline file."""
        return self.spec.id

    def gather(self, values: Mapping[str, Mapping[str, Any]]) -> Any:
        """This step's inputs from the values computed so far: a dict, or a list."""
        if self.transform is not None:
            return [values[s.step][s.output] for _, s in self.feed]
        return {str(slot): values[s.step][s.output] for slot, s in self.feed}


@dataclass
class Graph:
    """A validated pipeline: its steps in dependency levels and its derived signature."""

    spec: PipelineSpec
    steps: dict[str, Step]
    #: Steps grouped so that each depends only on earlier groups (run concurrently within).
    levels: list[list[Step]]
    signature: Signature
    labels: list[str] | None
    depth: int
    members: list[Member] = field(default_factory=list)


def load_custom_step(name: str, options: dict[str, Any], what: str) -> CustomStep:
    """Load the entry point ``name`` of :data:`ENTRY_POINT_GROUP` and call it with ``options``.

    Raises:
        NotFoundError: no installed package provides that entry point (the message lists
            those that exist).
        ArtifactError: it failed to load or to build the step.
    """
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
        raise NotFoundError(f"{what}: no installed package provides the custom step {name!r} "
                            f"(entry points of group {ENTRY_POINT_GROUP!r}: "
                            f"{', '.join(known) or 'none'})",
                            hint="pip install the package that defines it")
    try:
        factory = found[0].load()
        step: CustomStep = factory(**options)
    except Exception as exc:
        raise ArtifactError(f"{what}: custom step {name!r} failed to load: "
                            f"{type(exc).__name__}: {exc}") from None
    if not callable(step) or not callable(getattr(step, "outputs", None)):
        raise ArtifactError(f"{what}: custom step {name!r} gave {type(step).__name__}, which "
                            "has no outputs() and __call__() (see ferry.pipelines.CustomStep)")
    return step


def build_graph(spec: PipelineSpec, resolve: Resolve, *, where: str,
                max_depth: int = MAX_DEPTH) -> Graph:
    """Check ``spec`` against its members and return the runnable graph.

    Raises:
        NotFoundError: a step names a model (or custom step) that does not exist.
        ArtifactError: a cycle, a source that names nothing, mismatched datatypes or
            shapes along an edge, an unknown transform or option, a step that feeds
            nothing, or pipelines nested deeper than ``max_depth``. Each message names the
            step and the edge.
    """
    _check_sources(spec, where)
    order = _order(spec, where)
    members: dict[str, Member] = {}
    for step in spec.steps.values():
        if step.kind == "model":
            try:
                members[step.id] = resolve(step.target)
            except NotFoundError as exc:
                raise NotFoundError(f"{where}: {step.describe()}: {exc.message}") from None
    depth = 1 + max((m.depth for m in members.values()), default=0)
    if depth > max_depth:
        deepest = max(members.items(), key=lambda item: item[1].depth)
        raise ArtifactError(
            f"{where}: pipelines nest {depth} deep (step {deepest[0]!r} is pipeline "
            f"{deepest[1].ref}, itself {deepest[1].depth} deep); the limit is {max_depth}")
    ports: dict[str, dict[str, Port]] = {INPUTS: _input_ports(spec, members, where)}
    steps: dict[str, Step] = {}
    for sid in order:
        checked = _check_step(spec.steps[sid], members.get(sid), ports, where)
        steps[sid] = checked
        ports[sid] = checked.outputs
    used = {s.step for declared in spec.steps.values() for _, s in declared.inputs}
    used |= {s.step for s in spec.outputs.values()}
    for sid in order:
        if sid not in used:
            raise ArtifactError(f"{where}: {spec.steps[sid].describe()} feeds nothing; wire "
                                "one of its outputs to a step or to [outputs], or remove it")
    outputs: list[TensorSpec] = []
    for name, source in spec.outputs.items():
        port = _port(ports, source, f"{where}: output {name!r}")
        outputs.append(TensorSpec(name=name, datatype=port.datatype, shape=port.shape))
    inputs = [TensorSpec(name=name, datatype=p.datatype, shape=p.shape)
              for name, p in ports[INPUTS].items()]
    if not inputs:
        raise ArtifactError(f"{where}: no step takes a pipeline input (\"{INPUTS}.NAME\")")
    first = _port(ports, next(iter(spec.outputs.values())), where)
    labels = None
    if first is not None and first.labels is not None and first.shape \
            and first.shape[-1] in (-1, len(first.labels)):
        labels = list(first.labels)
    return Graph(spec=spec, steps=steps, levels=_levels(steps, order),
                 signature=Signature(inputs=tuple(inputs), outputs=tuple(outputs)),
                 labels=labels, depth=depth, members=list(members.values()))


def _check_sources(spec: PipelineSpec, where: str) -> None:
    for step in spec.steps.values():
        for _, source in step.inputs:
            if source.step != INPUTS and source.step not in spec.steps:
                raise NotFoundError(
                    f"{where}: {step.describe()}: source {str(source)!r} names no step "
                    f"(steps: {', '.join(spec.steps)}; pipeline inputs: {INPUTS}.NAME)")
            if source.step == step.id:
                raise ArtifactError(f"{where}: cycle: {step.id} -> {step.id} (the step takes "
                                    "its own output)")
    for name, source in spec.outputs.items():
        if source.step != INPUTS and source.step not in spec.steps:
            raise NotFoundError(f"{where}: output {name!r}: source {str(source)!r} names no "
                                f"step (steps: {', '.join(spec.steps)})")


def _order(spec: PipelineSpec, where: str) -> list[str]:
    """The steps in dependency order. Raises ArtifactError naming a cycle."""
    deps = {sid: [s.step for _, s in step.inputs if s.step != INPUTS]
            for sid, step in spec.steps.items()}
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(sid: str, path: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            cycle = [*path[path.index(sid):], sid]
            raise ArtifactError(f"{where}: cycle: {' -> '.join(cycle)} (a pipeline is a "
                                "directed acyclic graph)")
        state[sid] = 1
        for dep in deps[sid]:
            visit(dep, [*path, sid])
        state[sid] = 2
        order.append(sid)

    for sid in spec.steps:
        visit(sid, [])
    return order


def _levels(steps: dict[str, Step], order: list[str]) -> list[list[Step]]:
    level: dict[str, int] = {}
    for sid in order:
        level[sid] = 1 + max((level[d] for d in steps[sid].deps), default=-1)
    grouped: list[list[Step]] = [[] for _ in range(1 + max(level.values(), default=-1))]
    for sid in order:
        grouped[level[sid]].append(steps[sid])
    return grouped


def _input_ports(spec: PipelineSpec, members: dict[str, Member], where: str
                 ) -> dict[str, Port]:
    """The pipeline's inputs: declared in [inputs], or taken from the model steps they feed."""
    found: dict[str, Port] = {name: Port(s.datatype, s.shape)
                              for name, s in spec.inputs.items() if s is not None}
    origin: dict[str, str] = {}
    for sid, member in members.items():
        step = spec.steps[sid]
        for slot, source in _model_slots(step, member, where):
            if source.step != INPUTS or (source.output in found and source.output not in origin):
                continue
            want = member.signature.input(slot)
            port = Port(want.datatype, want.shape)
            have = found.get(source.output)
            if have is None:
                found[source.output], origin[source.output] = port, sid
                continue
            shape = merge_shapes(have.shape, port.shape)
            if have.datatype != port.datatype or shape is None:
                raise ArtifactError(
                    f"{where}: pipeline input {source.output!r} feeds step "
                    f"{origin[source.output]!r} ({have.describe()}) and step {sid!r} "
                    f"({port.describe()}), which do not agree")
            found[source.output] = Port(have.datatype, shape)
    ordered: dict[str, Port] = {}
    for step in spec.steps.values():
        for _, source in step.inputs:
            if source.step == INPUTS and source.output not in ordered:
                if source.output not in found:
                    raise ArtifactError(
                        f"{where}: pipeline input {source.output!r} feeds only transforms or "
                        f"custom steps; declare it: [inputs.{source.output}] datatype = "
                        "\"FP32\", shape = [-1, 4]")
                ordered[source.output] = found[source.output]
    for name in spec.inputs:
        if name not in ordered:
            raise ArtifactError(f"{where}: pipeline input {name!r} is declared but feeds no "
                                "step")
    return ordered


def _model_slots(step: StepSpec, member: Member, where: str) -> list[tuple[str, Source]]:
    names = member.signature.input_names
    what = f"{where}: {step.describe()}"
    if len(step.inputs) == 1 and step.inputs[0][0] is None:
        if len(names) != 1:
            raise ArtifactError(f"{what}: model {member.ref} takes {len(names)} inputs "
                                f"({', '.join(map(repr, names))}); wire each: inputs = "
                                f"{{ {names[0]} = \"STEP.OUTPUT\", ... }}")
        return [(names[0], step.inputs[0][1])]
    if any(not isinstance(slot, str) for slot, _ in step.inputs):
        raise ArtifactError(f"{what}: wire a model's inputs by name: inputs = "
                            f"{{ {names[0]} = \"STEP.OUTPUT\" }}")
    pairs = [(str(slot), source) for slot, source in step.inputs]
    for slot, _ in pairs:
        if slot not in names:
            raise ArtifactError(f"{what}: model {member.ref} has no input {slot!r} (inputs: "
                                f"{', '.join(map(repr, names))})")
    wired = {slot for slot, _ in pairs}
    for name in names:
        if name not in wired:
            raise ArtifactError(f"{what}: input {name!r} of model {member.ref} is not wired")
    return pairs


def _port(ports: dict[str, dict[str, Port]], source: Source, what: str) -> Port:
    given = ports[source.step]
    port = given.get(source.output)
    if port is None:
        owner = "the pipeline has no input" if source.step == INPUTS \
            else f"step {source.step!r} has no output"
        raise NotFoundError(f"{what}: {owner} {source.output!r} (there: "
                            f"{', '.join(map(repr, given)) or 'none'})")
    return port


def _check_step(spec: StepSpec, member: Member | None, ports: dict[str, dict[str, Port]],
                where: str) -> Step:
    what = f"{where}: {spec.describe()}"
    deps = frozenset(s.step for _, s in spec.inputs if s.step != INPUTS)
    if spec.kind == "model":
        assert member is not None
        feed: list[tuple[str | int, Source]] = []
        for slot, source in _model_slots(spec, member, where):
            want = member.signature.input(slot)
            got = _port(ports, source, what)
            if got.datatype != want.datatype or merge_shapes(got.shape, want.shape) is None:
                raise ArtifactError(
                    f"{what}: input {slot!r} expects {want.datatype} with shape "
                    f"{format_shape(want.shape)}, but {str(source)!r} gives {got.describe()}",
                    hint="add a cast or select step between them")
            feed.append((slot, source))
        outputs = {s.name: Port(s.datatype, s.shape) for s in member.signature.outputs}
        if member.labels is not None:
            first = member.signature.outputs[0]
            outputs[first.name] = Port(first.datatype, first.shape, member.labels)
        return Step(spec, feed, outputs, member=member, deps=deps)
    if spec.kind == "transform":
        transform = make_transform(spec.target, dict(spec.options), what)
        if any(isinstance(slot, str) for slot, _ in spec.inputs):
            raise ArtifactError(f"{what}: wire a transform's inputs as a source or a list of "
                                "sources")
        feed = [(i, source) for i, (_, source) in enumerate(spec.inputs)]
        outputs = transform.ports([_port(ports, s, what) for _, s in feed])
        return Step(spec, feed, outputs, transform=transform, deps=deps)
    custom = load_custom_step(spec.target, dict(spec.options), what)
    if any(isinstance(slot, int) for slot, _ in spec.inputs):
        raise ArtifactError(f"{what}: wire a custom step's inputs by name (inputs = "
                            "{ name = \"STEP.OUTPUT\" }) or as one source")
    named: list[tuple[str | int, Source]] = [
        ("input" if slot is None else str(slot), s) for slot, s in spec.inputs]
    feed = named
    given: dict[str, TensorSpec] = {}
    for key, source in feed:
        port = _port(ports, source, what)
        given[str(key)] = TensorSpec(name=str(key), datatype=port.datatype, shape=port.shape)
    try:
        specs = list(custom.outputs(given))
    except ValueError as exc:
        raise ArtifactError(f"{what}: {exc}") from None
    if not specs or not all(isinstance(s, TensorSpec) for s in specs):
        raise ArtifactError(f"{what}: its outputs() must return TensorSpecs, got {specs!r:.80}")
    return Step(spec, feed, {s.name: Port(s.datatype, s.shape) for s in specs},
                custom=custom, deps=deps)

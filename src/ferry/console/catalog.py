"""The console's models page data: every model and version of the repository, as served.

:func:`catalog` answers ``GET /console/api/models``. It starts with the engine's
:meth:`~ferry.engine.Engine.repository_index` under the caller's call context, so the
policy chain decides (authentication, and a ``read`` grant on ``*``, as for the index
itself); what it adds comes from the repository's manifests (immutable, so cached), the
served versions' instance counts and the request counters the metrics already keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferry.call import CallContext
from ferry.console.live import Reading
from ferry.errors import FerryError
from ferry.repository import Manifest, ModelRef

if TYPE_CHECKING:
    from ferry.engine import Engine

__all__ = ["Catalog"]


def _version_row(manifest: Manifest) -> dict[str, Any]:
    """What the models page shows of one version's manifest."""
    data = manifest.model_dump(mode="json")
    parity = data.get("parity")
    optimization = data.get("optimization") or None
    lineage: dict[str, Any] | None = None
    if data.get("parent") is not None or optimization:
        lineage = {"parent": data.get("parent"),
                   "steps": [{"name": s.get("name"), "summary": s.get("summary", "")}
                             for s in (optimization or {}).get("steps", [])],
                   "forced": bool((optimization or {}).get("forced", False))}
    return {
        "version": str(manifest.version),
        "format": manifest.format,
        "runtime": manifest.runtime,
        "platform": manifest.platform,
        "created": data["created"],
        "source": data["source"],
        "converter": manifest.converter,
        "parity": parity,
        "labels": manifest.labels,
        "inputs": [s.model_dump(mode="json") for s in manifest.signature.inputs],
        "outputs": [s.model_dump(mode="json") for s in manifest.signature.outputs],
        "lineage": lineage,
        "notes": list(manifest.notes),
    }


class Catalog:
    """The models view of one engine; manifests are read once per version (immutable)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._rows: dict[tuple[str, int], dict[str, Any]] = {}

    def _row(self, name: str, version: int) -> dict[str, Any] | None:
        row = self._rows.get((name, version))
        if row is None:
            try:
                manifest = self.engine.repository.manifest(ModelRef(name, version))
            except FerryError as exc:  # removed or broken on disk since it was listed
                return {"version": str(version), "problem": exc.message}
            row = self._rows[(name, version)] = _version_row(manifest)
        return row

    def catalog(self, call: CallContext, reading: Reading) -> dict[str, Any]:
        """Every model with its state and every stored version (checked as the index is).

        Raises:
            AuthenticationError, PermissionDeniedError: from the engine's policy chain.
        """
        index = self.engine.repository_index(call)  # the policy chain runs here
        states: dict[str, tuple[str, str]] = {}
        for entry in index:
            if entry.version is None:
                states[entry.name] = (entry.state, entry.reason or "")
            else:
                states.setdefault(entry.name, ("READY", ""))
        models = []
        for name in sorted(states):
            state, reason = states[name]
            served = self.engine.served_versions(name)
            try:
                stored = self.engine.repository.versions(name)
            except FerryError:
                stored = []
            versions = []
            for number in sorted(set(stored) | set(served), reverse=True):
                row = self._row(name, number)
                if row is None:
                    continue
                row = dict(row)
                live = served.get(number)
                if live is not None:
                    status = "ready"
                elif state == "LOADING" and number == max(stored, default=0):
                    status = "loading"
                elif served:
                    status = "retired"
                else:
                    status = "unloaded" if state == "UNAVAILABLE" else state.lower()
                counts = reading.versions.get((name, str(number)), {})
                # A pipeline has no runtime instances of its own (its members do).
                runtimes = getattr(live, "runtimes", None)
                row.update(status=status,
                           instances=0 if live is None
                           else len(runtimes) if runtimes is not None else None,
                           requests=counts.get("ok", 0.0) + counts.get("refused", 0.0)
                           + counts.get("errors", 0.0),
                           refused=counts.get("refused", 0.0),
                           errors=counts.get("errors", 0.0))
                versions.append(row)
            models.append({"name": name, "state": state, "reason": reason,
                           "default": name == self.engine.default_model(),
                           "versions": versions})
        return {"models": models}

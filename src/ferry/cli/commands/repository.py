"""``ferry models``, ``ferry show``, ``ferry delete``: read and prune the repository."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ferry.cli.app import app, state
from ferry.cli.console import err_console, out_console, print_json
from ferry.errors import InputError, NotFoundError, UntrustedArtifactError
from ferry.repository import Manifest, ModelRef, Repository


@app.command("models")
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the models in the repository with their versions.

    Example: [bold]ferry models[/]
    """
    repo = state(ctx).repo
    rows: list[dict[str, Any]] = []
    for name in repo.models():
        versions = repo.versions(name)
        latest = repo.manifest(ModelRef(name, versions[-1]))
        rows.append({
            "name": name, "versions": versions, "latest": versions[-1],
            "format": latest.format, "runtime": latest.runtime,
            "created": latest.created.isoformat(),
        })
    if as_json:
        print_json(rows)
        return
    if not rows:
        err_console.print(f"no models in {repo.location} yet; try: ferry demo", highlight=False)
        return
    table = Table("model", "versions", "latest format", "runtime", "created (UTC)")
    for row in rows:
        table.add_row(row["name"], ", ".join(map(str, row["versions"])), row["format"],
                      row["runtime"], row["created"])
    out_console.print(table)


@app.command("show")
def show(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME or NAME:VERSION (default: the latest).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest.")] = False,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Check every file's sha256 against the manifest.",
    )] = True,
) -> None:
    """Show one model version: signature, source, parity figures, files.

    Example: [bold]ferry show digits:1[/]
    """
    repo = state(ctx).repo
    ref = ModelRef.parse(model)
    manifest = repo.open(ref).manifest if verify else repo.manifest(ref)
    if as_json:
        print_json(manifest.model_dump(mode="json"))
        return
    _print_manifest(manifest, verified=verify)
    if manifest.parent is not None:
        _print_lineage(repo, manifest)
    out_console.print(f"  signed    {_signed(repo, ModelRef(manifest.name, manifest.version))}",
                      highlight=False)


def _print_lineage(repo: Repository, manifest: Manifest) -> None:
    """The parent chain (``digits:3 <- digits:2 <- digits:1``) and this version's steps."""
    chain, current = [], manifest
    while True:
        how = (", ".join(s.name for s in current.optimization.steps if s.name != "compact")
               if current.optimization else f"imported from {current.format}")
        chain.append(f"{current.name}:{current.version} ({how})")
        if current.parent is None or len(chain) > 100:
            break
        try:
            current = repo.manifest(ModelRef(current.name, current.parent))
        except NotFoundError:
            chain.append(f"{current.name}:{current.parent} (deleted)")
            break
    p = out_console.print
    p(f"  lineage   {escape(' <- '.join(chain))}", highlight=False)
    record = manifest.optimization
    if record is None:
        return
    for step in record.steps:
        p(f"  step      {step.name}: {escape(step.summary)}", highlight=False)
    tools = ", ".join(f"{k} {v}" for k, v in sorted(record.tools.items()))
    p(f"  tools     {tools}", highlight=False)
    quality = record.report.get("quality", {})
    drop = quality.get("drop")
    if drop is not None:
        forced = " (published with --force)" if record.forced else ""
        p(f"  quality   drop {drop:.2f} points of {quality.get('measure')} against "
          f"{manifest.name}:{manifest.parent} on {quality.get('origin')}{forced}",
          highlight=False)


def _signed(repo: Repository, ref: ModelRef) -> str:
    """Who signed a version, unchecked (ferry verify checks against trusted keys)."""
    try:
        signatures = repo.signatures(ref)
    except UntrustedArtifactError as exc:
        return escape(exc.message)
    if not signatures:
        return "no (unsigned)"
    keys = ", ".join(f"{s.key_id} ({s.signed_at})" for s in signatures)
    return f"by key(s) {keys}; check with ferry verify {ref} --trusted-keys FILE"


def _print_manifest(m: Manifest, *, verified: bool) -> None:
    p = out_console.print
    p(f"[bold]{m.name}:{m.version}[/]  {m.format} -> {m.runtime} ({m.platform})", highlight=False)
    p(f"  created   {m.created.isoformat()}")
    p(f"  source    {m.source.filename}  sha256 {m.source.sha256[:16]}...  "
      f"{m.source.framework or ''}", highlight=False)
    if m.converter:
        p(f"  converter {m.converter}", highlight=False)
    columns = ("", "name", "datatype", "shape") + (("source name",) if m.source_names else ())
    table = Table(*columns, box=None, pad_edge=False)
    for role, specs in (("input", m.signature.inputs), ("output", m.signature.outputs)):
        for spec in specs:
            source = m.source_names.get(spec.name)
            extra = (escape(source) if source is not None else "",) if m.source_names else ()
            table.add_row(role, escape(spec.name), spec.datatype, str(list(spec.shape)), *extra)
    p(table)
    if m.parity:
        diffs = ", ".join(f"{k} {v:.3g}" for k, v in m.parity.max_abs_diff.items()) or "-"
        p(f"  parity    {m.parity.method}: max |Δ| {diffs} on {m.parity.samples} samples "
          f"({m.parity.inputs}), tolerance {m.parity.tolerance:g}", highlight=False)
        if m.parity.threshold_rows:
            p(f"  thresholds {m.parity.threshold_rows} rows at the trees' split thresholds "
              "and their float32 neighbours agree too", highlight=False)
    if m.labels:
        p(f"  labels    {', '.join(m.labels[:20])}{' ...' if len(m.labels) > 20 else ''}",
          highlight=False)
    for note in m.notes:
        p(f"  note      {escape(note)}", highlight=False)  # notes quote errors: not markup
    state_text = "all match" if verified else "not checked (--no-verify)"
    p(f"  files     {len(m.files)} ({sum(f.size for f in m.files.values())} bytes), "
      f"sha256 {state_text}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(
        metavar="MODEL", help="NAME (every version) or NAME:VERSION.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one version of a model, or all of its versions.

    Example: [bold]ferry delete digits:1 --yes[/]
    """
    repo = state(ctx).repo
    ref = ModelRef.parse(model)
    targets = [repo.resolve(ref)] if ref.version else repo.versions(ref.name)
    if not targets:
        repo.resolve(ref)  # raises NotFoundError naming what exists
    what = f"{ref.name} version(s) {', '.join(map(str, targets))}"
    if not yes:
        if not sys.stdin.isatty():
            raise InputError(f"refusing to delete {what} without --yes (no terminal to ask)")
        typer.confirm(f"Delete {what}?", abort=True)
    deleted = repo.delete(ref)
    err_console.print(f"deleted {ref.name} version(s) {', '.join(map(str, deleted))}",
                      highlight=False)


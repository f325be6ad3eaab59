"""``labelloop models``: the catalog of pre-labeler models and the ones the workspace holds
(``list``), and one-command downloads (``pull``), added to the group in :mod:`pipelines.cli`.
The work is :mod:`labelloop.models` (catalog, pull, registry); this module parses and prints."""

from __future__ import annotations

import json

import click

from labelloop.models import catalog, registry
from labelloop.models.pull import PullError, pull
from labelloop.models.use import UseError, UseResult, use_model
from pipelines.cli.common import CliError, emit, options, workspace_of


def _size(n: int | None) -> str:
    if not n:
        return "?"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _trained_lines(row: dict) -> list[str]:
    """A fine-tuned model's provenance and figures (AP on each evaluated split of it and of the
    model that was current when it was trained, from ``metrics_json``); none for a pretrained one."""
    if not row.get("trained_on_release"):
        return []
    out = [f"trained on {row['trained_on_release']} (labels sha256 {(row.get('labels_sha256') or '?')[:12]})"]
    try:
        metrics = json.loads(row.get("metrics_json") or "{}")
    except ValueError:
        metrics = {}
    for who in ("candidate", "current"):
        for split, ev in sorted((metrics.get(who) or {}).items(), key=lambda kv: kv[0] != "test"):
            if isinstance(ev, dict) and ev.get("AP") is not None:
                out.append(f"{'this model' if who == 'candidate' else 'then current'}: AP {ev['AP']:.3f} "
                           f"AP50 {ev.get('AP50', float('nan')):.3f} on {ev.get('images', '?')} {split} images")
    if row.get("promoted_at"):
        out.append(f"promoted {row['promoted_at']} by {row.get('promoted_by')}: {row.get('promoted_reason')}")
    return out


@click.group("models")
def models() -> None:
    """Pre-labeler models: the catalog, what this workspace holds, and downloads from the hub."""


@models.command("list")
@options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """The catalog (name, hub repo, role, licence, approximate size) and the models installed in
    the workspace's models table (path, sha256, size, status)."""

    ws = workspace_of(ctx)
    installed = registry.read_models(ws)
    data = {"catalog": [e.as_dict() for e in catalog.CATALOG.values()], "installed": installed,
            "models_dir": str(registry.models_dir(ws))}

    def fmt(d: dict) -> str:
        have = {r["name"]: r for r in d["installed"]}
        lines = ["catalog (labelloop models pull NAME):"]
        for e in d["catalog"]:
            mark = "installed" if e["name"] in have else ""
            lines.append(f"  {e['name']:<20} {e['repo_id']:<36} {e['role']:<9} {e['licence']:<11} "
                         f"~{_size(e['size_bytes']):<8} {mark}".rstrip())
            if e["gated"] or e["spec_kind"] is None:
                lines.append(f"  {'':<20} {e['note']}")
        lines.append(f"installed in {d['models_dir']}:" if d["installed"] else "installed: none")
        for r in d["installed"]:
            lines.append(f"  {r['name']:<20} {r['role']:<9} {r['status']:<9} {_size(r['size_bytes']):<8} "
                         f"sha256 {r['sha256']}  {r['path']}" + ("  <- current" if r["status"] == "current" else ""))
            lines += [f"  {'':<20} {x}" for x in _trained_lines(r)]
        current = [f"{r['role']}: {r['name']}" for r in d["installed"] if r["status"] == "current"]
        if d["installed"]:
            lines.append("current: " + (", ".join(current) if current else "none (labelloop.yaml's built-in models)"))
        return "\n".join(lines)

    emit(data, as_json, fmt)


@models.command("pull")
@options
@click.argument("name")
@click.option("--revision", metavar="R", help="branch, tag or commit (default: the catalog's, main)")
@click.option("--role", type=click.Choice(registry.ROLES), help="for a repo id outside the catalog: its labelloop.yaml slot")
@click.option("--kind", "spec_kind", metavar="KIND",
              help="for a repo id outside the catalog: the spec kind that loads it (grounding-dino, owlv2, sam2, sam-hq)")
@click.option("--use", "use", is_flag=True,
              help="then write its path and sha256 into labelloop.yaml and make it current (labelloop models use)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def pull_model(ctx: click.Context, name: str, revision: str | None, role: str | None, spec_kind: str | None,
               use: bool, as_json: bool) -> None:
    """Download NAME (a catalog name, or a hub repo id org/name) from the Hugging Face Hub
    ($HF_ENDPOINT; token from `hf auth login` or HF_TOKEN) into models/NAME, verify every file
    against the hashes the hub declares, record it in the models table, and print the
    labelloop.yaml lines that use it."""

    ws = workspace_of(ctx)
    try:
        res = pull(ws, name, revision, role=role, spec_kind=spec_kind)
    except PullError as exc:
        raise CliError(str(exc)) from None
    data = {"name": res.row["name"], "path": str(res.path), "sha256": res.row["sha256"],
            "revision": res.row["revision"], "size_bytes": res.row["size_bytes"], "already": res.already,
            "snippet": res.snippet, "row": res.row}
    if use:
        data["used"] = _use(ws, res.row["name"])

    def fmt(d: dict) -> str:
        head = (f"{d['name']}: already installed" if d["already"] else f"{d['name']}: pulled") + \
               f" at {d['path']} (revision {d['revision']}, {_size(d['size_bytes'])}, sha256 {d['sha256']})"
        if d.get("used"):
            return head + "\n" + _used_text(d["used"])
        if d["snippet"] is None:
            return head + "\nno labelloop backend loads this model yet: it is recorded in the models table only"
        return head + "\nput in labelloop.yaml:\n" + d["snippet"].rstrip("\n")

    emit(data, as_json, fmt)


def _use(ws, name: str) -> dict:
    try:
        res: UseResult = use_model(ws, name)
    except UseError as exc:
        raise CliError(str(exc)) from None
    return {"name": name, "role": res.row["role"], "config": str(res.config_path), "prelabeler": res.prelabeler,
            "categories_changed": res.categories_changed, "sha256": res.row["sha256"], "path": res.row["path"]}


def _used_text(d: dict) -> str:
    head = (f"{d['name']} is now the current {d['role']}: {d['config']} prelabeler.backend "
            f"{d['prelabeler'].get('backend')}, path {d['path']}, sha256 {d['sha256']}")
    lines = [head]
    if d["categories_changed"]:
        lines.append(f"categories now detected by it: {', '.join(d['categories_changed'])}")
    return "\n".join(lines)


@models.command("use")
@options
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def use_cmd(ctx: click.Context, name: str, as_json: bool) -> None:
    """Make the pulled model NAME the pre-labeler's: check its folder's sha256, write its path
    and sha256 into labelloop.yaml (the detector, segmenter or sam3 slot of its role; comments
    in the file are not kept) and mark it current in the models table."""

    ws = workspace_of(ctx)
    emit(_use(ws, name), as_json, _used_text)

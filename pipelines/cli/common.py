"""What the ``labelloop`` commands share: the one-line error, the workspace of a command, the
options every command accepts, and the steps several commands run (batches, review-file copy,
release). No command needs the group (:mod:`pipelines.cli`) for them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import click

from labelloop.images.files import sha256_file
from labelloop.reprocess import PlannedRun, predicts_reviewed, stale_stage
from labelloop.review.inbox import remember_source
from labelloop.review.store import review_store
from labelloop.workspace import recovery
from labelloop.workspace.layout import Workspace
from pipelines.runner import execute, get_instance, quiet
from resources.prelabeler import PreLabelerResource

BLOCKED = 3


_SQL_NOISE = re.compile(r"\s*\[SQL: .*?\](?=\s|$)|\s*\[parameters: .*?\](?=\s|$)|\s*\(Background on this error at: [^)]*\)",
                        re.DOTALL)


def one_line(message: str) -> str:
    """A failure's message as one line: SQLAlchemy's statement dumps (``[SQL: ...]``,
    ``[parameters: ...]``, ``(Background on this error at: ...)``) left out, the lines joined."""
    text = _SQL_NOISE.sub("", str(message))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines) if len(lines) <= 3 else " ".join(lines[:3]) + " ..."


def full_disk_hint(message: str, workspace: str | None) -> str:
    """``message``, plus where to free space when the failure is a full disk and the message does
    not say so itself: SQLite's "database or disk is full" / "disk I/O error" from the Dagster
    instance, git's or DVC's "No space left on device" (checked with ``os.statvfs`` of the
    workspace: under 1 MiB free)."""
    if "free space" in message or not any(k in message for k in ("disk is full", "No space left", "disk I/O error")):
        return message
    where = Workspace.at(workspace).root if workspace or os.environ.get("LABELLOOP_WORKSPACE") else Path.cwd()
    try:
        st = os.statvfs(where)
        full = st.f_bavail * st.f_frsize < 2**20
    except OSError:
        full = "disk I/O error" not in message
    if full:
        message += f" (the disk that holds the workspace {where} and its .dagster instance is full: free space there)"
    return message


class CliError(click.ClickException):
    """A failure reported as one line on stderr (:func:`one_line`)."""

    def __init__(self, message: str, workspace: str | Path | None = None) -> None:
        super().__init__(one_line(full_disk_hint(str(message), str(workspace) if workspace else None)))

    def show(self, file=None):
        click.echo(f"labelloop: error: {self.format_message()}", err=True)


def workspace_of(ctx: click.Context, require: bool = True) -> Workspace:
    ws = Workspace.at(ctx.obj["workspace"])
    return ws.require() if require else ws


def _set_workspace(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["workspace"] = value


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["verbose"] = True

        quiet(True)


def options(f):
    """--workspace / --verbose accepted after the command name too (``labelloop demo --workspace P``)."""
    f = click.option("--verbose", "-v", is_flag=True, expose_value=False, callback=_set_verbose,
                     help="show Dagster's logs and full tracebacks")(f)
    return click.option("--workspace", "-w", type=click.Path(file_okay=False), expose_value=False,
                        callback=_set_workspace, is_eager=True,
                        help="workspace root (default: $LABELLOOP_WORKSPACE, else the current directory; "
                             "for demo: ./labelloop-demo)")(f)


def emit(data: dict, as_json: bool, fmt) -> None:
    click.echo(json.dumps(data, indent=1, default=str) if as_json else fmt(data))


def run_batches(ctx: click.Context, ws: Workspace, only: str | None) -> list[dict]:

    with ws.lock():
        recovery.remove_stale_temporaries(ws)  # what a killed writer left beside a table
    instance = get_instance(ws)
    model_id = PreLabelerResource().get(ws.config()).model_id
    names = [only] if only else ws.batches()
    if only and only not in ws.batches():
        raise CliError(f"no batch named {only!r} (batches: {', '.join(ws.batches()) or 'none'})")
    reviewed = set(review_store(ws).latest_reviews())
    done = []
    for b in names:
        st = stale_stage(ws, b, model_id, reviewed, predicts_reviewed(ws))
        if st is None and not only:
            continue
        # from the first stale stage on: a new routing policy re-routes without a pre-label step
        stages = list(PlannedRun(st[0], (b,)).assets) if st else None
        out = execute(ws, "batch_job", instance, partition_key=b, asset_selection=stages, verbose=ctx.obj["verbose"])
        if not out.success:
            raise CliError(f"batch {b}: {out.reason()} (run {out.run_id})", ws.root)
        done.append({"batch": b, "reason": st[1] if st else "requested", "run_id": out.run_id, "metadata": out.metadata})
    out = execute(ws, "resolve_job", instance, verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"resolve: {out.reason()} (run {out.run_id})", ws.root)
    done.append({"batch": None, "run_id": out.run_id, "metadata": out.metadata})
    return done


def copy_to_inbox(ws: Workspace, file: Path, source: str | None) -> Path:

    ws.review_inbox.mkdir(parents=True, exist_ok=True)
    if file.resolve().is_relative_to(ws.review_inbox.resolve()):
        dest = file.resolve()
    else:
        dest = ws.review_inbox / file.name
        if dest.exists() and sha256_file(dest) != sha256_file(file):
            dest = ws.review_inbox / f"{file.stem}-{sha256_file(file)[:8]}{file.suffix}"
        if not dest.exists():
            tmp = dest.with_name(f".tmp-{dest.name}")
            shutil.copy2(file, tmp)  # keeps the export's mtime: the version time of files that carry none
            os.replace(tmp, dest)
    if source:
        remember_source(ws, dest, source)
    return dest


def do_release(ctx: click.Context, ws: Workspace, resplit: bool = False) -> dict:
    """Run release_job; returns {"status": released|unchanged|blocked, ...}."""

    run_config = {"ops": {"dataset_release": {"config": {"resplit": True}}}} if resplit else None
    out = execute(ws, "release_job", get_instance(ws), run_config=run_config, verbose=ctx.obj["verbose"])
    md = out.metadata.get("dataset_release", {})
    warnings = [f"{c['name']}: {c['reason']}" for c in out.warned_checks]
    if out.success:
        return {"status": md.get("status", "released"), "tag": md.get("tag"), "warnings": warnings,
                "run_id": out.run_id, "metadata": md}
    if out.failed_checks or any("release blocked: " in f for f in out.failures):
        reason = out.reason().replace(": release blocked: ", ": ")  # the asset's own prefix, said once below
        return {"status": "blocked", "reason": reason, "checks": out.failed_checks, "warnings": warnings,
                "run_id": out.run_id}
    raise CliError(f"release: {out.reason()} (run {out.run_id})", ws.root)

"""Workspace commands of the ``labelloop`` CLI: ``init``, ``ingest``, ``run``, ``status``, ``ui``."""

from __future__ import annotations

import os
import signal
import sys

import click

from labelloop.ingest.files import ingest as do_ingest
from labelloop.release.audit import status as get_status
from labelloop.workspace.init import init_workspace
from pipelines.cli.common import emit, options, run_batches, workspace_of
from pipelines.cli.summary import format_status
from pipelines.partitions import BATCHES
from pipelines.runner import get_instance


@click.command()
@options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create a workspace (git + DVC repository, labelloop.yaml, folders, Dagster home) at
    --workspace, else $LABELLOOP_WORKSPACE, else the current directory."""

    ws = init_workspace(workspace_of(ctx, require=False))
    get_instance(ws)
    click.echo(f"workspace ready: {ws.root}")


@click.command()
@options
@click.argument("path")
@click.option("--batch", help="batch name (default: UTC timestamp)")
@click.pass_context
def ingest(ctx: click.Context, path: str, batch: str | None) -> None:
    """Copy the image files under PATH (folder, file or s3://bucket/prefix) into the inbox (the
    workspace's, or the S3 store of LABELLOOP_STORE_URL) as a batch; register its partition."""

    ws = workspace_of(ctx)
    res = do_ingest(ws, path, batch)
    if res.batch in ws.batches():
        get_instance(ws).add_dynamic_partitions(BATCHES, [res.batch])
    click.echo(f"batch {res.batch}: {len(res.copied)} copied, {len(res.already_ingested)} already ingested, "
               f"{len(res.skipped) + len(res.not_images)} skipped")
    if res.not_images:  # e.g. "skipped 3 files that are not images: .txt (2), .xml (1)"
        click.echo(f"  {res.not_images_line()}")
    for p, why in res.skipped:
        click.echo(f"  skipped {p}: {why}")


@click.command()
@options
@click.option("--batch", help="only this batch (default: every batch with missing or stale assets)")
@click.pass_context
def run(ctx: click.Context, batch: str | None) -> None:
    """Materialize the per-batch assets where missing or stale, then human_labels and labels."""
    ws = workspace_of(ctx)
    for d in run_batches(ctx, ws, batch):
        md = d["metadata"]
        if d["batch"]:
            ri, pl, rq, rx = (md.get(k, {}) for k in ("raw_images", "prelabels", "review_queue", "review_export"))
            routes = ", ".join(f"{k.split('/')[1]} {v}" for k, v in rq.items() if k.startswith("route/"))
            click.echo(f"batch {d['batch']} [ran: {d['reason']}]: {ri.get('ok', 0)} ok, {ri.get('rejected', 0)} rejected; "
                       f"{pl.get('dagster/row_count', 0)} predictions; {routes}; {rx.get('tasks', 0)} tasks exported")
        else:
            lab = md.get("labels", {})
            click.echo(f"labels: {lab.get('dagster/row_count', 0)} on {lab.get('images_resolved', 0)} resolved images "
                       f"({lab.get('reviewed_images', 0)} reviewed)  [run {d['run_id'][:8]}]")


@click.command()
@options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Batches, images with their status and route, and releases."""

    emit(get_status(workspace_of(ctx)), as_json, format_status)


@click.command()
@options
@click.option("--port", "-p", default=3000, show_default=True, help="port of the UI on 127.0.0.1")
@click.pass_context
def ui(ctx: click.Context, port: int) -> None:
    """Open the Dagster UI (dagster dev) on this workspace's instance (stop it with Ctrl-C)."""
    ws = workspace_of(ctx)
    env = dict(os.environ, DAGSTER_HOME=str(ws.dagster_home), LABELLOOP_WORKSPACE=str(ws.root))
    # dagster 1.13's `dagster dev` warns that `dg dev` (dagster-dg, not installed) supersedes it:
    # start quietly (the user's own PYTHONWARNINGS come first and still apply)
    quiet = "ignore:Function `dev_command` is superseded"
    env["PYTHONWARNINGS"] = ",".join(w for w in (os.environ.get("PYTHONWARNINGS"), quiet) if w)
    click.echo(f"Dagster UI on http://127.0.0.1:{port} for {ws.root} (DAGSTER_HOME={ws.dagster_home})")
    args = [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)]
    # An ignored SIGINT survives exec (a background job started without job control has one), and
    # dagster dev handles SIGTERM as it handles SIGINT, so it would ignore SIGTERM too: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(sys.executable, args, env)

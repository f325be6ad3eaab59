"""Live Label Studio commands of the ``labelloop`` CLI: ``push-review`` and ``pull-review``
(added to the group in :mod:`pipelines.cli`). Both run through Dagster against the workspace's
instance, with the review tool of :func:`pipelines.definitions.review_tool_resource`."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import click

from labelloop.formats.labelstudio import ExportFormatError, check_size
from labelloop.review.importer import import_file
from labelloop.review.importer import register_export as do_register_export
from labelloop.review.inbox import inbox_files
from labelloop.review.live.server import LabelStudioServer, LabelStudioServerError
from labelloop.review.live.sync import default_title, reset_pull_marks
from labelloop.review.live.webhook import WebhookServer
from labelloop.workspace import repo
from pipelines.cli.common import CliError, copy_to_inbox, options, run_batches, workspace_of
from pipelines.runner import execute, get_instance


def _require_server() -> None:
    missing = [v for v in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY") if not os.environ.get(v)]
    if missing:
        raise CliError(f"{' and '.join(missing)} not set: the live review tool needs the Label Studio server's URL "
                       "and a personal access token (Label Studio: Account & Settings -> Personal Access Token)")


@click.command("push-review")
@options
@click.option("--batch", help="only this batch (default: every batch whose review queue exists)")
@click.pass_context
def push_review(ctx: click.Context, batch: str | None) -> None:
    """Send batches' review tasks with their pre-annotations to the live Label Studio server
    (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY): materializes review_export per batch, which
    creates or reuses the project and imports only tasks it does not hold yet."""

    _require_server()
    ws = workspace_of(ctx)
    if batch and batch not in ws.batches():
        raise CliError(f"no batch named {batch!r} (batches: {', '.join(ws.batches()) or 'none'})")
    names = [batch] if batch else [b for b in ws.batches() if repo.queue_path(ws, b).is_file()]
    if not names:
        raise CliError("no batch has a review queue yet: run `labelloop run` first")
    instance = get_instance(ws)
    for b in names:
        if not repo.queue_path(ws, b).is_file():
            raise CliError(f"batch {b} has no review queue yet: run `labelloop run --batch {b}` first")
        out = execute(ws, "review_push_job", instance, partition_key=b, verbose=ctx.obj["verbose"])
        if not out.success:
            raise CliError(f"batch {b}: {out.reason()} (run {out.run_id})")
        md = out.metadata.get("review_export", {})
        click.echo(f"batch {b}: {md.get('tasks', 0)} tasks exported; Label Studio "
                   f"{md.get('label_studio/source', '?')}: {md.get('label_studio/tasks_created', 0)} created, "
                   f"{md.get('label_studio/tasks_existing', 0)} already there, "
                   f"{md.get('label_studio/predictions_added', 0)} predictions added, "
                   f"{md.get('label_studio/double_review_tasks', 0)} tasks for two reviewers  "
                   f"{md.get('label_studio/project', '')}")


@click.command("pull-review")
@options
@click.option("--all", "full", is_flag=True, help="re-read every task of the project, not only those updated "
              "since the last pull (what was imported before is skipped by identity)")
@click.pass_context
def pull_review(ctx: click.Context, full: bool) -> None:
    """Import new and updated annotations from the live Label Studio server, then resolve labels
    (resolve_job: human_labels pulls, labels). The label_studio_sensor does the same on its own
    under `labelloop ui`."""

    _require_server()
    ws = workspace_of(ctx)
    if full:
        reset_pull_marks(ws)
    out = execute(ws, "resolve_job", get_instance(ws), verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"pull: {out.reason()} (run {out.run_id})")
    hl = out.metadata.get("human_labels", {})
    if not hl.get("label_studio/source"):
        raise CliError("no Label Studio project for this workspace yet: run `labelloop push-review` first")
    click.echo(f"{hl['label_studio/source']}: {hl.get('label_studio/tasks_read', 0)} tasks read, "
               f"{hl.get('label_studio/new_reviews', 0)} new reviews, {hl.get('label_studio/already_imported', 0)} "
               f"already imported, {hl.get('label_studio/rejected', 0)} rejected; "
               f"{hl.get('reviewed_images', 0)} images reviewed in all  [run {out.run_id[:8]}]")
    for r in [r for r in (hl.get("label_studio/reject_reasons") or "").splitlines() if r]:
        click.echo(f"  rejected {r}")


@click.command("serve-webhook")
@options
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8765, show_default=True, help="port to listen on (0: a free one)")
@click.option("--public-url", help="the URL Label Studio posts to (default: http://HOST:PORT/label-studio/webhook)")
@click.option("--max-pulls", type=int, default=0, help="stop after this many pulls (default 0: serve until Ctrl-C)")
@click.pass_context
def serve_webhook(ctx: click.Context, host: str, port: int, public_url: str | None, max_pulls: int) -> None:
    """Serve the Label Studio webhook endpoint: registers the project's webhook (annotation
    created / updated / deleted events, header X-Labelloop-Token = LABELLOOP_WEBHOOK_SECRET) and
    runs resolve_job (pull + resolve, as pull-review) after each event, so a reviewer's save
    arrives at once instead of at the sensor's next tick."""

    _require_server()
    secret = os.environ.get("LABELLOOP_WEBHOOK_SECRET", "")
    if len(secret) < 8:
        raise CliError("LABELLOOP_WEBHOOK_SECRET must be set (8 characters or more): Label Studio sends it with "
                       "every event and the endpoint refuses requests without it")
    ws = workspace_of(ctx)
    server = LabelStudioServer(os.environ["LABEL_STUDIO_URL"], os.environ["LABEL_STUDIO_API_KEY"])
    title = os.environ.get("LABEL_STUDIO_PROJECT_TITLE") or default_title(ws)
    try:
        project = server.find_project(title)
    except LabelStudioServerError as exc:
        raise CliError(str(exc)) from None
    if project is None:
        raise CliError(f"no Label Studio project titled {title!r} yet: run `labelloop push-review` first")
    # A background job of a script starts with SIGINT ignored, and Dagster's runs treat SIGTERM as they
    # treat SIGINT: after the first run SIGTERM would be ignored too. Both stop the server here.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    due = threading.Event()  # the endpoint's worker only flags; Dagster runs here, in the main thread
    with WebhookServer(due.set, secret, project["id"], host=host, port=port) as hook:
        url = public_url or hook.url
        try:
            wid = server.ensure_webhook(project["id"], url, secret)
        except LabelStudioServerError as exc:
            raise CliError(f"{exc} (a private address needs SSRF_PROTECTION_ENABLED=false on the server)") from None
        click.echo(f"{server.source(project['id'])}: webhook {wid} posts to {url}; serving on {hook.url}")
        instance = get_instance(ws)

        def run_once() -> str:
            out = execute(ws, "resolve_job", instance, verbose=ctx.obj["verbose"])
            hl = out.metadata.get("human_labels", {})
            return (f"run {out.run_id[:8]} {'ok' if out.success else 'failed: ' + out.reason()}; "
                    f"{hl.get('label_studio/new_reviews', 0)} new reviews, {hl.get('label_studio/rejected', 0)} rejected")

        try:
            pull_loop(due, run_once, max_pulls, click.echo)
        except KeyboardInterrupt:
            pass


def pull_loop(due, run_once, max_pulls: int, echo) -> int:
    """Run ``run_once()`` (one resolve_job, returning a one-line summary) each time the
    ``threading.Event`` ``due`` is set, one run at a time, until ``max_pulls`` runs (0: forever).
    A run that raises (e.g. labelloop.yaml broken while serving) is reported by ``echo`` and the
    loop keeps serving: the next event retries. Returns the number of runs."""
    runs = 0
    while not max_pulls or runs < max_pulls:
        if not due.wait(1.0):
            continue
        due.clear()
        try:
            line = run_once()
        except Exception as exc:  # noqa: BLE001 - the endpoint must outlive one bad run
            line = f"run failed before it started: {type(exc).__name__}: {exc}"
        runs += 1
        echo(f"event: {line}")
    return runs


@click.command("import-review")
@options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", help="tool project the work came from (default: the export's project, "
              "else the inbox subfolder, else the file stem; CVAT: cvat/task-N; COCO: coco/<stem>)")
@click.pass_context
def import_review(ctx: click.Context, file: str, source: str | None) -> None:
    """Copy a review file into the review inbox and import it: a Label Studio JSON / JSON-MIN
    export, a CVAT for images 1.1 XML (or CVAT's zip), or COCO JSON (format read from the content)."""

    ws = workspace_of(ctx)
    try:  # a file over review.max_export_mb is refused before it is copied or read
        check_size(file, int(ws.config().review.max_export_mb * 2**20))
    except ExportFormatError as exc:
        raise CliError(str(exc)) from None
    existed = {p.resolve() for p in inbox_files(ws)}
    dest = copy_to_inbox(ws, Path(file), source)
    check = import_file(ws, dest, source=source, dry_run=True)
    if check.get("error"):
        if dest.resolve() not in existed:
            dest.unlink(missing_ok=True)  # not an export: leave the inbox as it was
        raise CliError(check["error"])
    steps = run_batches(ctx, ws, None)
    hl = steps[-1]["metadata"].get("human_labels", {})
    click.echo(f"{ws.relative(dest)}: {check['reviews']} new reviews, {check['skipped']} already imported, "
               f"{check['rejects']} rejected; {hl.get('reviewed_images', 0)} images reviewed in all")
    for r in check.get("reject_reasons", []):
        click.echo(f"  rejected {r}")
    for w in check.get("warnings", []):
        click.echo(f"  warning: {w}")


@click.command("register-export")
@options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, help="name of the export (e.g. label-studio/project-1)")
@click.pass_context
def register_export(ctx: click.Context, file: str, source: str) -> None:
    """Record a Label Studio import file that another process sent, so reviews link to its predictions."""
    s = do_register_export(workspace_of(ctx), Path(file), source)
    click.echo(f"{file}: {s['predictions']} predictions registered, {len(s['rejects'])} tasks rejected")
    for r in s["rejects"]:
        click.echo(f"  rejected {r}")

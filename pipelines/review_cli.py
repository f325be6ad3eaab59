"""Live Label Studio commands of the ``labelloop`` CLI: ``push-review`` and ``pull-review``
(added to the group in :mod:`pipelines.cli`). Both run through Dagster against the workspace's
instance, with the review tool of :func:`pipelines.definitions.review_tool_resource`."""

from __future__ import annotations

import os

import click

from pipelines.cli import CliError, _ws, options


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
    from labelloop import batch as B
    from pipelines.runner import execute, get_instance

    _require_server()
    ws = _ws(ctx)
    if batch and batch not in ws.batches():
        raise CliError(f"no batch named {batch!r} (batches: {', '.join(ws.batches()) or 'none'})")
    names = [batch] if batch else [b for b in ws.batches() if B.queue_path(ws, b).is_file()]
    if not names:
        raise CliError("no batch has a review queue yet: run `labelloop run` first")
    instance = get_instance(ws)
    for b in names:
        if not B.queue_path(ws, b).is_file():
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
    from labelloop.labelstudio_sync import reset_pull_marks
    from pipelines.runner import execute, get_instance

    _require_server()
    ws = _ws(ctx)
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

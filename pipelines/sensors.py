"""Sensors: new batch folders in the inbox, new or changed review exports."""

import json

import dagster as dg

from labelloop.review.importer import pending_inbox_files
from labelloop.review.inbox import inbox_files
from labelloop.workspace.layout import BATCH_NAME
from pipelines.jobs import batch_job, resolve_job
from pipelines.partitions import BATCHES
from resources.review_tool import LabelStudioFilesResource
from resources.storage import WorkspaceResource


@dg.sensor(job=batch_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def inbox_sensor(context: dg.SensorEvaluationContext, storage: WorkspaceResource):
    """Registers a partition for each new folder under inbox/ and runs the batch job on it (an
    S3 store is watched by :func:`pipelines.s3_sensors.s3_inbox_sensor` instead)."""
    if storage.store().is_remote:
        return dg.SkipReason("the store is on S3: s3_inbox_sensor watches its inbox")
    ws = storage.at()
    if not ws.is_initialized() or not ws.inbox.is_dir():
        return dg.SkipReason(f"{ws.root} is not an initialized workspace")
    known = set(context.instance.get_dynamic_partitions(BATCHES))
    new = sorted(p.name for p in ws.inbox.iterdir() if p.is_dir() and BATCH_NAME.fullmatch(p.name) and p.name not in known)
    if not new:
        return dg.SkipReason("no new batch folder")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"batch-{b}") for b in new],
        dynamic_partitions_requests=[dg.DynamicPartitionsDefinition(name=BATCHES).build_add_request(new)],
    )


@dg.sensor(job=resolve_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def review_inbox_sensor(context: dg.SensorEvaluationContext, storage: WorkspaceResource):
    """Imports new or changed review exports (cursor: file -> (size, mtime)); a file whose bytes
    the review-inbox ledger already holds as imported starts no run
    (:func:`labelloop.review.importer.pending_inbox_files`), and the import itself is idempotent
    per annotation, so a rewritten export of the same work changes nothing."""
    ws = storage.at()
    if not ws.is_initialized():
        return dg.SkipReason(f"{ws.root} is not an initialized workspace")
    seen = json.loads(context.cursor) if context.cursor else {}
    now = {}
    for p in inbox_files(ws):
        st = p.stat()
        now[ws.relative(p)] = [st.st_size, st.st_mtime_ns]
    changed = sorted(k for k, v in now.items() if seen.get(k) != v)
    context.update_cursor(json.dumps(now, sort_keys=True))
    if not changed:
        return dg.SkipReason("no new review export")
    # files the CLI (or an earlier run) already imported, as the review-inbox ledger says, start
    # no run: a run would read nothing and mark the QA report stale for nothing
    pending = pending_inbox_files(ws, set(changed))
    if not pending:
        return dg.SkipReason(f"{len(changed)} review export(s) already imported (review-inbox ledger)")
    return dg.RunRequest(run_key=None, tags={"labelloop/files": ",".join(pending)[:200]})


@dg.sensor(job=resolve_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def label_studio_sensor(context: dg.SensorEvaluationContext, storage: WorkspaceResource,
                        review_tool: LabelStudioFilesResource):
    """Polls the live Label Studio server for new or updated annotations and runs resolve_job,
    whose human_labels pulls them (cursor: per project source, the newest task updated_at seen;
    Label Studio moves it whenever an annotation of the task is created, updated or cancelled).
    An unreachable server or a refused token fails the tick with the reason."""
    if not review_tool.is_live:
        return dg.SkipReason("the review tool is Label Studio files: set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY "
                             "to poll a live server")
    ws = storage.at()
    if not ws.is_initialized():
        return dg.SkipReason(f"{ws.root} is not an initialized workspace")
    found = review_tool.newest_update(ws)
    if found is None:
        return dg.SkipReason(f"no Label Studio project titled {review_tool.title(ws)!r} yet")
    source, newest = found
    if newest is None:
        return dg.SkipReason(f"{source} has no tasks")
    seen = json.loads(context.cursor) if context.cursor else {}
    if seen.get(source) and newest <= seen[source]:
        return dg.SkipReason(f"{source}: no task updated since {seen[source]}")
    seen[source] = newest
    context.update_cursor(json.dumps(seen, sort_keys=True))
    return dg.RunRequest(run_key=f"{source}@{newest}",
                         tags={"labelloop/label-studio": source, "labelloop/updated-at": newest})

"""Scheduled reprocessing: re-label only stale batches, never reviewed images.

``reprocess_schedule`` (every 30 minutes once turned on in the UI) asks each batch for its first
stale stage (labelloop.reprocess.stale_stage with the reviewed image ids), groups the stale batches by
labelloop.reprocess.plan_runs (the per-batch assets' backfill policy: up to MAX_BATCHES_PER_RUN
adjacent batches per run) and requests one run per group over that partition range, materializing
only the stale stage and those after it: a new routing policy re-routes without a pre-label step.
``reprocess_resolve_sensor`` then re-resolves ``labels`` (resolve_job) after each such run that
succeeded, so auto-accepted labels follow the new predictions or routes without waiting for the
next review export or release.
"""

from __future__ import annotations

import hashlib

import dagster as dg

from labelloop import reprocess as R
from labelloop.reprocess import predicts_reviewed, stale_stage
from labelloop.review.store import review_store
from pipelines.jobs import batch_job, resolve_job
from pipelines.partitions import BATCHES, MAX_BATCHES_PER_RUN
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
REPROCESS_TAG = "labelloop/reprocess"


def run_request(run: R.PlannedRun, model_id: str, policy_id: str) -> dg.RunRequest:
    """The RunRequest of one planned run: its assets, and the batch (one) or the partition range
    (several). ``run_key`` names the stage, batches, model and policy, so a tick that finds the
    same work does not launch it twice."""
    key = hashlib.sha256(f"{run.stage}\0{','.join(run.batches)}\0{model_id}\0{policy_id}".encode()).hexdigest()[:16]
    tags = {REPROCESS_TAG: run.stage, "labelloop/batches": str(len(run.batches))}
    if len(run.batches) > 1:
        tags.update({RANGE_START: run.batches[0], RANGE_END: run.batches[-1]})
    return dg.RunRequest(run_key=f"reprocess-{key}", asset_selection=[dg.AssetKey(a) for a in run.assets],
                         partition_key=run.batches[0] if len(run.batches) == 1 else None, tags=tags)


def stale_runs(ws, order: list[str], model_id: str) -> list[R.PlannedRun]:
    """The planned runs for the workspace ``ws`` (batches in ``order``) and ``model_id``."""

    reviewed = set(review_store(ws).latest_reviews())
    also_reviewed = predicts_reviewed(ws)
    stale = {}
    for b in order:
        st = stale_stage(ws, b, model_id, reviewed, also_reviewed)
        if st:
            stale[b] = st[0]
    return R.plan_runs(order, stale, MAX_BATCHES_PER_RUN)


@dg.schedule(job=batch_job, cron_schedule="*/30 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Re-run the per-batch assets of stale batches only (new model id or routing policy), "
                         f"up to {MAX_BATCHES_PER_RUN} batches per run; reviewed images are never re-labeled.")
def reprocess_schedule(context: dg.ScheduleEvaluationContext, storage: WorkspaceResource,
                       prelabeler: PreLabelerResource):
    ws = storage.workspace()
    cfg = ws.config()
    model_id = prelabeler.get(cfg).model_id
    order = [b for b in context.instance.get_dynamic_partitions(BATCHES) if b in set(ws.batches())]
    runs = stale_runs(ws, order, model_id)
    if not runs:
        return dg.SkipReason(f"no stale batch ({len(order)} batches current for {model_id})")
    return [run_request(r, model_id, cfg.policy_id()) for r in runs]


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[batch_job], request_job=resolve_job,
                      default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                      description="After a reprocess run of batch_job succeeded, re-resolve labels (resolve_job) so "
                                  "auto-accepted labels follow the new predictions or routes.")
def reprocess_resolve_sensor(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    if REPROCESS_TAG not in run.tags:
        return dg.SkipReason(f"run {run.run_id} was not a reprocess run")
    return dg.RunRequest(run_key=f"resolve-after-{run.run_id}",
                         tags={"labelloop/after-reprocess": run.run_id, REPROCESS_TAG + "-stage": run.tags[REPROCESS_TAG]})

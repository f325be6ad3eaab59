"""review_queue, review_export (per batch) and human_labels (imported reviews)."""

import dagster as dg

from labelloop.review.export import export_batch
from labelloop.review.importer import import_inbox
from labelloop.review.store import review_store
from labelloop.routing.queue import route_batch
from pipelines.partitions import backfill_policy, batches, summed
from resources.prelabeler import PreLabelerResource
from resources.review_tool import LabelStudioFilesResource, pull_metadata, push_metadata
from resources.storage import WorkspaceResource


@dg.asset(partitions_def=batches, backfill_policy=backfill_policy, deps=["prelabels"], group_name="review",
          kinds={"python", "parquet"})
def review_queue(context: dg.AssetExecutionContext, storage: WorkspaceResource,
                 prelabeler: PreLabelerResource) -> dg.MaterializeResult:
    """Routing per image by confidence (auto_accept / human_review), a seeded QA sample of the
    auto-accepted images, least-confidence priority, the routing policy id. Reviewed images keep
    the row they were reviewed under."""
    ws = storage.workspace()
    model_id = prelabeler.get(ws.config()).model_id
    reviewed = set(review_store(ws).latest_reviews())
    per = [route_batch(ws, k, model_id, reviewed) for k in context.partition_keys]
    routes: dict[str, int] = {}
    for s in per:
        for k, v in s["routes"].items():
            routes[k] = routes.get(k, 0) + v
    return dg.MaterializeResult(metadata={
        "policy_id": per[0]["policy_id"], "model_id": model_id, "dagster/row_count": sum(s["images"] for s in per),
        **{f"route/{k}": v for k, v in sorted(routes.items())},
        **({"batches": len(per)} if len(per) > 1 else {}),
    })


@dg.asset(partitions_def=batches, backfill_policy=backfill_policy, deps=["review_queue"], group_name="review",
          kinds={"python", "json"})
def review_export(context: dg.AssetExecutionContext, storage: WorkspaceResource, prelabeler: PreLabelerResource,
                  review_tool: LabelStudioFilesResource) -> dg.MaterializeResult:
    """Label Studio import file (tasks with our image_id and percent-box pre-annotations) and
    labeling config for the images routed to review that no one has reviewed yet."""
    ws = storage.workspace()
    model_id = prelabeler.get(ws.config()).model_id
    reviewed = set(review_store(ws).latest_reviews())
    keys = context.partition_keys  # one batch, or a range of batches (backfill policy)
    per, pushed = [], None
    for k in keys:
        per.append(export_batch(ws, k, model_id, reviewed))
        pushed = review_tool.push_batch(ws, k)  # live Label Studio server; None for files
    s = summed(per, ("tasks", "predictions_sent", "already_reviewed"))
    return dg.MaterializeResult(metadata={
        "tool": review_tool.tool, "tasks": s["tasks"], "predictions_sent": s["predictions_sent"],
        "already_reviewed": s["already_reviewed"], "file": dg.MetadataValue.path(str(ws.root / per[0]["file"])),
        "guidelines_sha256": per[-1]["guidelines_sha256"],  # of guidelines.md ("none" without it)
        **push_metadata(pushed),
        **({"batches": len(keys)} if len(keys) > 1 else {}),
    })


@dg.asset(deps=["review_export"], group_name="review", kinds={"python", "parquet"})
def human_labels(context: dg.AssetExecutionContext, storage: WorkspaceResource,
                 review_tool: LabelStudioFilesResource) -> dg.MaterializeResult:
    """Reviewed annotations imported from the review inbox (Label Studio JSON / JSON-MIN) and,
    with a live Label Studio server, pulled from it; idempotent per annotation identity; bad
    tasks rejected one by one with their reason."""
    ws = storage.workspace()
    pulled = review_tool.pull_reviews(ws, run_id=context.run_id)  # live Label Studio server; None for files
    s = import_inbox(ws, run_id=context.run_id)  # the run id is stored on every new review (lineage)
    for e in s["errors"]:
        context.log.error(e)
    for f in s["files"]:
        for r in f.get("reject_reasons", []):
            context.log.warning(f"{f['file']}: rejected {r}")
    store = review_store(ws)
    return dg.MaterializeResult(metadata={
        "files": len(s["files"]), "new_reviews": s["new_reviews"], "already_imported": s["skipped"],
        "rejected": s["rejects"], "file_errors": len(s["errors"]),
        "unchanged_files": len(s["unchanged"]), "refused_links": len(s["refused"]),
        "dagster/row_count": len(store.human_labels()), "reviewed_images": len(store.latest_reviews()),
        **pull_metadata(pulled, context.log),
    })

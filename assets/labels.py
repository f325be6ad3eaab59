"""labels: the resolved label set (human > auto-accepted model label) with provenance."""

import dagster as dg

from labelloop.review.resolve import resolve_workspace
from labelloop.workspace import repo
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource


@dg.asset(deps=["human_labels", "review_queue", "prelabels"], group_name="labels", kinds={"python", "parquet"})
def labels(context: dg.AssetExecutionContext, storage: WorkspaceResource,
           prelabeler: PreLabelerResource) -> dg.MaterializeResult:
    """Resolved labels: a reviewed image's human labels, else an auto-accepted image's model
    labels; stable label_id, origin, routing policy id, model or reviewer."""
    ws = storage.workspace()
    model_id = prelabeler.get(ws.config()).model_id
    s = resolve_workspace(ws, model_id)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": s["labels"], "images_resolved": s["images_resolved"],
                  "reviewed_images": s["reviewed_images"], "negatives": s["negatives"],
                  **{f"origin/{k}": v for k, v in sorted(s["by_origin"].items())},
                  "labels_sha256": repo.labels_sha256(ws)},
    )

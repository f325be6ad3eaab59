"""prelabels: the pre-labeler (detector, then segmenter for mask categories) per batch."""

import dagster as dg

from labelloop import batch as B
from pipelines.partitions import batches
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource

# Ready for dagster-k8s: the GPU request and node selector a k8s_job_executor applies per step.
K8S_GPU_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
}}


@dg.asset(partitions_def=batches, deps=["raw_images"], group_name="prelabel", kinds={"python", "parquet"},
          pool="gpu", op_tags=K8S_GPU_TAGS,
          retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL))
def prelabels(context: dg.AssetExecutionContext, storage: WorkspaceResource,
              prelabeler: PreLabelerResource) -> dg.MaterializeResult:
    """Predictions keyed by (image_id, model_id): boxes, scores, masks for mask categories;
    model id and checkpoint sha256 on every row. Resumable in chunks; a new model_id adds a
    new prediction set and never touches human labels."""
    ws = storage.workspace()
    model = prelabeler.get(ws.config())
    s = B.prelabel_batch(ws, context.partition_key, model, context.run_id)
    for f in s["failed"]:
        context.log.warning(f"not pre-labeled: {f}")
    return dg.MaterializeResult(metadata={
        "model_id": s["model_id"], "device": s["device"], "checkpoint_sha256": model.checkpoint_sha256,
        "images_predicted": s["images_predicted"], "images_cached": s["images_cached"],
        "predictions_new": s["predictions_new"], "images_per_second": s["images_per_second"] or 0.0,
        "dagster/row_count": len(B.batch_predictions(ws, context.partition_key, s["model_id"])),
    })

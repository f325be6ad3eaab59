"""prelabels: the pre-labeler (detector, then segmenter for mask categories) per batch."""

import dagster as dg

from labelloop.prelabel.stage import prelabel_batch
from labelloop.reprocess import predicts_reviewed
from labelloop.review.store import review_store
from labelloop.workspace import repo
from pipelines.partitions import backfill_policy, batches, summed
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource

# Ready for dagster-k8s: the GPU request and node selector a k8s_job_executor applies per step
# (dagster-k8s reads the "dagster-k8s/config" op tag; docs/guides/production.md, "Kubernetes").
K8S_GPU_TAGS = {"dagster-k8s/config": {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"}},
}}
# Celery executor (pipelines.environments): this step goes to the workers of the gpu queue; every
# other step to the default queue, cpu.
CELERY_GPU_TAGS = {"dagster-celery/queue": "gpu"}


@dg.asset(partitions_def=batches, backfill_policy=backfill_policy, deps=["raw_images"], group_name="prelabel",
          kinds={"python", "pytorch", "parquet"},
          pool="gpu", op_tags={**K8S_GPU_TAGS, **CELERY_GPU_TAGS},
          retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL))
def prelabels(context: dg.AssetExecutionContext, storage: WorkspaceResource,
              prelabeler: PreLabelerResource) -> dg.MaterializeResult:
    """Predictions keyed by (image_id, model_id): boxes, scores, masks for mask categories;
    model id and checkpoint sha256 on every row. Resumable in chunks; a new model_id adds a
    new prediction set and never touches human labels."""

    ws = storage.workspace()
    cfg = ws.config()
    model = prelabeler.get(cfg, root=str(ws.root))
    # reviewed images are not predicted, except by a promoted fine-tuned model: its predictions on them
    # are a prediction set of its own that QA and calibrate measure (the human labels still win)
    reviewed = set() if predicts_reviewed(ws) else set(review_store(ws).latest_reviews())
    keys = context.partition_keys  # one batch, or a range of batches (backfill policy)
    per = [prelabel_batch(ws, k, model, context.run_id, chunk_size=cfg.prelabeler.chunk_size, skip=reviewed)
           for k in keys]
    failed = [f for s in per for f in s["failed"]]
    for f in failed:
        context.log.warning(f"not pre-labeled: {f}")
    halving = getattr(model, "halving", None)
    extra = {}
    if cfg.prelabeler.backend in ("foundation", "sam3"):
        extra = {"batch_size": halving.batch_size if halving else cfg.prelabeler.batch_size,
                 "oom_halvings": len(halving.events) if halving else 0,
                 "compute_dtype": getattr(model, "compute_dtype", "float32")}
    s = summed(per, ("images_predicted", "images_cached", "images_skipped_reviewed", "predictions_new", "seconds"))
    return dg.MaterializeResult(metadata={
        "model_id": model.model_id, "device": per[0]["device"], "checkpoint_sha256": model.checkpoint_sha256,
        "images_predicted": s["images_predicted"], "images_cached": s["images_cached"],
        "images_skipped_reviewed": s["images_skipped_reviewed"], "images_failed": len(failed),
        "predictions_new": s["predictions_new"],
        "images_per_second": round(s["images_predicted"] / s["seconds"], 3) if s["seconds"] > 0 else 0.0,
        "dagster/row_count": sum(len(repo.batch_predictions(ws, k, model.model_id)) for k in keys),
        **({"batches": len(keys)} if len(keys) > 1 else {}),
        **extra,
    })

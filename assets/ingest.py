"""raw_images: decode check, EXIF, sha256 ids, perceptual hashes, duplicates, rejects."""

import dagster as dg

from labelloop import batch as B
from pipelines.partitions import batches
from resources.storage import WorkspaceResource


@dg.asset(partitions_def=batches, group_name="ingest", kinds={"python", "parquet"},
          metadata={"table": "tables/raw_images/<batch>.parquet"})
def raw_images(context: dg.AssetExecutionContext, storage: WorkspaceResource) -> dg.MaterializeResult:
    """One row per image file of the batch: image_id (sha256), EXIF-corrected size, phash,
    exact / near duplicates, and status ok or rejected with a specific reason."""
    ws = storage.workspace()
    s = B.scan_batch(ws, context.partition_key)
    for r in s["rejects"]:
        context.log.warning(f"rejected {r}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": s["images"], "ok": s["ok"], "rejected": s["rejected"],
        "duplicates": s["duplicates"], "near_duplicates": s["near_duplicates"],
        "rejects": dg.MetadataValue.md("\n".join(f"- {r}" for r in s["rejects"]) or "none"),
        "path": dg.MetadataValue.path(str(B.images_path(ws, context.partition_key))),
    })

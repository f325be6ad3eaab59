"""raw_images: decode check, EXIF, sha256 ids, perceptual hashes, duplicates, rejects."""

import dagster as dg

from labelloop.images.phash import PHASH_METHOD
from labelloop.ingest.scan import scan_batch
from labelloop.workspace import repo
from pipelines.partitions import backfill_policy, batches, summed
from resources.storage import WorkspaceResource


@dg.asset(partitions_def=batches, backfill_policy=backfill_policy, group_name="ingest",
          kinds={"python", "parquet"},
          metadata={"table": "tables/raw_images/<batch>.parquet"})
def raw_images(context: dg.AssetExecutionContext, storage: WorkspaceResource) -> dg.MaterializeResult:
    """One row per image file of the batch: image_id (sha256), EXIF-corrected size, phash,
    exact / near duplicates, and status ok or rejected with a specific reason."""
    ws = storage.workspace()
    keys = context.partition_keys  # one batch, or a range of batches (backfill policy)
    per = [scan_batch(ws, k) for k in keys]
    rejects = [r for s in per for r in s["rejects"]]
    for r in rejects:
        context.log.warning(f"rejected {r}")
    rehashed = sum(x.get("rehashed_images", 0) for x in per)
    if rehashed:  # once per workspace made before labelloop.images.phash's current method
        context.log.info(f"re-hashed {rehashed} images of earlier batches to {PHASH_METHOD}")
    for p in {p for x in per for p in x.get("rehash_problems", [])}:
        context.log.warning(f"kept the older perceptual hash of {p}")
    s = summed(per, ("images", "ok", "rejected", "duplicates", "near_duplicates"))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": s["images"], "ok": s["ok"], "rejected": s["rejected"],
        "duplicates": s["duplicates"], "near_duplicates": s["near_duplicates"],
        "rejects": dg.MetadataValue.md("\n".join(f"- {r}" for r in rejects) or "none"),
        "path": dg.MetadataValue.path(str(repo.images_path(ws, keys[0]))),
        **({"batches": len(keys)} if len(keys) > 1 else {}),
        **({"rehashed_images": rehashed} if rehashed else {}),
    })

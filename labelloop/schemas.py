"""Arrow schemas of every labelloop table, declared once.

Tables are Parquet files per asset and partition (see :mod:`labelloop.tables`). Boxes are
``bbox: list<float64>[4]`` in pixels of the EXIF-corrected image, ``x0, y0, x1, y1`` (xyxy).
Masks are COCO RLE serialized as JSON (``{"size": [h, w], "counts": "..."}``), never dense
arrays. Timestamps are ISO 8601 strings in UTC, as review tools write them.
"""

from __future__ import annotations

import pyarrow as pa

BBOX = pa.list_(pa.float64(), 4)

IMAGES = pa.schema(
    [
        ("image_id", pa.string()),  # sha256 of the file bytes, hex
        ("uri", pa.string()),  # workspace-relative path (local store) or s3:// URI
        ("batch", pa.string()),
        ("source_path", pa.string()),  # path relative to the ingested folder, POSIX
        ("origin_path", pa.string()),  # absolute path the file was ingested from
        ("ingest_seq", pa.int64()),  # workspace-wide ingest order
        ("width", pa.int32()),  # after EXIF transpose
        ("height", pa.int32()),
        ("format", pa.string()),
        ("mode", pa.string()),  # colour mode of the file as decoded (before RGB conversion)
        ("bytes", pa.int64()),
        ("exif_orientation", pa.int32()),
        ("phash", pa.string()),  # imagehash.phash, 64-bit, hex
        ("duplicate_of", pa.string()),  # source_path of the first file with the same bytes
        ("near_duplicate_of", pa.string()),  # image_id of the near-duplicate group representative
        ("status", pa.string()),  # ok | rejected
        ("reject_reason", pa.string()),
    ]
)

PREDICTIONS = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("bbox", BBOX),
        ("score", pa.float64()),  # in [0, 1]
        ("mask", pa.string()),  # COCO RLE JSON or null
        ("model_id", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("prompt", pa.string()),
        ("run_id", pa.string()),
    ]
)

REVIEW_QUEUE = pa.schema(
    [
        ("image_id", pa.string()),
        ("source_path", pa.string()),
        ("route", pa.string()),  # auto_accept | qa_sample | human_review
        ("priority", pa.float64()),  # higher = review first (least confidence)
        ("reason", pa.string()),
        ("policy_id", pa.string()),  # hash of the thresholds that routed it
        ("n_predictions", pa.int32()),  # predictions kept (>= low threshold)
        ("min_score", pa.float64()),
        ("exported_to", pa.string()),
        ("exported_at", pa.string()),
    ]
)

EXPORTED_PREDICTIONS = pa.schema(
    [
        ("source", pa.string()),  # the export it was sent in, e.g. "labelloop/<batch>"
        ("image_id", pa.string()),
        ("region_id", pa.string()),  # id of the region in the review tool's result
        ("prediction_id", pa.string()),
        ("category", pa.string()),
        ("bbox", BBOX),
        ("score", pa.float64()),
        ("model_version", pa.string()),
    ]
)

REVIEWS = pa.schema(
    [
        ("review_id", pa.string()),  # hash of (source, task_id, tool_annotation_id, updated_at)
        ("source", pa.string()),  # tool and project, e.g. "label-studio/project-1"
        ("tool", pa.string()),
        ("task_id", pa.string()),
        ("tool_annotation_id", pa.string()),
        ("updated_at", pa.string()),
        ("image_id", pa.string()),
        ("annotator", pa.string()),  # pseudonymous id
        ("was_cancelled", pa.bool_()),
        ("n_regions", pa.int32()),
        ("import_sha256", pa.string()),  # sha256 of the export file it arrived in
        ("file", pa.string()),
    ]
)

HUMAN_LABELS = pa.schema(
    [
        ("annotation_id", pa.string()),  # stable per (source, task, tool annotation, region)
        ("review_id", pa.string()),
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("bbox", BBOX),
        ("mask", pa.string()),
        ("keypoints", pa.list_(pa.float64())),  # x, y, visibility triples (COCO)
        ("occluded", pa.bool_()),
        ("truncated", pa.bool_()),
        ("annotator", pa.string()),
        ("tool", pa.string()),
        ("source", pa.string()),
        ("region_id", pa.string()),
        ("source_prediction_id", pa.string()),
        ("action", pa.string()),  # accepted | corrected | added | deleted
        ("reviewed_at", pa.string()),
        ("import_sha256", pa.string()),
    ]
)

LABELS = pa.schema(
    [
        ("label_id", pa.string()),
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("bbox", BBOX),
        ("mask", pa.string()),
        ("score", pa.float64()),  # model score, null for human labels
        ("origin", pa.string()),  # model | human
        ("model_id", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("prediction_id", pa.string()),
        ("annotation_id", pa.string()),
        ("annotator", pa.string()),
        ("action", pa.string()),  # auto_accepted | accepted | corrected | added
        ("review_id", pa.string()),
        ("reviewed_at", pa.string()),
        ("route", pa.string()),
        ("route_reason", pa.string()),
        ("policy_id", pa.string()),
    ]
)

# Images whose label set is resolved (auto-accepted or reviewed, negatives included).
RESOLVED_IMAGES = pa.schema(
    [
        ("image_id", pa.string()),
        ("resolution", pa.string()),  # auto_accepted | reviewed
        ("n_labels", pa.int32()),
        ("review_id", pa.string()),
        ("route", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        ("file", pa.string()),
        ("item", pa.string()),  # task / annotation / region the row is about
        ("reason", pa.string()),
    ]
)

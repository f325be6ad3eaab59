"""Arrow schemas of every labelloop table, declared once.

Tables are Parquet files per asset and partition (see :mod:`labelloop.tables.parquet`). Boxes are
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
        ("phash", pa.string()),  # 64-bit perceptual hash, 16 hex digits (labelloop.images.phash)
        ("phash_method", pa.string()),  # labelloop.images.phash.PHASH_METHOD; None = legacy full-resolution
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
        # active learning (labelloop.routing.active_learning, issue 4): the decision and its figures
        ("al_strategy", pa.string()),  # least_confidence | margin | entropy | disagreement | combined
        ("al_uncertainty", pa.float64()),  # in [0, 1], the strategy's image-level uncertainty
        ("least_confidence", pa.float64()),
        ("margin", pa.float64()),
        ("entropy", pa.float64()),
        ("disagreement", pa.float64()),  # 1 - IoU(detector box, box of the segmenter's mask), worst
        ("diversity", pa.float64()),  # min phash Hamming distance to already selected images / 64
        ("al_score", pa.float64()),  # (1 - w) * uncertainty + w * diversity when selected
        ("al_rank", pa.int32()),  # 1 = reviewed first; null when not selected
        ("al_decision", pa.string()),  # selected | over_budget | near_duplicate | qa_sample | not_needed
        ("al_reason", pa.string()),
        ("reviewers_required", pa.int32()),  # 2 = double review (both annotations kept)
        ("al_policy_id", pa.string()),  # hash of the active-learning settings that decided
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
        ("mask", pa.string()),  # COCO RLE JSON when the mask itself was sent for review (brush region)
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
        ("import_run_id", pa.string()),  # Dagster run of the import that stored it (null: outside a run / older)
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
        ("attributes", pa.string()),  # JSON object, e.g. {"rotation": 30.0, ...} (issue 4) or null
        ("iscrowd", pa.bool_()),  # a crowd region (COCO iscrowd 1, CVAT is_crowd); null/false = one object
        ("import_run_id", pa.string()),  # Dagster run of the import that stored it (null: outside a run / older)
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
        ("keypoints", pa.list_(pa.float64())),  # x, y, visibility triples (COCO), pixels; null = none
        ("iscrowd", pa.bool_()),  # a crowd region (COCO iscrowd 1); null/false = one object
        ("attributes", pa.string()),  # JSON object of a human label's tool attributes (issue 4), e.g. rotation
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

# ---- QA (issue 5): gold sets, label-error suspects, calibration outcomes -----------------------
# Trusted reference labels of a gold set (honeypots), registered from a COCO or Label Studio file.
GOLD_LABELS = pa.schema(
    [
        ("gold_set", pa.string()),  # name given at registration
        ("gold_label_id", pa.string()),  # "gd-" + 16 hex, stable per (set, image, file item)
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("bbox", BBOX),
        ("mask", pa.string()),  # COCO RLE JSON or null
        ("source_file", pa.string()),
        ("source_sha256", pa.string()),
        ("registered_at", pa.string()),
    ]
)

# Images of a gold set (a gold image with no row in GOLD_LABELS is a trusted negative).
GOLD_IMAGES = pa.schema(
    [
        ("gold_set", pa.string()),
        ("image_id", pa.string()),
        ("n_labels", pa.int32()),
    ]
)

# Possible label errors found by cleanlab's object-detection scores.
LABEL_SUSPECTS = pa.schema(
    [
        ("suspect_id", pa.string()),  # "ls-" + 16 hex of (image, issue, category, rounded bbox)
        ("image_id", pa.string()),
        ("label_id", pa.string()),  # the suspected label (null for a possibly missing box)
        ("issue", pa.string()),  # missing | swapped | badly_located
        ("category", pa.string()),  # the label's class (for missing: the model's class)
        ("bbox", BBOX),
        ("score", pa.float64()),  # cleanlab quality score in [0, 1]; lower = more suspect
        ("image_score", pa.float64()),  # cleanlab label quality score of the whole image
        ("status", pa.string()),  # open | dismissed
        ("found_at", pa.string()),
    ]
)

# One reviewed prediction per row: the data a calibrated routing policy was fitted on.
CALIBRATION_OUTCOMES = pa.schema(
    [
        ("image_id", pa.string()),
        ("prediction_id", pa.string()),
        ("category", pa.string()),
        ("score", pa.float64()),
        ("correct", pa.bool_()),  # kept by the reviewer: same class, IoU >= the audit move IoU
        ("review_id", pa.string()),
    ]
)

# ---- releases and lineage (issue 6) --------------------------------------------------------------
# release/images.parquet: every image of a release, with its split and how it was resolved.
RELEASE_IMAGES = pa.schema(
    [
        ("image_id", pa.string()),  # sha256 of the ingested file bytes
        ("coco_image_id", pa.int64()),  # stable across releases (labelloop.release.ids)
        ("file_name", pa.string()),  # path relative to release/, e.g. images/train/<id16>.jpg
        ("split", pa.string()),  # train | val | test
        ("group_id", pa.string()),  # near-duplicate group (its representative's image_id)
        ("width", pa.int32()),  # after EXIF transpose
        ("height", pa.int32()),
        ("uri", pa.string()),  # where the source bytes are stored (workspace-relative or s3://)
        ("source_path", pa.string()),
        ("origin_path", pa.string()),
        ("batch", pa.string()),
        ("exif_orientation", pa.int32()),
        ("resolution", pa.string()),  # auto_accepted | reviewed
        ("n_labels", pa.int32()),
        ("model_id", pa.string()),  # model whose predictions were auto-accepted (auto_accepted only)
        ("review_id", pa.string()),
        ("review_source", pa.string()),
        ("review_task_id", pa.string()),
        ("annotator", pa.string()),
        ("reviewed_at", pa.string()),
        ("route", pa.string()),
        ("route_reason", pa.string()),
        ("qa_sample", pa.bool_()),
        ("policy_id", pa.string()),
    ]
)

# release/lineage.parquet: one row per label of a release (labelloop.release.lineage). Deterministic: the
# release tag, git sha and the release's Dagster run are added by the lineage asset (LINEAGE).
RELEASE_LINEAGE = pa.schema(
    [
        ("label_id", pa.string()),
        ("coco_annotation_id", pa.int64()),
        ("image_id", pa.string()),
        ("coco_image_id", pa.int64()),
        ("file_name", pa.string()),
        ("split", pa.string()),
        ("category", pa.string()),
        ("origin", pa.string()),  # model | human
        ("action", pa.string()),  # auto_accepted | accepted | corrected | added
        ("source_uri", pa.string()),
        ("source_path", pa.string()),
        ("origin_path", pa.string()),
        ("batch", pa.string()),
        ("exif_orientation", pa.int32()),
        ("exif_transposed", pa.bool_()),  # the release copy had the EXIF orientation applied
        ("model_id", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("prediction_id", pa.string()),  # the model prediction (human labels: the one reviewed)
        ("prompt", pa.string()),
        ("score", pa.float64()),
        ("label_run_id", pa.string()),  # Dagster run of the prelabels step that predicted it
        ("threshold_low", pa.float64()),
        ("threshold_high", pa.float64()),
        ("policy_id", pa.string()),
        ("review_id", pa.string()),
        ("review_source", pa.string()),
        ("review_task_id", pa.string()),
        ("tool_annotation_id", pa.string()),
        ("annotator", pa.string()),
        ("reviewed_at", pa.string()),
        ("import_sha256", pa.string()),
        ("import_run_id", pa.string()),  # Dagster run of the review import that stored it (human labels)
        ("route", pa.string()),
        ("route_reason", pa.string()),
        ("qa_sample", pa.bool_()),
        ("iscrowd", pa.bool_()),  # a crowd region (COCO iscrowd 1)
    ]
)

# tables/lineage/<tag>/lineage.parquet: the lineage asset, RELEASE_LINEAGE plus the release.
LINEAGE = pa.schema(
    list(RELEASE_LINEAGE)
    + [
        pa.field("release_tag", pa.string()),
        pa.field("git_sha", pa.string()),
        pa.field("release_run_id", pa.string()),  # Dagster run that cut the release
        pa.field("content_sha256", pa.string()),
    ]
)

# tables/release/splits.parquet: the split of every near-duplicate group, assigned once.
SPLIT_ASSIGNMENTS = pa.schema(
    [
        ("group_id", pa.string()),
        ("split", pa.string()),
        ("seq", pa.int64()),  # assignment order (workspace-wide)
        ("reason", pa.string()),  # balanced | resplit | seeded from release
    ]
)

# tables/release/coco_ids.parquet: stable integer ids of COCO images and annotations.
COCO_IDS = pa.schema(
    [
        ("kind", pa.string()),  # image | annotation
        ("key", pa.string()),  # image_id, or the label's identity key (labelloop.release.ids)
        ("coco_id", pa.int64()),
    ]
)

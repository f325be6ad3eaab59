"""Arrow schemas of every labelloop table, declared once, each with the typed row (a
:class:`~typing.TypedDict`) that code passes around: a schema ``X`` and its row ``XRow`` list the
same columns in the same order (``tests/unit/tables/test_rows.py`` checks names and types).
Every column is nullable in Parquet; a row type says ``| None`` where a value may be missing.

Tables are Parquet files per asset and partition (see :mod:`labelloop.tables.parquet`). Boxes are
``bbox: list<float64>[4]`` in pixels of the EXIF-corrected image, ``x0, y0, x1, y1`` (xyxy).
Masks are COCO RLE serialized as JSON (``{"size": [h, w], "counts": "..."}``), never dense
arrays. Timestamps are ISO 8601 strings in UTC, as review tools write them.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

import pyarrow as pa

#: The type of a box column, four float64 ``x0, y0, x1, y1`` in pixels.
BBOX = pa.list_(pa.float64(), 4)

#: ``tables/raw_images/<batch>.parquet``: one row per file of a batch (:class:`ImageRow`).
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


class ImageRow(TypedDict):
    """One IMAGES row: an ingested file of a batch (``tables/raw_images/<batch>.parquet``)."""

    image_id: str | None  # None for a file that could not be read (rejected)
    uri: str
    batch: str
    source_path: str
    origin_path: str
    ingest_seq: int
    width: int | None
    height: int | None
    format: str | None
    mode: str | None
    bytes: int | None
    exif_orientation: int | None
    phash: str | None
    phash_method: str | None
    duplicate_of: str | None
    near_duplicate_of: str | None
    status: str
    reject_reason: str | None

#: ``tables/prelabels/<batch>/<model>/part-*.parquet``: predictions (:class:`PredictionRow`).
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


class PredictionRow(TypedDict):
    """One PREDICTIONS row: a box (xyxy pixels) with score and optional mask from one model."""

    prediction_id: str
    image_id: str
    category: str
    bbox: list[float]
    score: float
    mask: str | None
    model_id: str
    checkpoint_sha256: str
    prompt: str | None
    run_id: str | None

#: ``tables/review_queue/<batch>.parquet``: routing and active learning (:class:`ReviewQueueRow`).
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
        # active learning (labelloop.routing.active_learning): the decision and its figures
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
        # sha256 of guidelines.md when the image was exported ("none": no file; null: not exported / older)
        ("guidelines_sha256", pa.string()),
    ]
)


class ReviewQueueRow(TypedDict):
    """One REVIEW_QUEUE row: how an image was routed, and active learning's decision."""

    image_id: str
    source_path: str
    route: str
    priority: float
    reason: str
    policy_id: str
    n_predictions: int
    min_score: float | None
    exported_to: str | None
    exported_at: str | None
    al_strategy: str | None
    al_uncertainty: float | None
    least_confidence: float | None
    margin: float | None
    entropy: float | None
    disagreement: float | None
    diversity: float | None
    al_score: float | None
    al_rank: int | None
    al_decision: str | None
    al_reason: str | None
    reviewers_required: int | None
    al_policy_id: str | None
    guidelines_sha256: NotRequired[str | None]  # set by review_export (labelloop.workspace.guidelines)

#: ``tables/review_export/...``: predictions as sent to review (:class:`ExportedPredictionRow`).
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


class ExportedPredictionRow(TypedDict):
    """One EXPORTED_PREDICTIONS row: a prediction as it was sent to a review tool."""

    source: str
    image_id: str
    region_id: str | None
    prediction_id: str | None
    category: str
    bbox: list[float]
    score: float | None
    model_version: str | None
    mask: str | None

#: The review store's reviews (:class:`ReviewRow`).
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


class ReviewRow(TypedDict):
    """One REVIEWS row: one version of one annotation of one image in a review tool."""

    review_id: str
    source: str
    tool: str
    task_id: str
    tool_annotation_id: str
    updated_at: str
    image_id: str
    annotator: str
    was_cancelled: bool
    n_regions: int
    import_sha256: str
    file: str
    import_run_id: str | None

#: The review store's reviewed objects and deletion markers (:class:`HumanLabelRow`).
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
        ("attributes", pa.string()),  # JSON object, e.g. {"rotation": 30.0, ...}, or null
        ("iscrowd", pa.bool_()),  # a crowd region (COCO iscrowd 1, CVAT is_crowd); null/false = one object
        ("import_run_id", pa.string()),  # Dagster run of the import that stored it (null: outside a run / older)
        # sha256 of the guidelines.md the reviewer worked under (that of the export the review answers);
        # "none": exported from a workspace without the file; null: no export of the image known / older
        ("guidelines_sha256", pa.string()),
    ]
)


class HumanLabelRow(TypedDict):
    """One HUMAN_LABELS row: one reviewed object (or a deletion marker) of a review."""

    annotation_id: str
    review_id: str
    image_id: str
    category: str
    bbox: list[float]
    mask: str | None
    keypoints: list[float] | None
    occluded: bool | None
    truncated: bool | None
    annotator: str
    tool: str
    source: str
    region_id: str | None
    source_prediction_id: str | None
    action: str
    reviewed_at: str
    import_sha256: str
    attributes: str | None
    iscrowd: bool | None
    import_run_id: str | None
    guidelines_sha256: NotRequired[str | None]

#: ``tables/labels/labels.parquet``: the resolved labels (:class:`LabelRow`).
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
        ("attributes", pa.string()),  # JSON object of a human label's tool attributes, e.g. rotation
    ]
)


class LabelRow(TypedDict):
    """One LABELS row: a resolved label (human, or an auto-accepted prediction) with provenance."""

    label_id: str
    image_id: str
    category: str
    bbox: list[float]
    mask: str | None
    score: float | None
    origin: str
    model_id: str | None
    checkpoint_sha256: str | None
    prediction_id: str | None
    annotation_id: str | None
    annotator: str | None
    action: str
    review_id: str | None
    reviewed_at: str | None
    route: str | None
    route_reason: str | None
    policy_id: str | None
    keypoints: list[float] | None
    iscrowd: bool | None
    attributes: str | None

#: ``tables/labels/resolved_images.parquet``: images whose label set is resolved (auto-accepted or
#: reviewed, negatives included) (:class:`ResolvedImageRow`).
RESOLVED_IMAGES = pa.schema(
    [
        ("image_id", pa.string()),
        ("resolution", pa.string()),  # auto_accepted | reviewed
        ("n_labels", pa.int32()),
        ("review_id", pa.string()),
        ("route", pa.string()),
    ]
)


class ResolvedImageRow(TypedDict):
    """One RESOLVED_IMAGES row: an image whose label set is resolved (negatives included)."""

    image_id: str
    resolution: str
    n_labels: int
    review_id: str | None
    route: str | None

#: The review store's rejected items (:class:`RejectRow`).
REJECTS = pa.schema(
    [
        ("file", pa.string()),
        ("item", pa.string()),  # task / annotation / region the row is about
        ("reason", pa.string()),
    ]
)


class RejectRow(TypedDict):
    """One REJECTS row: an item of a review file that was not imported, and why."""

    file: str
    item: str
    reason: str

# ---- QA: gold sets, label-error suspects, calibration outcomes ----------------------------------
#: ``tables/gold/<set>/labels.parquet``: trusted reference labels of a gold set (honeypots) (:class:`GoldLabelRow`).
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


class GoldLabelRow(TypedDict):
    """One GOLD_LABELS row: a trusted reference object of a gold set."""

    gold_set: str
    gold_label_id: str
    image_id: str
    category: str
    bbox: list[float]
    mask: str | None
    source_file: str
    source_sha256: str
    registered_at: str

#: ``tables/gold/<set>/images.parquet``: images of a gold set; one with no row in GOLD_LABELS is a
#: trusted negative (:class:`GoldImageRow`).
GOLD_IMAGES = pa.schema(
    [
        ("gold_set", pa.string()),
        ("image_id", pa.string()),
        ("n_labels", pa.int32()),
    ]
)


class GoldImageRow(TypedDict):
    """One GOLD_IMAGES row: an image of a gold set (no labels: a trusted negative)."""

    gold_set: str
    image_id: str
    n_labels: int

#: ``tables/qa/label_suspects.parquet``: possible label errors found by cleanlab's object-detection
#: scores (:class:`LabelSuspectRow`).
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


class LabelSuspectRow(TypedDict):
    """One LABEL_SUSPECTS row: a possible label error found by cleanlab."""

    suspect_id: str
    image_id: str
    label_id: str | None
    issue: str
    category: str
    bbox: list[float]
    score: float
    image_score: float | None
    status: str
    found_at: str

#: ``calibration/<policy>.outcomes.parquet``: one reviewed prediction per row, the data a calibrated
#: routing policy was fitted on (:class:`CalibrationOutcomeRow`).
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


class CalibrationOutcomeRow(TypedDict):
    """One CALIBRATION_OUTCOMES row: a reviewed prediction and whether the reviewer kept it."""

    image_id: str
    prediction_id: str
    category: str
    score: float
    correct: bool
    review_id: str

# ---- releases and lineage -----------------------------------------------------------------------
#: ``release/images.parquet``: every image of a release, with its split and how it was resolved
#: (:class:`ReleaseImageRow`).
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
        ("image_labels", pa.string()),  # the image's tags, ";"-joined, sorted; null: no tag answer
    ]
)


class ReleaseImageRow(TypedDict):
    """One RELEASE_IMAGES row (``release/images.parquet``): an image of a release."""

    image_id: str
    coco_image_id: int
    file_name: str
    split: str
    group_id: str | None
    width: int
    height: int
    uri: str
    source_path: str
    origin_path: str | None
    batch: str
    exif_orientation: int | None
    resolution: str
    n_labels: int
    model_id: str | None
    review_id: str | None
    review_source: str | None
    review_task_id: str | None
    annotator: str | None
    reviewed_at: str | None
    route: str | None
    route_reason: str | None
    qa_sample: bool | None
    policy_id: str | None
    image_labels: str | None

#: ``release/lineage.parquet``: one row per label of a release (:mod:`labelloop.release.lineage`).
#: Deterministic: the release tag, git sha and the release's Dagster run are added by the lineage
#: asset (LINEAGE) (:class:`ReleaseLineageRow`).
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
        ("guidelines_sha256", pa.string()),  # human labels: the guidelines the reviewer worked under
    ]
)


class ReleaseLineageRow(TypedDict):
    """One RELEASE_LINEAGE row (``release/lineage.parquet``): the provenance of a released label."""

    label_id: str
    coco_annotation_id: int | None
    image_id: str
    coco_image_id: int | None
    file_name: str | None
    split: str | None
    category: str
    origin: str
    action: str
    source_uri: str | None
    source_path: str | None
    origin_path: str | None
    batch: str | None
    exif_orientation: int | None
    exif_transposed: bool | None
    model_id: str | None
    checkpoint_sha256: str | None
    prediction_id: str | None
    prompt: str | None
    score: float | None
    label_run_id: str | None
    threshold_low: float | None
    threshold_high: float | None
    policy_id: str | None
    review_id: str | None
    review_source: str | None
    review_task_id: str | None
    tool_annotation_id: str | None
    annotator: str | None
    reviewed_at: str | None
    import_sha256: str | None
    import_run_id: str | None
    route: str | None
    route_reason: str | None
    qa_sample: bool | None
    iscrowd: bool | None
    guidelines_sha256: NotRequired[str | None]

#: ``tables/lineage/<tag>/lineage.parquet``: the lineage asset, RELEASE_LINEAGE plus the release
#: (:class:`LineageRow`).
LINEAGE = pa.schema(
    list(RELEASE_LINEAGE)
    + [
        pa.field("release_tag", pa.string()),
        pa.field("git_sha", pa.string()),
        pa.field("release_run_id", pa.string()),  # Dagster run that cut the release
        pa.field("content_sha256", pa.string()),
    ]
)


class LineageRow(ReleaseLineageRow):
    """One LINEAGE row (``tables/lineage/<tag>/lineage.parquet``): RELEASE_LINEAGE plus the release."""

    release_tag: str
    git_sha: str | None
    release_run_id: str | None
    content_sha256: str | None

#: ``tables/release/splits.parquet``: the split of every near-duplicate group, assigned once
#: (:class:`SplitAssignmentRow`).
SPLIT_ASSIGNMENTS = pa.schema(
    [
        ("group_id", pa.string()),
        ("split", pa.string()),
        ("seq", pa.int64()),  # assignment order (workspace-wide)
        ("reason", pa.string()),  # balanced | resplit | seeded from release
    ]
)


class SplitAssignmentRow(TypedDict):
    """One SPLIT_ASSIGNMENTS row: the split of a near-duplicate group, assigned once."""

    group_id: str
    split: str
    seq: int
    reason: str

#: ``tables/release/coco_ids.parquet``: stable integer ids of COCO images and annotations (:class:`CocoIdRow`).
COCO_IDS = pa.schema(
    [
        ("kind", pa.string()),  # image | annotation
        ("key", pa.string()),  # image_id, or the label's identity key (labelloop.release.ids)
        ("coco_id", pa.int64()),
    ]
)


class CocoIdRow(TypedDict):
    """One COCO_IDS row: the stable integer id of a COCO image or annotation."""

    kind: str
    key: str
    coco_id: int

# ---- models -------------------------------------------------------------------------------------
#: ``tables/models/models.parquet``: every model checkpoint the workspace knows, pulled or trained,
#: one row per model name (:class:`ModelRow`; read and written by :mod:`labelloop.models.registry`).
MODELS = pa.schema(
    [
        ("name", pa.string()),  # unique: the catalog name (grounding-dino-tiny) or a candidate's name
        ("family", pa.string()),  # grounding-dino | owlv2 | florence-2 | sam | sam-hq | sam2 | sam3 | ...
        ("role", pa.string()),  # the labelloop.yaml slot it fills: detector | segmenter | sam3
        ("kind", pa.string()),  # pretrained | candidate
        ("path", pa.string()),  # checkpoint file or save_pretrained directory (absolute, or workspace-relative)
        ("sha256", pa.string()),  # labelloop.models.hashing.sha256_path of path: what labelloop.yaml names
        ("source", pa.string()),  # hub repo id (facebook/sam3), a URL, or the run that trained it
        ("revision", pa.string()),  # hub commit the files came from; null for a plain URL or a local model
        ("licence", pa.string()),
        ("size_bytes", pa.int64()),
        ("upstream_sha256_json", pa.string()),  # {file: sha256 the source declared (hub LFS) or pinned}
        ("added_at", pa.string()),  # ISO 8601 UTC
        ("status", pa.string()),  # available | current | candidate | retired
        # fine-tuned candidates (labelloop.training); null for pretrained models
        ("trained_on_release", pa.string()),  # dataset-vN tag
        ("labels_sha256", pa.string()),  # labelloop.workspace.repo.labels_sha256 of the training labels
        ("metrics_json", pa.string()),
        ("card_path", pa.string()),
        ("promoted_by", pa.string()),
        ("promoted_reason", pa.string()),
        ("promoted_at", pa.string()),
    ]
)


class ModelRow(TypedDict):
    """One MODELS row: a checkpoint the workspace knows (``tables/models/models.parquet``)."""

    name: str
    family: str
    role: str
    kind: str
    path: str
    sha256: str
    source: str | None
    revision: str | None
    licence: str | None
    size_bytes: int | None
    upstream_sha256_json: str | None
    added_at: str
    status: str
    trained_on_release: str | None
    labels_sha256: str | None
    metrics_json: str | None
    card_path: str | None
    promoted_by: str | None
    promoted_reason: str | None
    promoted_at: str | None

#: The review store's image-level tags (``imports/<id>/human_tags.parquet``, :class:`HumanTagRow`):
#: one row per tag (a ``level: tag`` category) a reviewer gave an image in one review.
HUMAN_TAGS = pa.schema(
    [
        ("tag_id", pa.string()),  # "tg-" + 16 hex of sha256 over (review_id, category)
        ("review_id", pa.string()),
        ("image_id", pa.string()),
        ("category", pa.string()),
        ("annotator", pa.string()),
        ("tool", pa.string()),
        ("source", pa.string()),
        ("reviewed_at", pa.string()),
        ("import_sha256", pa.string()),
        ("import_run_id", pa.string()),
    ]
)


class HumanTagRow(TypedDict):
    """One HUMAN_TAGS row: an image-level label (tag category) of one review of one image."""

    tag_id: str
    review_id: str
    image_id: str
    category: str
    annotator: str
    tool: str
    source: str
    reviewed_at: str
    import_sha256: str
    import_run_id: str | None

"""Project settings: ``labelloop.yaml`` at the workspace root.

The file is validated with pydantic; a bad file raises :class:`ConfigError` naming the file and
the offending key. Routing thresholds form a *policy* whose id (:meth:`ProjectConfig.policy_id`)
is a hash of the values, stored on every routed row, so a label can be traced to the
thresholds that routed it. Changing them re-routes without re-running the models.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from labelloop.workspace.model_specs import DetectorSpec, ModelSpec, SegmenterSpec

CONFIG_FILE = "labelloop.yaml"


class ConfigError(ValueError):
    """``labelloop.yaml`` is missing, not YAML, or has an invalid value (message names both)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Strict):
    """Score thresholds in [0, 1]: below ``low`` a prediction is dropped; an image whose kept
    predictions are all >= ``high`` is auto-accepted, otherwise it goes to human review."""

    low: float = Field(0.3, ge=0.0, le=1.0)
    high: float = Field(0.8, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


# The annotation levels of progressive labeling, cheapest first: tag (an image-level label, no
# geometry), box (one box per object), mask (a box and an instance mask per object).
LEVELS = ("tag", "box", "mask")


#: The reserved answer of Label Studio's ``tags`` Choices control
#: (labelloop.formats.labelstudio.tasks.NO_OBJECTS_CHOICE), which no category name may contain.
RESERVED_TAG_ANSWER = "no objects"
#: What joins an image's tags in a release's image_labels.csv and images.parquet.
TAG_SEPARATOR = ";"


class Category(_Strict):
    """One class of the ontology: its detector, text prompt and annotation level.

    ``level`` (progressive labeling): ``tag`` = an image-level label (the image shows the class;
    no box; needs no detector), ``box`` = boxes, ``mask`` = boxes and instance masks. ``masks:
    true`` is the older spelling of ``level: mask`` and keeps working; after validation ``masks``
    is True exactly when the level (:attr:`annotation_level`) is ``mask``. Unknown levels, ``masks: true`` with another level,
    a box or mask category without a detector and a tag category with keypoints are errors naming
    the category.
    """

    name: str = Field(min_length=1)
    detector: str | None = Field(None, description="detector key of the pre-labeler backend, e.g. opencv-hog-person "
                                 "(required for box and mask categories)")
    prompt: str | None = Field(None, description="text prompt for open-vocabulary detectors")
    level: Literal["tag", "box", "mask"] | None = Field(
        None, description="tag | box | mask (default: mask when masks is true, else box)")
    masks: bool = False
    thresholds: Thresholds | None = None
    # pose categories (COCO keypoints): point names in order and the skeleton's 1-based index pairs
    keypoints: list[str] | None = Field(None, description="keypoint names, e.g. COCO person's 17")
    skeleton: list[list[int]] | None = Field(None, description="pairs of 1-based keypoint indices (COCO)")

    @model_validator(mode="before")
    @classmethod
    def _known_level(cls, data):
        if isinstance(data, dict) and data.get("level") is not None and data.get("level") not in LEVELS:
            raise ValueError(f"category {data.get('name')!r}: level {data.get('level')!r} is unknown "
                             f"(one of {' | '.join(LEVELS)})")
        return data

    @model_validator(mode="after")
    def _level(self):
        if self.masks and self.level not in (None, "mask"):
            raise ValueError(f"category {self.name!r}: masks: true contradicts level {self.level!r} "
                             "(masks: true means level: mask)")
        self.masks = self.annotation_level == "mask"
        if self.annotation_level != "tag" and not self.detector:
            raise ValueError(f"category {self.name!r}: level {self.annotation_level!r} needs a detector")
        if self.annotation_level == "tag" and (self.keypoints or self.skeleton):
            raise ValueError(f"category {self.name!r}: level 'tag' is an image-level label, it cannot have keypoints")
        return self

    @property
    def annotation_level(self) -> str:
        """``tag`` | ``box`` | ``mask``: ``level`` when given, else ``mask`` for ``masks: true``, else ``box``."""
        return self.level or ("mask" if self.masks else "box")

    @model_validator(mode="after")
    def _keypoints(self):
        kp = self.keypoints or []
        if len(set(kp)) != len(kp) or any(not k for k in kp):
            raise ValueError(f"keypoint names must be unique and non-empty: {kp}")
        for pair in self.skeleton or []:
            if len(pair) != 2 or not all(1 <= i <= len(kp) for i in pair):
                raise ValueError(f"skeleton pair {pair} must be two keypoint indices in 1..{len(kp)}")
        return self


class Routing(_Strict):
    defaults: Thresholds = Thresholds()
    qa_sample_rate: float = Field(0.10, ge=0.0, le=1.0, description="share of auto-accepted images audited")
    seed: int = 0
    calibrated_policy: str | None = Field(
        None, description="calibration/<id>.json (relative to the workspace) written by `labelloop calibrate`; "
        "its per-class thresholds override the ones above (labelloop.qa.calibration)")


class Images(_Strict):
    max_pixels: int = Field(50_000_000, gt=0, description="larger decoded images are rejected")
    near_duplicate_distance: int = Field(4, ge=0, le=64, description="phash Hamming distance k")


class QA(_Strict):
    audit_error_target: float = Field(0.02, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    accept_iou: float = Field(0.95, gt=0.0, le=1.0, description="IoU at or above which a reviewed box counts as accepted")
    audit_move_iou: float = Field(0.75, gt=0.0, le=1.0, description="a moved auto label below this IoU is an error")
    # gold set, agreement, label errors (labelloop.qa.gold_eval, labelloop.qa.agreement, labelloop.qa.label_errors)
    strict: bool = Field(False, description="strict mode: reviewers' mean IoU vs gold must reach gold_mean_iou_strict")
    gold_mean_iou: float = Field(0.5, gt=0.0, le=1.0)
    gold_mean_iou_strict: float = Field(0.75, gt=0.0, le=1.0)
    gold_class_accuracy: float = Field(0.95, gt=0.0, le=1.0)
    kappa_min: float = Field(0.8, ge=-1.0, le=1.0, description="Cohen's kappa between reviewers must reach this")
    kappa_guidelines: float = Field(0.6, ge=-1.0, le=1.0, description="below this kappa the guidelines are flagged")
    honeypots_per_batch: int = Field(2, ge=0, description="gold images mixed into each batch's review export")
    bootstrap_resamples: int = Field(2000, ge=100, le=100_000)
    label_error_threshold: float = Field(0.25, gt=0.0, lt=1.0, description="cleanlab box score below this = suspect")
    max_suspects: int = Field(50, ge=0, description="suspect labels sent to review per QA run (worst first)")


class Cost(_Strict):
    """Unit prices of hand labeling (defaults: middle of the field's published ranges,
    classification $0.03-0.10 per image, boxes $0.02-0.10 per object, masks $0.10-3.00 each)."""

    currency: str = "USD"
    classification_per_image: float = Field(0.065, ge=0.0)
    box_per_object: float = Field(0.06, ge=0.0)
    mask_per_object: float = Field(1.55, ge=0.0)
    accepted_box_factor: float = Field(1.0, ge=0.0, le=1.0,
                                       description="share of the box price paid for a pre-annotation accepted unchanged")


class Calibration(_Strict):
    """How `labelloop calibrate` fits per-class high thresholds from reviewed outcomes."""

    precision_target: float = Field(0.98, gt=0.0, lt=1.0, description="reviewed precision (95% lower bound) to reach")
    min_predictions: int = Field(30, ge=1, description="reviewed predictions of a class needed to fit its threshold")


def _equal_weights() -> dict[Literal["least_confidence", "margin", "entropy", "disagreement"], float]:
    return {"least_confidence": 1.0, "margin": 1.0, "entropy": 1.0, "disagreement": 1.0}


class ActiveLearning(_Strict):
    """Which routed images a human sees first, and how many per batch (labelloop.routing.active_learning)."""

    strategy: Literal["least_confidence", "margin", "entropy", "disagreement", "combined"] = "combined"
    weights: dict[Literal["least_confidence", "margin", "entropy", "disagreement"], float] = Field(
        default_factory=_equal_weights,
        description="weights of the combined strategy")
    budget: int | None = Field(None, ge=1, description="human_review images sent per batch (null = all)")
    diversity_weight: float = Field(0.3, ge=0.0, le=1.0, description="share of the score from phash distance")
    min_phash_distance: int = Field(10, ge=0, le=64, description="closer to a selected image = near duplicate, not sent")
    empty_image_uncertainty: float = Field(1.0, ge=0.0, le=1.0, description="uncertainty of an image with no prediction")
    match_iou: float = Field(0.5, gt=0.0, le=1.0, description="overlapping detections of different classes = one object")

    @field_validator("weights")
    @classmethod
    def _weights(cls, w: dict) -> dict:
        if any(v < 0 for v in w.values()) or not any(v > 0 for v in w.values()):
            raise ValueError(f"weights must be >= 0 with at least one > 0, got {w}")
        return w


class Review(_Strict):
    """Review round trip settings: export formats, double review, import limits."""

    double_review_share: float = Field(0.10, ge=0.0, le=1.0, description="share of review images given two reviewers")
    resend_reviewed: bool = Field(False, description="re-send images that already have a review")
    max_export_mb: float = Field(200.0, gt=0.0, description="larger review files are refused before reading")
    cvat_mask_shape: Literal["mask", "polygon"] = Field("mask", description="how masks go to CVAT")


class Release(_Strict):
    train: float = Field(0.8, ge=0.0, le=1.0)
    val: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.1, ge=0.0, le=1.0)
    yolo_task: Literal["detect", "segment", "pose"] = Field(
        "detect", description="Ultralytics label layout of release/labels (labelloop.formats.yolo.writer)")
    shard_mb: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="store the images as content-addressed tar shards of about this many MiB "
        "(release/shards/<split>/, labelloop.release.shards) instead of one file each: for releases of many small images, "
        "whose per-file DVC cost dominates; null = images/<split>/<file>")

    def ratios(self) -> dict[str, float]:
        """``{"train", "val", "test"}`` shares (sum 1)."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @model_validator(mode="after")
    def _sum(self):
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("train + val + test must be 1")
        return self


class Sam3Spec(ModelSpec):
    """``prelabeler.sam3``: SAM 3 ("Segment Anything with Concepts", arXiv:2511.16719) as one
    text-prompted detector + segmenter (:mod:`labelloop.prelabel.backends.sam3`).

    ``path``: a ``save_pretrained`` directory of ``transformers.Sam3Model`` + ``Sam3Processor``
    (e.g. the gated ``facebook/sam3``, saved once elsewhere); ``sha256``: its
    :func:`~labelloop.prelabel.backends.loading.sha256_path`. Thresholds are probabilities in [0, 1]:
    an instance is kept when ``sigmoid(logit) * sigmoid(presence logit)`` is > ``score_threshold``
    (strictly, as ``Sam3Processor.post_process_instance_segmentation``), a pixel is foreground when
    its upsampled mask probability is > ``mask_threshold``; ``nms_iou``: the IoU above which a
    lower-scored box of the same category is suppressed (1.0 = no NMS); ``max_detections``: the best
    this many per image, all categories together.
    """

    score_threshold: float = Field(0.5, ge=0.0, le=1.0, description="keep an instance whose score is > this")
    mask_threshold: float = Field(0.5, ge=0.0, le=1.0, description="a pixel is foreground when its mask probability is > this")
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="per-category non-maximum suppression IoU (1.0 = none)")
    max_detections: int = Field(100, gt=0, description="at most this many instances per image, best first")


class PreLabeler(_Strict):
    """``backend: opencv`` (embedded CPU default), ``foundation`` (Grounding DINO or OWLv2, then
    SAM, SAM-HQ or SAM 2, from local checkpoints; needs ``pip install 'labelloop[gpu]'``; see
    labelloop.workspace.model_specs) or ``sam3`` (SAM 3 alone: text prompt -> boxes and masks,
    ``prelabeler.sam3``, :class:`Sam3Spec`)."""

    backend: Literal["opencv", "foundation", "sam3", "rtdetrv2"] = "opencv"
    device: str = "cpu"
    max_side: int = Field(800, gt=0, description="images are downscaled to this longest side for detection")
    grabcut_iterations: int = Field(3, ge=1)
    # foundation backend (labelloop.prelabel.backends.foundation)
    detector: DetectorSpec | None = None
    segmenter: SegmenterSpec | None = None
    # sam3 backend (labelloop.prelabel.backends.sam3); batch_size, num_workers, dtype and chunk_size apply too
    sam3: Sam3Spec | None = None
    # rtdetrv2 backend (labelloop.training.backend): a detector fine-tuned on a release (labelloop train)
    rtdetrv2: ModelSpec | None = None
    batch_size: int = Field(8, gt=0, description="images per forward pass (halved on CUDA out-of-memory)")
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes decoding and resizing images")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="autocast dtype: auto = bfloat16 on CUDA, float32 (no autocast) on CPU")
    chunk_size: int = Field(200, gt=0, description="images per prediction part file (the unit a crash can lose)")

    @model_validator(mode="after")
    def _foundation(self):
        if self.backend == "foundation" and self.detector is None:
            raise ValueError("backend foundation needs prelabeler.detector (path, sha256)")
        if self.backend == "sam3" and self.sam3 is None:
            raise ValueError("backend sam3 needs prelabeler.sam3 (path, sha256)")
        if self.backend == "rtdetrv2" and self.rtdetrv2 is None:
            raise ValueError("backend rtdetrv2 needs prelabeler.rtdetrv2 (path, sha256)")
        return self


class Training(_Strict):
    """``training:``: fine-tuning an RT-DETRv2 detector on a release's train split
    (:mod:`labelloop.training`, ``labelloop train``)."""

    base_checkpoint: str | None = Field(
        None, description="RT-DETRv2 save_pretrained directory to start from (workspace-relative or absolute); "
        "null = random weights of the architecture in architecture")
    base_sha256: str | None = Field(None, description="sha256 of base_checkpoint (labelloop.models.hashing)")
    architecture: Literal["tiny", "default"] = Field(
        "default", description="architecture built when base_checkpoint is null: tiny = test-sized, "
        "default = transformers' RTDetrV2Config() (ResNet-50-vd backbone)")
    image_size: int = Field(640, ge=32, description="images are resized to image_size x image_size pixels")
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0, description="AdamW learning rate")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay")
    max_grad_norm: float = Field(0.1, gt=0.0, description="gradient clipping (L2 norm), as RT-DETR's recipe")
    seed: int = Field(0, description="torch, Python and sampling seed of a training run")
    device: str = Field("auto", description="auto = cuda when available, else cpu")
    score_threshold: float = Field(0.05, ge=0.0, le=1.0, description="detections kept for evaluation (COCO AP)")
    max_detections: int = Field(100, gt=0, description="detections per image, best first")
    promote_margin: float = Field(0.0, description="AP(candidate) - AP(current) lower 95% bound must exceed this")
    min_test_images: int = Field(20, ge=1, description="reviewed test images needed to decide a promotion")
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000, description="paired bootstrap resamples over images")


class ProjectConfig(_Strict):
    """The whole ``labelloop.yaml``."""

    project: str = "labelloop"
    categories: list[Category]
    routing: Routing = Routing()
    images: Images = Images()
    qa: QA = QA()
    release: Release = Release()
    prelabeler: PreLabeler = PreLabeler()
    cost: Cost = Cost()
    calibration: Calibration = Calibration()
    active_learning: ActiveLearning = ActiveLearning()
    review: Review = Review()
    training: Training = Training()
    # per-class thresholds of routing.calibrated_policy, filled by load_config
    _calibrated: dict = PrivateAttr(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _unique(cls, categories: list[Category]) -> list[Category]:
        names = [c.name for c in categories]
        if not names:
            raise ValueError("at least one category is required")
        if len(set(names)) != len(names):
            raise ValueError(f"category names must be unique: {names}")
        for name in names:
            if RESERVED_TAG_ANSWER in name.casefold():
                raise ValueError(f"category {name!r}: {RESERVED_TAG_ANSWER!r} is reserved (the reviewer's answer that an "
                                 "image holds no objects of the box categories)")
            if TAG_SEPARATOR in name:
                raise ValueError(f"category {name!r}: {TAG_SEPARATOR!r} is not allowed in a category name (it "
                                 "separates an image's tags in image_labels.csv and images.parquet)")
        return categories

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    def thresholds(self, category: str) -> Thresholds:
        c = self.category(category)
        if category in self._calibrated:
            return self._calibrated[category]
        return c.thresholds or self.routing.defaults

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def tag_categories(self) -> list[str]:
        """Names of the ``level: tag`` categories (image-level labels, no geometry), in file order."""
        return [c.name for c in self.categories if c.annotation_level == "tag"]

    def located_categories(self) -> list[Category]:
        """The ``box`` and ``mask`` categories (those a detector pre-labels with boxes), in file order."""
        return [c for c in self.categories if c.annotation_level != "tag"]

    def keypoint_schema(self) -> dict[str, list[str]]:
        """``{category: [keypoint names]}`` of the categories with keypoints."""
        return {c.name: list(c.keypoints) for c in self.categories if c.keypoints}

    def policy_id(self) -> str:
        """Routing policy id: ``policy-`` + 12 hex of sha256 over the thresholds per category,
        the QA sample rate and its seed (canonical JSON)."""
        body = {
            "thresholds": {c.name: self.thresholds(c.name).model_dump() for c in self.categories},
            "qa_sample_rate": self.routing.qa_sample_rate,
            "seed": self.routing.seed,
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"policy-{digest[:12]}"


DEFAULT_CONFIG = Path(str(resources.files("labelloop.data").joinpath("labelloop.yaml")))


def load_config(path: str | Path) -> ProjectConfig:
    """Load and validate ``labelloop.yaml``.

    Raises:
        ConfigError: the file is missing, not valid YAML, or a value is invalid; the message
            names the file and the key path (e.g. ``categories.0.thresholds.low``).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run `labelloop init` to create a workspace)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        cfg = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    if cfg.routing.calibrated_policy:
        cfg._calibrated = _calibrated_thresholds(path, cfg)
    return cfg


def _calibrated_thresholds(path: Path, cfg: ProjectConfig) -> dict[str, Thresholds]:
    """Per-class thresholds of ``routing.calibrated_policy`` (a JSON file relative to the folder of
    ``labelloop.yaml``, written by labelloop.qa.calibration); ConfigError names the file and problem."""
    rel = cfg.routing.calibrated_policy
    assert rel is not None  # called only when it is set
    file = (path.parent / rel).resolve()
    if not file.is_relative_to(path.parent.resolve()):
        raise ConfigError(f"{path}: routing.calibrated_policy {rel!r} lies outside the workspace")
    try:
        thresholds = json.loads(file.read_text(encoding="utf-8"))["thresholds"]
        out = {name: Thresholds.model_validate(t) for name, t in thresholds.items()}
    except FileNotFoundError:
        raise ConfigError(f"{path}: routing.calibrated_policy: {file} not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: routing.calibrated_policy: {file} is not a calibrated policy ({exc})") from None
    unknown = sorted(set(out) - set(cfg.category_names))
    if unknown:
        raise ConfigError(f"{path}: routing.calibrated_policy: {file} has thresholds for unknown categories {unknown}")
    return out

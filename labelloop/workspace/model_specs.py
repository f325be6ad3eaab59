"""Settings of the foundation-model pre-labeler (``prelabeler.detector`` / ``prelabeler.segmenter``
in ``labelloop.yaml``). Pure pydantic: importing this module never imports torch.

A model spec names a local file or directory and its sha256 (see
:func:`labelloop.prelabel.backends.loading.sha256_path` for how a directory is hashed). Weights are
never fetched at run time; a missing or mismatched file is a clear error naming the expected
path and hash. Relative paths resolve against the workspace root.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """A checkpoint on local disk: ``path`` (file or directory) and its ``sha256`` (64 lowercase hex)."""

    path: str = Field(min_length=1, description="checkpoint file or directory; relative paths resolve against the workspace root")
    sha256: str = Field(pattern=SHA256_PATTERN, description="sha256 of the file (or of the directory listing, see loading.sha256_path)")


class DetectorSpec(ModelSpec):
    """Open-vocabulary detector: text prompts (one per category) -> boxes with scores.

    ``kind``: ``grounding-dino`` = ``transformers.GroundingDinoForObjectDetection`` plus its
    processor, saved with ``save_pretrained`` in ``path`` (e.g. IDEA-Research/grounding-dino-tiny
    downloaded once, elsewhere); ``owlv2`` = ``transformers.Owlv2ForObjectDetection`` + processor
    the same way (e.g. google/owlv2-base-patch16-ensemble; fixed square input, ``text_threshold``
    and the edge sizes do not apply); ``florence-2`` = ``transformers.Florence2ForConditionalGeneration``
    + ``Florence2Processor`` the same way (e.g. florence-community/Florence-2-base; the
    ``<OPEN_VOCABULARY_DETECTION>`` task per category, a box's score is the mean probability of
    its 4 generated location tokens, :mod:`labelloop.prelabel.backends.florence2`; fixed square
    input, ``text_threshold`` and the edge sizes do not apply). Thresholds are probabilities in [0, 1] (sigmoid of the
    token logits); ``nms_iou`` is the IoU above which a lower-scored box of the same category
    is suppressed; the image is resized so its shorter side is ``shortest_edge`` and its longer
    side at most ``longest_edge`` pixels (the processor's defaults: 800 / 1333).
    """

    kind: Literal["grounding-dino", "owlv2", "florence-2"] = "grounding-dino"
    box_threshold: float = Field(0.35, ge=0.0, le=1.0, description="keep a box whose best prompt-token probability is >= this")
    text_threshold: float = Field(0.25, ge=0.0, le=1.0, description="a box's category must have a token probability >= this")
    nms_iou: float = Field(0.5, gt=0.0, le=1.0, description="per-category non-maximum suppression IoU")
    max_detections: int = Field(100, gt=0, description="at most this many boxes per image, best first")
    shortest_edge: int = Field(800, gt=0)
    longest_edge: int = Field(1333, gt=0)

    @model_validator(mode="after")
    def _edges(self):
        if self.shortest_edge > self.longest_edge:
            raise ValueError(f"shortest_edge ({self.shortest_edge}) must be <= longest_edge ({self.longest_edge})")
        return self


class SamArch(_Strict):
    """A SAM architecture by its numbers (segment-anything ``build_sam._build_sam``): ViT image
    encoder width/depth/heads and global-attention blocks, input side (pixels, square, a multiple
    of 16) and prompt embedding width. The named archs are vit_b (768, 12, 12, [2, 5, 8, 11]),
    vit_l (1024, 24, 16, [5, 11, 17, 23]) and vit_h (1280, 32, 16, [7, 15, 23, 31]), all 1024 / 256."""

    encoder_embed_dim: int = Field(gt=0)
    encoder_depth: int = Field(gt=0)
    encoder_num_heads: int = Field(gt=0)
    encoder_global_attn_indexes: list[int]
    image_size: int = Field(1024, gt=0, multiple_of=16)
    prompt_embed_dim: int = Field(256, gt=0)


class SegmenterSpec(ModelSpec):
    """Promptable segmenter: boxes -> masks (one per box, the EXIF-corrected image's size).

    ``kind``:

    - ``sam`` = Meta's ``segment-anything`` package with an official checkpoint
      (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``) loaded with
      ``torch.load(weights_only=True)``. ``arch`` names the architecture of that file.
    - ``sam-hq`` = ``transformers.SamHQModel`` + ``SamHQProcessor`` saved with ``save_pretrained``
      in the directory ``path`` (e.g. syscv-community/sam-hq-vit-h downloaded once, elsewhere).
    - ``sam2`` = ``transformers.Sam2Model`` + ``Sam2Processor`` the same way (e.g.
      facebook/sam2.1-hiera-large), image mode.
    - ``sam3-tracker`` = ``transformers.Sam3TrackerModel`` + ``Sam3TrackerProcessor`` the same
      way (SAM 3's box-prompted segmenter, the SAM 2 API; e.g. from ``facebook/sam3``).
    - ``sam-hf`` = ``transformers.SamModel`` + ``SamProcessor`` the same way (e.g.
      facebook/sam-vit-base or facebook/sam-vit-huge as the hub serves them).

    For the transformers kinds (all but ``sam``) the architecture comes from the directory's ``config.json``:
    setting ``arch`` is an error. See :mod:`labelloop.prelabel.backends.sam_hf` for their pre- and
    post-processing. ``mask_threshold``: logit above which a pixel is foreground (0.0, the
    default of all three).

    ``attention`` (kind ``sam`` only): how the ViT image encoder computes attention. ``sdpa``
    (default) = ``torch.nn.functional.scaled_dot_product_attention`` with the decomposed
    relative-position terms as its additive mask (:mod:`labelloop.prelabel.backends.sam_attention`, as
    segment-anything-fast); ``eager`` = segment-anything's own ``(q * scale) @ k^T + bias``,
    softmax, ``@ v``. The same math in another order, so it is **not** in the model_id, like the
    torch version and the GPU model, which also change kernels and rounding. Measured on the CPU
    (random weights with random relative-position tables, tests/unit/prelabel/test_prelabel_sam_attention.py):
    float32 encoder outputs differ by at most ~2e-6 (values up to ~4) and the segmenter's masks on
    the 12 bundled photos by 0 or 1 pixel per photo; under bf16 autocast the encoder outputs differ
    by ~0.05, as much as bf16 differs from float32, and ~0.3 % of mask pixels (those with a logit
    within bf16 rounding of the threshold) flip, against ~0.4 % between bf16 and float32 (the
    dtype, a precision choice, is in the id). Leaving it out also keeps the model_id of every
    config written before this setting existed (their predictions were computed ``eager``).

    ``compile`` (kind ``sam`` only, default false): run the image encoder through
    ``torch.compile`` (:mod:`labelloop.prelabel.backends.compiled`: static shapes but the batch dimension,
    two compilations per process, eager with a warning if compiling fails). Inductor fuses and
    reorders the same ops, so like ``attention`` it changes float rounding only and is **not** in
    the model_id: float32 encoder outputs of the compiled SDPA encoder differ from the uncompiled
    one by at most 2.4e-6 (values up to ~4; random weights, CPU, batches of 1 to 3), the size of
    the eager-vs-sdpa difference.
    It costs a one-off compile per process (66 s for vit_b on this 2-core CPU) and needs a C++
    compiler at run time on the CPU (Triton on CUDA).
    """

    kind: Literal["sam", "sam-hq", "sam2", "sam3-tracker", "sam-hf"] = "sam"
    arch: Literal["vit_b", "vit_l", "vit_h"] | SamArch = "vit_h"
    mask_threshold: float = 0.0
    attention: Literal["sdpa", "eager"] = Field(
        "sdpa", description="kind sam: sdpa (fused scaled_dot_product_attention with the rel-pos bias) | eager")
    compile: bool = Field(False, description="kind sam: torch.compile the image encoder (eager with a warning if it fails)")

    @model_validator(mode="after")
    def _arch_only_for_sam(self):
        if self.kind != "sam":
            for key, why in (("arch", "reads its architecture from the checkpoint directory's config.json"),
                             ("attention", "runs transformers' own attention"),
                             ("compile", "runs transformers' own model, uncompiled")):
                if key in self.model_fields_set:
                    raise ValueError(f"segmenter kind {self.kind!r} {why}: remove {key} (it applies to kind sam only)")
        return self

    def settings(self) -> dict:
        """What of this spec changes the masks (for the model_id): everything but ``path``,
        ``attention`` and ``compile`` (float rounding only, see the class docstring), and ``arch``
        only for ``sam`` (the other kinds' architecture is in their sha256)."""
        rounding_only = {"path", "attention", "compile"}
        return self.model_dump(exclude=rounding_only if self.kind == "sam" else rounding_only | {"arch"})


DTYPES = ("auto", "bfloat16", "float16", "float32")

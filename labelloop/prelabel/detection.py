"""What the text-prompted detectors (:mod:`~labelloop.prelabel.grounding_dino`,
:mod:`~labelloop.prelabel.owlv2`) share: the per-image result, loading a transformers
``save_pretrained`` directory with its sha256 checked, and the last post-processing steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.ops import batched_nms

from labelloop.prelabel.loading import CheckpointError, verify_checkpoint
from labelloop.prelabel.specs import DetectorSpec, ModelSpec

MIN_BOX_SIDE = 1.0  # pixels: a box clipped to a sliver narrower than this is dropped


@dataclass
class Boxes:
    """One image's detections: ``xyxy`` (N, 4) float32 pixels, ``scores`` (N,) in [0, 1],
    ``labels`` (N,) int64 category indices (into the detector's category list)."""

    xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def load_pretrained(kind: str, name: str, spec: ModelSpec, path: Path, model_cls, processor_cls,
                    role: str = "detector"):
    """``(model, processor)`` from the local ``save_pretrained`` directory ``path``, after its
    sha256 is checked against ``spec.sha256`` (never downloads: ``local_files_only=True``).

    ``role`` and ``kind`` name the model in messages (``"detector grounding-dino"``,
    ``"segmenter sam2"``); ``name`` is the architecture ("a Grounding DINO").

    Raises:
        CheckpointError: the directory is missing, hashes differently, or transformers cannot
            load ``model_cls`` and ``processor_cls`` from it.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    verify_checkpoint(path, spec.sha256, f"{role} {kind}", kind="dir")
    try:
        return (model_cls.from_pretrained(path, local_files_only=True),
                processor_cls.from_pretrained(path, local_files_only=True))
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{role} {kind}: {path} (sha256 {spec.sha256}) is not {name} "
                              f"save_pretrained directory with its processor: {exc}") from None


def finish_boxes(xyxy: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, size: tuple[int, int],
                 spec: DetectorSpec) -> Boxes:
    """One image's kept candidates -> :class:`Boxes`: clip ``xyxy`` (N, 4) pixels to the image
    ``size`` = (H, W), drop boxes narrower or lower than :data:`MIN_BOX_SIDE`, per-category NMS
    (``torchvision.ops.batched_nms`` at ``spec.nms_iou``), the best ``spec.max_detections``."""
    h, w = size
    b = torch.stack([xyxy[:, 0].clamp(0, w), xyxy[:, 1].clamp(0, h), xyxy[:, 2].clamp(0, w), xyxy[:, 3].clamp(0, h)], 1)
    ok = (b[:, 2] - b[:, 0] >= MIN_BOX_SIDE) & (b[:, 3] - b[:, 1] >= MIN_BOX_SIDE)
    b, s, lab = b[ok], scores[ok], labels[ok]
    order = batched_nms(b, s, lab, spec.nms_iou)[: spec.max_detections]
    return Boxes(b[order], s[order], lab[order])


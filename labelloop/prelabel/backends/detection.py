"""What the text-prompted detectors (:mod:`~labelloop.prelabel.backends.grounding_dino`,
:mod:`~labelloop.prelabel.backends.owlv2`) share: the per-image result, loading a transformers
``save_pretrained`` directory with its sha256 checked, and the last post-processing steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.ops import batched_nms

from labelloop.prelabel.backends.loading import CheckpointError, verify_checkpoint
from labelloop.workspace.model_specs import DetectorSpec, ModelSpec

#: A box clipped to a sliver narrower than this many pixels is dropped.
MIN_BOX_SIDE = 1.0  # pixels: a box clipped to a sliver narrower than this is dropped


@dataclass
class Boxes:
    """One image's detections: ``xyxy`` (N, 4) float32 pixels, ``scores`` (N,) in [0, 1],
    ``labels`` (N,) int64 category indices (into the detector's category list)."""

    xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor


def load_pretrained(kind: str, name: str, spec: ModelSpec, path: Path, model_cls, processor_cls,
                    role: str = "detector", model_types: tuple[str, ...] = ()):
    """``(model, processor)`` from the local ``save_pretrained`` directory ``path``, after its
    sha256 is checked against ``spec.sha256`` (never downloads: ``local_files_only=True``).

    ``role`` and ``kind`` name the model in messages (``"detector grounding-dino"``,
    ``"segmenter sam2"``); ``name`` is the architecture ("a Grounding DINO"). The directory's
    ``config.json`` must name ``model_cls``'s ``model_type`` or one of ``model_types``, and every
    weight of ``model_cls`` must be in the checkpoint (transformers would otherwise initialize the
    missing ones randomly and only log it); extra weights are ignored.

    Raises:
        CheckpointError: the directory is missing, hashes differently, holds another model type,
            lacks weights, or transformers cannot load ``model_cls`` and ``processor_cls`` from it.
    """

    from transformers.utils import logging as hf_logging  # optional heavy dependency (the gpu extra)

    hf_logging.disable_progress_bar()
    verify_checkpoint(path, spec.sha256, f"{role} {kind}", kind="dir")
    what = f"{role} {kind}: {path} (sha256 {spec.sha256})"
    accepted = (model_cls.config_class.model_type, *model_types)
    try:
        found = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{what} has no readable config.json ({exc}): not {name} save_pretrained directory") from None
    if found not in accepted:
        raise CheckpointError(f"{what} holds a {found!r} model, not {name} (config.json model_type {' or '.join(accepted)})")
    try:
        model, info = model_cls.from_pretrained(path, local_files_only=True, output_loading_info=True)
        processor = processor_cls.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, AttributeError, TypeError) as exc:
        raise CheckpointError(f"{what} is not {name} save_pretrained directory with its processor: "
                              f"{type(exc).__name__}: {exc}") from None
    bad = sorted(info.get("missing_keys", ())) + sorted(str(k) for k in info.get("mismatched_keys", ()))
    if bad:
        raise CheckpointError(f"{what} lacks {len(bad)} weight(s) of {name} (missing or of another shape), "
                              f"e.g. {bad[:3]}")
    return model, processor


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


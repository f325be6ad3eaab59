"""The detector fine-tuned on releases: RT-DETRv2 (``RTDetrV2ForObjectDetection``, transformers,
Apache-2.0), its pre-processing and post-processing.

Why RT-DETRv2 and not D-FINE: both are Apache-2.0 DETR-family detectors maintained in
transformers 5.24 with the same input and output conventions, but at the same tiny configuration
(ResNet / HGNetV2 backbone of 4 one-block stages, d_model 64, 2 decoder layers, 20 queries,
4 images of 128 x 128 pixels) one RT-DETRv2 training step took 0.078 s on this project's 2-core
CPU and a D-FINE step 0.19 s (D-FINE's fine-grained distribution refinement adds losses and
layers), so RT-DETRv2 trains about 2.4x faster for the tests, the benchmark and small GPUs.
Ultralytics' models are AGPL and not used.

Conventions (those of ``RTDetrImageProcessor`` with its defaults, which is saved beside every
checkpoint so other tools read it the same way):

- input: RGB, resized (no aspect kept) to ``image_size x image_size`` pixels with bilinear
  interpolation, float32 in [0, 1] (``x / 255``), no mean/std normalisation; tensor ``(N, 3, S, S)``.
- targets: ``{"class_labels": int64 (K,), "boxes": float32 (K, 4)}`` with boxes as
  ``(cx, cy, w, h)`` normalised to [0, 1] by the image's width and height.
- outputs: ``logits`` ``(N, Q, C)`` (sigmoid per class, focal-loss style) and ``pred_boxes``
  ``(N, Q, 4)`` normalised ``cxcywh``; :func:`postprocess` turns them into pixel ``xyxy`` boxes of
  the original image (top-k over queries x classes, as ``RTDetrImageProcessor.post_process_object_detection``).

The class head is re-initialised for the release's ontology: a checkpoint is loaded with
``num_labels = len(categories)`` and ``ignore_mismatched_sizes=True``, so the class-logit layers
of another ontology (COCO's 80 classes, say) get fresh random weights while the backbone, encoder,
decoder and box heads keep theirs; ``id2label`` is the release's categories in order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labelloop.prelabel.backends.loading import CheckpointError

FAMILY = "rt-detrv2"
"""The models-table ``family`` of a fine-tuned detector."""


def tiny_config(categories: Sequence[str]) -> Any:
    """A test-sized ``RTDetrV2Config`` (ResNet basic blocks 16-32-64-128, d_model 64, 1 encoder
    layer, 2 decoder layers, 20 queries, no denoising queries): about 0.75 M parameters, one
    training step on 4 images of 128 px in under 0.1 s on a CPU core."""
    from transformers import ResNetConfig, RTDetrV2Config

    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage2", "stage3", "stage4"])  # type: ignore[call-arg]
    return RTDetrV2Config(backbone_config=backbone, encoder_in_channels=[32, 64, 128], d_model=64,
                          encoder_hidden_dim=64, encoder_ffn_dim=128, decoder_ffn_dim=128, encoder_attention_heads=2,
                          decoder_attention_heads=2, decoder_layers=2, num_queries=20, num_denoising=0,
                          decoder_in_channels=[64, 64, 64], hidden_expansion=0.5, decoder_n_points=2,
                          **_labels(categories))


def _labels(categories: Sequence[str]) -> dict:
    return {"num_labels": len(categories), "id2label": dict(enumerate(categories)),
            "label2id": {c: i for i, c in enumerate(categories)}}


def build_model(categories: Sequence[str], base: str | os.PathLike | None = None, architecture: str = "default",
                seed: int = 0) -> Any:
    """An ``RTDetrV2ForObjectDetection`` whose class head has one output per category.

    Args:
        categories: the release's category names, in its order (index = class label).
        base: a ``save_pretrained`` directory to start from (its class head is re-initialised when
            its ontology differs: module docstring), or None for random weights.
        architecture: with ``base`` None: ``"tiny"`` (:func:`tiny_config`) or ``"default"``
            (``RTDetrV2Config()``: ResNet-50-vd backbone, 300 queries).
        seed: ``torch.manual_seed`` before the random weights are drawn.

    Raises:
        CheckpointError: ``base`` is not a directory holding an RT-DETRv2 ``config.json``.
    """
    import torch
    from transformers import RTDetrV2Config, RTDetrV2ForObjectDetection
    from transformers.utils import logging as hf_logging

    torch.manual_seed(seed)
    if base is None:
        config = tiny_config(categories) if architecture == "tiny" else RTDetrV2Config(**_labels(categories))
        return RTDetrV2ForObjectDetection(config)
    base = Path(base)
    check_checkpoint_dir(base)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized" warning is the documented head reset
    try:
        return RTDetrV2ForObjectDetection.from_pretrained(base, ignore_mismatched_sizes=True, **_labels(categories))
    finally:
        hf_logging.set_verbosity(verbosity)


def check_checkpoint_dir(path: Path) -> Path:
    """``path`` if it is a directory with an RT-DETRv2 ``config.json`` and a weights file.

    Raises:
        CheckpointError: (:class:`labelloop.prelabel.backends.loading.CheckpointError`, the
            other backends' error) naming the path and what is missing or wrong.
    """
    import json

    if not path.is_dir():
        raise CheckpointError(f"RT-DETRv2 checkpoint {path}: no such directory")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"RT-DETRv2 checkpoint {path}: no config.json (not a save_pretrained directory)")
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"RT-DETRv2 checkpoint {cfg}: not JSON ({e})") from e
    if model_type != "rt_detr_v2":
        raise CheckpointError(f"RT-DETRv2 checkpoint {cfg}: model_type {model_type!r}, expected 'rt_detr_v2'")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise CheckpointError(f"RT-DETRv2 checkpoint {path}: no weights file (*.safetensors)")
    return path


def save_model(model: Any, dest: Path, image_size: int) -> None:
    """``save_pretrained`` of the model and of an ``RTDetrImageProcessor`` resizing to
    ``image_size`` (the pre-processing of this module) into ``dest``."""
    from transformers import RTDetrImageProcessor

    model.save_pretrained(dest)
    RTDetrImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(dest)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """The image file as RGB (release images are already EXIF-transposed)."""
    with Image.open(path) as im:
        return im.convert("RGB")


def pixel_values(images: Sequence[Image.Image], image_size: int) -> Any:
    """``(N, 3, image_size, image_size)`` float32 tensor in [0, 1]: each image resized with
    bilinear interpolation (aspect not kept), as ``RTDetrImageProcessor``."""
    import torch

    arrays = [np.asarray(im.resize((image_size, image_size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
              for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def coco_to_target(bboxes_xywh: Sequence[Sequence[float]], labels: Sequence[int], width: int, height: int) -> dict:
    """COCO ``bbox`` rows (``[x, y, w, h]`` pixels, top-left origin) and class indices -> the
    model's target: ``class_labels`` int64 ``(K,)``, ``boxes`` float32 ``(K, 4)`` normalised
    ``cxcywh``. Boxes are clipped to the image first."""
    import torch

    boxes = np.zeros((len(bboxes_xywh), 4), np.float32)
    for i, (x, y, w, h) in enumerate(bboxes_xywh):
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        boxes[i] = ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)
    return {"class_labels": torch.tensor(list(labels), dtype=torch.int64), "boxes": torch.from_numpy(boxes)}


def postprocess(logits: Any, pred_boxes: Any, sizes: Sequence[tuple[int, int]], score_threshold: float = 0.05,
                max_detections: int = 100) -> list[list[tuple[int, float, list[float]]]]:
    """Model outputs -> per image ``[(class_index, score, [x0, y0, x1, y1])]``, best first.

    Args:
        logits: ``(N, Q, C)`` class logits; scores are their sigmoid.
        pred_boxes: ``(N, Q, 4)`` normalised ``cxcywh``.
        sizes: ``(width, height)`` in pixels of each original image.
        score_threshold: keep scores ``>=`` this.
        max_detections: the top-k over all query x class pairs (as
            ``RTDetrImageProcessor.post_process_object_detection`` with ``use_focal_loss``).

    Returns:
        boxes as pixel ``xyxy`` of the original image, clipped to it.
    """
    import torch

    scores = torch.sigmoid(logits.float())
    n, q, c = scores.shape
    k = min(max_detections, q * c)
    out: list[list[tuple[int, float, list[float]]]] = []
    for i in range(n):
        top, idx = scores[i].flatten().topk(k)
        w, h = sizes[i]
        dets = []
        for s, j in zip(top.tolist(), idx.tolist()):
            if s < score_threshold:
                break
            cx, cy, bw, bh = pred_boxes[i, j // c].float().tolist()
            box = [min(max((cx - bw / 2) * w, 0.0), w), min(max((cy - bh / 2) * h, 0.0), h),
                   min(max((cx + bw / 2) * w, 0.0), w), min(max((cy + bh / 2) * h, 0.0), h)]
            dets.append((j % c, float(s), box))
        out.append(dets)
    return out

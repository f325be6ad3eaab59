"""Grounding DINO (Liu et al., 2023, arXiv:2303.05499) through ``transformers``:
``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor`` from a local
``save_pretrained`` directory (e.g. IDEA-Research/grounding-dino-tiny, copied onto the machine).

The original IDEA ``groundingdino-py`` package is not supported: it pins supervision 0.6.0 and
its C++/CUDA ops do not build beside our pins.

Prompts: one text prompt per category, lowercased and joined as the processor does
(``"a person. a cat."``, ``GroundingDinoProcessor._merge_candidate_labels_text``), encoded once and
shared by every image of a batch, so all categories are detected in one forward pass.

Post-processing (per image, from ``logits`` (B, Q, T) and ``pred_boxes`` (B, Q, 4)):
``p = sigmoid(logits)``; category c's score of query q is the highest ``p[q, t]`` over the
tokens t of c's prompt (token spans from the fast tokenizer's offsets, as mmdetection's
"positive maps"). A query is kept when its best category score is >= ``box_threshold`` (IDEA's
``logits.max() > box_threshold``) and >= ``text_threshold`` (that category's tokens must pass the
phrase threshold); it is labelled with that best category and scored with that probability.
Boxes: normalized (cx, cy, w, h) of the un-padded input -> xyxy pixels of the EXIF-corrected
image (``torchvision.ops.box_convert``, times (W, H, W, H)), clipped to the image, dropped when
narrower or lower than 1 pixel (:data:`~labelloop.prelabel.backends.detection.MIN_BOX_SIDE`); then per-
category NMS (``torchvision.ops.batched_nms`` at ``nms_iou``) and the best ``max_detections``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

from labelloop.prelabel.backends.detection import MIN_BOX_SIDE, Boxes, finish_boxes, load_pretrained
from labelloop.prelabel.backends.runtime import autocast
from labelloop.workspace.model_specs import DetectorSpec

__all__ = ["MIN_BOX_SIDE", "Boxes", "DinoPrepare", "GroundingDinoDetector", "PromptEncoding", "crop_padding", "dino_collate"]


@dataclass
class PromptEncoding:
    """Token ids (1, T) of the joined prompts and, per category, its token positions."""

    text: str
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    spans: list[list[int]]


class DinoPrepare:
    """Worker side: RGB PIL image -> normalized float tensor (3, h, w) resized by the model's
    own image processor (shorter side ``shortest_edge``, longer at most ``longest_edge``)."""

    def __init__(self, image_processor, shortest_edge: int, longest_edge: int):
        self.image_processor = image_processor
        self.size = {"shortest_edge": shortest_edge, "longest_edge": longest_edge}

    def __call__(self, rgb) -> torch.Tensor:
        out = self.image_processor(images=rgb, size=self.size, do_pad=False, return_tensors="pt")
        return out["pixel_values"][0]


def dino_collate(tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zero-pad (3, h, w) tensors at the bottom/right to the batch's largest h and w.

    Returns ``pixel_values`` (B, 3, H, W) float32 and ``pixel_mask`` (B, H, W) int64 (1 = image),
    as the processor's ``pad`` does."""
    h = max(t.shape[1] for t in tensors)
    w = max(t.shape[2] for t in tensors)
    values = torch.stack([F.pad(t, (0, w - t.shape[2], 0, h - t.shape[1])) for t in tensors])
    mask = torch.zeros((len(tensors), h, w), dtype=torch.int64)
    for i, t in enumerate(tensors):
        mask[i, : t.shape[1], : t.shape[2]] = 1
    return {"pixel_values": values, "pixel_mask": mask}


def crop_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop padding rows/columns no image of the batch uses (a sub-batch split off a larger
    batch keeps its padding), so a batch's output depends only on its own images."""
    mask = inputs["pixel_mask"]
    h = int(mask.amax(dim=(0, 2)).nonzero().max()) + 1
    w = int(mask.amax(dim=(0, 1)).nonzero().max()) + 1
    if (h, w) == tuple(mask.shape[1:]):
        return inputs
    return {"pixel_values": inputs["pixel_values"][:, :, :h, :w], "pixel_mask": mask[:, :h, :w]}


class GroundingDinoDetector:
    """Text-prompted detector for ``prompts`` (one per category, in category order).

    Args:
        spec: the detector settings; ``path`` must be the resolved directory.
        prompts: text prompt per category (no ``.``: it separates prompts).
        device: where the model runs; ``amp``: autocast dtype or None.

    Raises:
        CheckpointError: the directory is missing, hashes differently, or transformers cannot
            load a Grounding DINO model and processor from it.
        ValueError: a prompt is empty, contains ``.``, repeats another, or the joined prompts
            exceed the model's ``max_text_len`` tokens.
    """

    kind = "grounding-dino"

    def __init__(self, spec: DetectorSpec, path: Path, prompts: Sequence[str], device: torch.device,
                 amp: torch.dtype | None):
        from transformers import (  # optional heavy dependency (the gpu extra)
            AutoProcessor,
            GroundingDinoForObjectDetection,
        )

        self.spec, self.device, self.amp = spec, device, amp
        self.model, self.processor = load_pretrained(self.kind, "a Grounding DINO", spec, path,
                                                     GroundingDinoForObjectDetection, AutoProcessor)
        self.model.to(device).eval()
        self.text = self.encode_prompts(prompts)
        self._text_dev = {k: getattr(self.text, k).to(device) for k in ("input_ids", "attention_mask", "token_type_ids")}

    # ---- text -----------------------------------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> PromptEncoding:
        """Join ``prompts`` as ``"p1. p2."`` (lowercase), tokenize once, find each prompt's tokens."""
        clean = [p.strip().lower() for p in prompts]
        for p in clean:
            if not p or "." in p:
                raise ValueError(f"Grounding DINO prompt {p!r}: must be non-empty and contain no '.' (it separates prompts)")
        if len(set(clean)) != len(clean):
            raise ValueError(f"Grounding DINO prompts must differ per category: {clean}")
        text = ". ".join(clean) + "."
        starts, pos = [], 0
        for p in clean:
            starts.append((pos, pos + len(p)))
            pos += len(p) + 2
        enc = self.processor.tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        n_tokens = enc["input_ids"].shape[1]
        if n_tokens > self.model.config.max_text_len:
            raise ValueError(f"the prompts take {n_tokens} tokens, more than the model's max_text_len "
                             f"{self.model.config.max_text_len}: {text!r}")
        spans: list[list[int]] = [[] for _ in clean]
        for t, (s, e) in enumerate(enc["offset_mapping"][0].tolist()):
            if e <= s:
                continue  # special tokens
            for c, (cs, ce) in enumerate(starts):
                if cs <= s < ce:
                    spans[c].append(t)
        for p, sp in zip(clean, spans):
            if not sp:
                raise ValueError(f"Grounding DINO prompt {p!r} has no token in the model's vocabulary")
        tt = enc.get("token_type_ids", torch.zeros_like(enc["input_ids"]))
        return PromptEncoding(text, enc["input_ids"], enc["attention_mask"], tt, spans)

    # ---- images ---------------------------------------------------------------------------
    def preparer(self) -> DinoPrepare:
        return DinoPrepare(self.processor.image_processor, self.spec.shortest_edge, self.spec.longest_edge)

    collate = staticmethod(dino_collate)

    def forward(self, inputs: dict[str, torch.Tensor], text: PromptEncoding | None = None):
        """The raw model call on device tensors (``pixel_values``, ``pixel_mask``) with the
        prompts repeated over the batch. Returns (logits (B, Q, T), pred_boxes (B, Q, 4))."""
        b = inputs["pixel_values"].shape[0]
        inputs = crop_padding(inputs)
        if text is None:
            tx = self._text_dev
        else:
            tx = {k: getattr(text, k).to(self.device) for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"],
                             **{k: v.expand(b, -1) for k, v in tx.items()})
        return out.logits, out.pred_boxes

    def postprocess(self, logits: torch.Tensor, pred_boxes: torch.Tensor, sizes: Sequence[tuple[int, int]],
                    text: PromptEncoding | None = None) -> list[Boxes]:
        """Thresholds, category assignment, pixel boxes and per-category NMS (module docstring)."""
        text = text or self.text
        probs = logits.float().sigmoid()
        cat = torch.stack([probs[..., sp].amax(-1) for sp in text.spans], dim=-1)  # (B, Q, C)
        best, label = cat.max(-1)
        keep_min = max(self.spec.box_threshold, self.spec.text_threshold)
        hw = torch.tensor(sizes, dtype=torch.float32, device=pred_boxes.device)  # (B, 2) = (H, W)
        scale = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=1)[:, None, :]
        xyxy = box_convert(pred_boxes.float(), "cxcywh", "xyxy") * scale
        out = []
        for i in range(len(sizes)):
            k = best[i] >= keep_min
            out.append(finish_boxes(xyxy[i][k], best[i][k], label[i][k], sizes[i], self.spec))
        return out

    def detect(self, inputs: dict[str, torch.Tensor], sizes: Sequence[tuple[int, int]],
               text: PromptEncoding | None = None) -> list[Boxes]:
        """Boxes per image (see :meth:`GroundingDinoDetector.postprocess`); ``sizes`` = (H, W) of each original image."""
        logits, boxes = self.forward(inputs, text)
        return self.postprocess(logits, boxes, sizes, text)

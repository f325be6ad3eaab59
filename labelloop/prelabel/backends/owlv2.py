"""OWLv2 (Minderer et al., 2023, "Scaling Open-Vocabulary Object Detection", arXiv:2306.09683)
through ``transformers``: ``Owlv2ForObjectDetection`` + ``Owlv2Processor`` from a local
``save_pretrained`` directory (e.g. google/owlv2-base-patch16-ensemble copied onto the machine).
The same detector interface as :mod:`labelloop.prelabel.backends.grounding_dino`.

Prompts: one text query per category (OWL scores every predicted box against every query in one
forward pass). Pre-processing is the processor's: the image is padded to a square at the bottom /
right (grey 0.5 before normalization) and resized to the model's input size (960 for the base
models; ``shortest_edge`` / ``longest_edge`` do not apply). Post-processing, as
``Owlv2ImageProcessor.post_process_object_detection``: per box, the best query's ``sigmoid(logit)``
is its score and that query's category its label; boxes (normalized cx, cy, w, h of the padded
square) times max(H, W) -> xyxy pixels of the EXIF-corrected image, clipped to it (slivers under
1 pixel dropped); kept when the
score is >= ``box_threshold``; then per-category NMS at ``nms_iou`` and the best
``max_detections``. ``text_threshold`` is not used by OWLv2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torchvision.ops import box_convert

from labelloop.prelabel.backends.detection import Boxes, finish_boxes, load_pretrained
from labelloop.prelabel.backends.runtime import autocast
from labelloop.workspace.model_specs import DetectorSpec


@dataclass
class QueryEncoding:
    """Token ids (C, L) and attention mask of the C category queries."""

    queries: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class OwlPrepare:
    """Worker side: RGB PIL image -> (3, S, S) float tensor, padded square and resized by the
    model's own image processor."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, rgb) -> torch.Tensor:
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"][0]


def owl_collate(tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack (3, S, S) tensors into ``pixel_values`` (B, 3, S, S) float32."""
    return {"pixel_values": torch.stack(list(tensors))}


class Owlv2Detector:
    """Text-queried OWLv2 detector for ``prompts`` (one per category, in category order).

    Raises:
        CheckpointError: the directory is missing, hashes differently, or is not an OWLv2
            ``save_pretrained`` directory with its processor.
        ValueError: a prompt is empty or repeats another.
    """

    kind = "owlv2"

    def __init__(self, spec: DetectorSpec, path: Path, prompts: Sequence[str], device: torch.device,
                 amp: torch.dtype | None):
        from transformers import Owlv2ForObjectDetection, Owlv2Processor  # optional heavy dependency (the gpu extra)

        self.spec, self.device, self.amp = spec, device, amp
        self.model, self.processor = load_pretrained(self.kind, "an OWLv2", spec, path,
                                                     Owlv2ForObjectDetection, Owlv2Processor)
        self.model.to(device).eval()
        self.text = self.encode_prompts(prompts)
        self._text_dev = (self.text.input_ids.to(device), self.text.attention_mask.to(device))

    def encode_prompts(self, prompts: Sequence[str]) -> QueryEncoding:
        """Tokenize the queries once (padded to the text model's maximum length)."""
        clean = [p.strip().lower() for p in prompts]
        if any(not p for p in clean) or len(set(clean)) != len(clean):
            raise ValueError(f"OWLv2 queries must be non-empty and differ per category: {clean}")
        enc = self.processor.tokenizer(clean, padding="max_length", truncation=True, return_tensors="pt",
                                       max_length=self.model.config.text_config.max_position_embeddings)
        return QueryEncoding(clean, enc["input_ids"], enc["attention_mask"])

    def preparer(self) -> OwlPrepare:
        return OwlPrepare(self.processor.image_processor)

    collate = staticmethod(owl_collate)

    def forward(self, inputs: dict[str, torch.Tensor], text: QueryEncoding | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw model call: returns (logits (B, P, C), pred_boxes (B, P, 4))."""
        b = inputs["pixel_values"].shape[0]
        ids, mask = self._text_dev if text is None else (text.input_ids.to(self.device),
                                                          text.attention_mask.to(self.device))
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.model(input_ids=ids.repeat(b, 1), attention_mask=mask.repeat(b, 1),
                             pixel_values=inputs["pixel_values"])
        return out.logits, out.pred_boxes

    def postprocess(self, logits: torch.Tensor, pred_boxes: torch.Tensor, sizes: Sequence[tuple[int, int]],
                    text: QueryEncoding | None = None) -> list[Boxes]:
        """Scores, labels, pixel boxes, threshold and per-category NMS (module docstring)."""
        best, label = logits.float().sigmoid().max(-1)
        xyxy = box_convert(pred_boxes.float(), "cxcywh", "xyxy")
        out = []
        for i, (h, w) in enumerate(sizes):
            k = best[i] >= self.spec.box_threshold
            out.append(finish_boxes(xyxy[i][k] * float(max(h, w)), best[i][k], label[i][k], (h, w), self.spec))
        return out

    def detect(self, inputs: dict[str, torch.Tensor], sizes: Sequence[tuple[int, int]],
               text: QueryEncoding | None = None) -> list[Boxes]:
        """Boxes per image; ``sizes`` = (H, W) of each original image."""
        return self.postprocess(*self.forward(inputs, text), sizes, text)

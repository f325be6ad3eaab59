"""The SAM 3 pre-labeler (``prelabeler.backend: sam3``): one model, text prompt in, every matching
instance's box, mask and score out, no separate detector.

SAM 3 is Meta's "Segment Anything with Concepts" (Carion et al., 2025, arXiv:2511.16719), run
through ``transformers`` (``Sam3Model`` + ``Sam3Processor``,
https://huggingface.co/docs/transformers/model_doc/sam3) from a local ``save_pretrained``
directory whose sha256 (:func:`labelloop.prelabel.backends.loading.sha256_path`) the config names
(``prelabeler.sam3``, :class:`labelloop.workspace.config.Sam3Spec`). Weights are never
downloaded: ``facebook/sam3`` is gated on the Hub; save it once with ``save_pretrained``.

Per batch of B images (:meth:`Sam3PreLabeler.run_batch`):

1. the processor's resize (a square of ``image_processor.size``, 1008 px for ``facebook/sam3``,
   bilinear, ImageNet-normalized: ``pixel_values`` (B, 3, S, S) float32) runs in the DataLoader
   workers of :mod:`~labelloop.prelabel.backends.pipeline`;
2. ``Sam3Model.get_vision_features`` runs **once** on the B images;
3. for each category, ``Sam3Model(vision_embeds=..., text_embeds=...)`` runs on those features
   with the category's prompt (its text features computed once, at load), giving ``pred_logits``
   (B, Q), ``presence_logits`` (B, 1), ``pred_boxes`` (B, Q, 4) normalized xyxy and
   ``pred_masks`` (B, Q, h, w) mask logits;
4. post-processing as ``Sam3Processor.post_process_instance_segmentation`` (score =
   ``sigmoid(pred_logits) * sigmoid(presence_logits)``, kept when > ``score_threshold``; box =
   ``pred_boxes * (W, H, W, H)``, xyxy float pixels of the EXIF-corrected image, which the resize
   maps linearly onto the square input; mask = ``sigmoid(pred_masks)`` bilinearly upsampled
   (``align_corners=False``) to (H, W), foreground where > ``mask_threshold``), with boxes clipped
   to the image, boxes narrower or lower than
   :data:`~labelloop.prelabel.backends.detection.MIN_BOX_SIDE` dropped and per-category NMS
   (``torchvision.ops.nms`` at ``nms_iou``) **before** the masks are upsampled, so only kept
   instances pay for a full-size mask; then the best ``max_detections`` per image;
5. masks of categories with ``masks: true`` become COCO RLE
   (:func:`labelloop.geometry.masks.encode_rle`) on the CPU; the other categories get boxes only.

Autocast: ``prelabeler.dtype`` through :func:`~labelloop.prelabel.backends.runtime.autocast_dtype`
(``auto`` = bfloat16 on CUDA, none = float32 on CPU). Streaming from files, batches, pinned
memory, out-of-memory halving and the ``(index, detections | error)`` contract are those of
:class:`~labelloop.prelabel.backends.foundation.FoundationPreLabeler`, which this class extends.

Identity without loading anything: ``checkpoint_sha256`` = ``prelabeler.sam3.sha256``;
``model_id`` = ``model_id_for("sam3", checkpoint_sha256, settings)``, settings = per category its
name, prompt and whether it gets masks, ``score_threshold``, ``mask_threshold``, ``nms_iou``,
``max_detections`` and the compute dtype. The path, batch size, workers and routing thresholds are
not part of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.ops import nms

from labelloop.geometry.masks import encode_rle
from labelloop.prelabel.backends.detection import MIN_BOX_SIDE, load_pretrained
from labelloop.prelabel.backends.foundation import FoundationPreLabeler, _dtype_name
from labelloop.prelabel.backends.loading import resolve_path
from labelloop.prelabel.backends.pipeline import Prepare
from labelloop.prelabel.backends.runtime import OomHalving, autocast, autocast_dtype, resolve_device
from labelloop.prelabel.protocol import Detection, image_level_tags, model_id_for
from labelloop.workspace.config import ProjectConfig, Sam3Spec

__all__ = ["KIND", "MASK_CHUNK", "Instances", "Sam3PreLabeler", "Sam3Prepare", "Sam3Runner", "sam3_collate"]

KIND = "sam3"
#: Full-size masks are upsampled this many at a time (bounds the (N, H, W) float32 buffer).
MASK_CHUNK = 16


class Sam3Prepare:
    """Worker side: RGB PIL image -> ``pixel_values`` (3, S, S) float32, the processor's own
    resize to its square ``size`` and normalization (picklable: holds the image processor only)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, rgb) -> torch.Tensor:
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"][0]


def sam3_collate(tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack (3, S, S) tensors into ``{"pixel_values": (B, 3, S, S)}`` (all the same size: no padding)."""
    return {"pixel_values": torch.stack(list(tensors))}


@dataclass
class Instances:
    """One image's kept instances of all categories, best first: ``xyxy`` (N, 4) float32 pixels,
    ``scores`` (N,) in [0, 1], ``labels`` (N,) int64 category indices, ``mask_logits`` (N, h, w)
    the model's low-resolution mask logits (float32)."""

    xyxy: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    mask_logits: torch.Tensor


class Sam3Runner:
    """A loaded ``transformers.Sam3Model`` + ``Sam3Processor`` with the category prompts encoded.

    Args:
        spec: ``prelabeler.sam3``.
        path: the resolved ``save_pretrained`` directory.
        prompts: text prompt per category, in category order.
        device: where the model runs; ``amp``: autocast dtype or None (float32).

    Raises:
        CheckpointError: the directory is missing, hashes differently (the message names the path
            and the expected sha256), is not a ``sam3`` model or lacks weights.
        ValueError: a prompt is empty or longer than the text encoder's positions (32 tokens).
    """

    kind = KIND

    def __init__(self, spec: Sam3Spec, path: Path, prompts: Sequence[str], device: torch.device,
                 amp: torch.dtype | None):
        from transformers import Sam3Model as HfSam3Model  # optional heavy dependency (the gpu extra)
        from transformers import Sam3Processor

        self.spec, self.device, self.amp = spec, device, amp
        self.model, self.processor = load_pretrained(self.kind, "a SAM 3", spec, path, HfSam3Model, Sam3Processor,
                                                     role="pre-labeler")
        self.model.to(device).eval()
        self.text = [self.encode_prompt(p) for p in prompts]

    def encode_prompt(self, prompt: str) -> tuple[Any, torch.Tensor]:
        """``(text features, attention_mask (1, 32) int64)`` of one prompt, tokenized as
        ``Sam3Processor(text=...)`` does (padded to 32 tokens) and encoded once by
        ``Sam3Model.get_text_features`` (``pooler_output``: (1, 32, hidden) projected features)."""
        clean = prompt.strip()
        if not clean:
            raise ValueError("SAM 3 prompt must be non-empty")
        n_pos = self.model.config.text_config.max_position_embeddings
        n_tok = len(self.processor.tokenizer(clean)["input_ids"])
        if n_tok > n_pos:
            raise ValueError(f"SAM 3 prompt {clean!r} takes {n_tok} tokens, more than the text encoder's {n_pos}")
        enc = self.processor(text=[clean], return_tensors="pt")
        ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
        with torch.inference_mode(), autocast(self.device, self.amp):
            feats = self.model.get_text_features(input_ids=ids, attention_mask=mask, return_dict=True)
        return feats, mask

    def preparer(self) -> Sam3Prepare:
        return Sam3Prepare(self.processor.image_processor)

    collate = staticmethod(sam3_collate)

    def vision(self, pixel_values: torch.Tensor):
        """``Sam3Model.get_vision_features`` of (B, 3, S, S) device pixels (the backbone + FPN,
        once per image whatever the number of categories)."""
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model.get_vision_features(pixel_values=pixel_values)

    def prompt(self, vision_embeds, category: int, batch: int):
        """The DETR encoder/decoder and mask decoder for category ``category`` on precomputed
        ``vision_embeds`` of ``batch`` images; returns the ``Sam3ImageSegmentationOutput``."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        feats, mask = self.text[category]
        text = BaseModelOutputWithPooling(pooler_output=feats.pooler_output.expand(batch, -1, -1))
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.model(vision_embeds=vision_embeds, text_embeds=text, attention_mask=mask.expand(batch, -1))

    def postprocess(self, outputs, label: int, sizes: Sequence[tuple[int, int]]) -> list[Instances]:
        """One category's kept instances per image: score > ``score_threshold``, boxes scaled to
        each ``sizes[i]`` = (H, W) and clipped, slivers dropped, NMS at ``nms_iou`` (see the module
        docstring). Mask logits stay at the model's resolution."""
        scores = outputs.pred_logits.float().sigmoid()
        if outputs.presence_logits is not None:
            scores = scores * outputs.presence_logits.float().sigmoid()
        out = []
        for i, (h, w) in enumerate(sizes):
            keep = scores[i] > self.spec.score_threshold
            s = scores[i][keep]
            b = outputs.pred_boxes[i][keep].float() * torch.tensor([w, h, w, h], dtype=torch.float32, device=s.device)
            b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], 1)
            ok = (b[:, 2] - b[:, 0] >= MIN_BOX_SIDE) & (b[:, 3] - b[:, 1] >= MIN_BOX_SIDE)
            m = outputs.pred_masks[i][keep][ok].float()
            b, s = b[ok], s[ok]
            order = nms(b, s, self.spec.nms_iou)
            out.append(Instances(b[order], s[order], torch.full_like(order, label), m[order]))
        return out

    def detect(self, pixel_values: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[Instances]:
        """Every category's instances per image, best ``max_detections`` first (vision features
        computed once for the batch)."""
        vision = self.vision(pixel_values)
        per_cat = [self.postprocess(self.prompt(vision, c, len(sizes)), c, sizes) for c in range(len(self.text))]
        out = []
        for i in range(len(sizes)):
            parts = [per_cat[c][i] for c in range(len(self.text))]
            scores = torch.cat([p.scores for p in parts])
            order = scores.argsort(descending=True, stable=True)[: self.spec.max_detections]
            out.append(Instances(torch.cat([p.xyxy for p in parts])[order], scores[order],
                                 torch.cat([p.labels for p in parts])[order],
                                 torch.cat([p.mask_logits for p in parts])[order]))
        return out

    def masks(self, mask_logits: torch.Tensor, size: tuple[int, int]) -> list[str]:
        """COCO RLE JSON per mask: ``sigmoid`` of the (N, h, w) logits, bilinearly upsampled to
        ``size`` = (H, W), foreground where > ``mask_threshold``."""
        out: list[str] = []
        for start in range(0, len(mask_logits), MASK_CHUNK):
            prob = F.interpolate(mask_logits[start:start + MASK_CHUNK].sigmoid()[None], size=size, mode="bilinear",
                                 align_corners=False)[0]
            binary = (prob > self.spec.mask_threshold).to("cpu", non_blocking=False).numpy()
            out.extend(encode_rle(m) for m in binary)
        return out


class Sam3PreLabeler(FoundationPreLabeler):
    """:class:`~labelloop.prelabel.protocol.PreLabeler` backed by SAM 3 (``prelabeler.backend: sam3``).

    ``predict(images)`` and ``predict_files(paths, image_ids)`` (streaming, batches of
    ``batch_size``, out-of-memory halving) are inherited from
    :class:`~labelloop.prelabel.backends.foundation.FoundationPreLabeler`; each returns
    :class:`~labelloop.prelabel.protocol.Detection` lists (``bbox`` xyxy float pixels of the
    EXIF-corrected image, ``score`` in [0, 1], ``mask`` COCO RLE JSON of (H, W) for ``masks: true``
    categories else None, ``prompt``), sorted by category order then score.

    Args:
        config: the project config (``prelabeler.backend: sam3``).
        root: directory relative model paths resolve against (the workspace root).

    Raises:
        ValueError: ``prelabeler.sam3`` is not configured, or a category's ``detector`` is not ``sam3``.
        labelloop.prelabel.backends.runtime.DeviceError: the device / dtype cannot be used here.
    (Checkpoint errors are raised by :meth:`load`, on first use.)
    """

    def __init__(self, config: ProjectConfig, root: str | os.PathLike | None = None):
        p = config.prelabeler
        if p.sam3 is None:
            raise ValueError("prelabeler.backend sam3 needs prelabeler.sam3 (path, sha256)")
        for c in config.located_categories():  # tag categories need no detector of their own
            if c.detector != KIND:
                raise ValueError(f"category {c.name!r}: detector {c.detector!r} is not {KIND!r} "
                                 f"(with backend sam3 every category uses it)")
        self.settings_cfg, self.root, self.spec = p, Path(root or ".").resolve(), p.sam3
        # tag categories (image-level labels) run their prompt too, after the located ones and without
        # masks; their boxes collapse into one image-level pre-label (prelabel.protocol.image_level_tags)
        self.categories = [(c.name, (c.prompt or c.name), c.masks) for c in config.located_categories()]
        self.categories += [(c.name, (c.prompt or c.name), False) for c in config.categories
                            if c.annotation_level == "tag"]
        self.tag_categories = frozenset(config.tag_categories)
        self.segment = True
        self.backend = KIND
        self.checkpoint_sha256 = p.sam3.sha256
        self.compute_dtype = _dtype_name(p.device, p.dtype)
        settings = {"categories": self.categories, "sam3": p.sam3.model_dump(exclude={"path"}),
                    "dtype": self.compute_dtype}
        self.model_id = model_id_for(self.backend, self.checkpoint_sha256, settings)
        self._models: tuple[Any, Any, Any] | None = None  # (Sam3Runner, None, device) once loaded
        self.halving: OomHalving | None = None
        self.timings: dict[str, float] = {}

    def load(self):
        """Verify and load the checkpoint onto the device (once). Returns (:class:`Sam3Runner`, None).

        Raises:
            CheckpointError: the directory is missing, hashes differently (message: path and
                expected sha256), or cannot be loaded as SAM 3.
        """
        if self._models is None:
            p = self.settings_cfg
            dev = resolve_device(p.device)
            amp = autocast_dtype(dev, p.dtype)
            model = Sam3Runner(self.spec, resolve_path(self.spec.path, self.root), [pr for _, pr, _ in self.categories],
                              dev, amp)
            self._models = (model, None, dev)
            self.halving = OomHalving(p.batch_size, dev)
        return self._models[:2]

    def prepare(self) -> Prepare:
        """The picklable decode/resize/collate object the DataLoader workers run."""
        model, _ = self.load()
        return Prepare(model.preparer(), model.collate)

    def run_batch(self, batch) -> list[list[Detection]]:
        """Detections for every image of a collated :class:`~labelloop.prelabel.backends.pipeline.Batch`
        (on the device), in batch order (module docstring: one vision pass, one prompt pass per category)."""
        model, _ = self.load()
        t0 = time.perf_counter()
        found = model.detect(batch.det["pixel_values"], batch.sizes)
        need_mask = [m for _, _, m in self.categories]
        out = []
        for inst, size in zip(found, batch.sizes):
            labels = inst.labels.cpu().tolist()
            rows = [k for k, lab in enumerate(labels) if need_mask[lab]]
            rles = dict(zip(rows, model.masks(inst.mask_logits[rows], size))) if rows else {}
            dets = []
            for k, (box, s, lab) in enumerate(zip(inst.xyxy.cpu().tolist(), inst.scores.cpu().tolist(), labels)):
                name, prompt, _ = self.categories[lab]
                dets.append(Detection(name, tuple(round(v, 3) for v in box), round(float(s), 6), prompt, rles.get(k)))
            dets.sort(key=lambda d: (self.category_rank(d.category), -d.score))
            out.append(image_level_tags(dets, self.tag_categories))
        self.timings["model_s"] = self.timings.get("model_s", 0.0) + time.perf_counter() - t0
        return out

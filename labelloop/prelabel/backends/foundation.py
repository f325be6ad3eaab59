"""The foundation-model pre-labeler: Grounding DINO (text prompts -> boxes; or OWLv2, or Florence-2,
:mod:`labelloop.prelabel.backends.florence2`) then SAM
(boxes -> masks, only for categories configured with ``masks: true``; or SAM-HQ / SAM 2 through
transformers, :mod:`labelloop.prelabel.backends.sam_hf`), batched on the device.

Identity without loading anything: ``model_id`` and ``checkpoint_sha256`` come from the config
(the sha256 each spec declares, checked when the weights load), so the review, labels and QA
assets and the CLI's staleness check never load GBs of weights just to learn the id.

- ``checkpoint_sha256`` = the detector's sha256 alone, or, with a segmenter,
  ``sha256("<detector sha256>\\n<segmenter sha256>")`` (both are also in the settings hash).
- ``model_id`` = ``model_id_for("<detector kind>+<segmenter kind>", checkpoint_sha256, settings)``
  (``grounding-dino+sam``, ``owlv2+sam2``...; the detector kind alone without a segmenter),
  settings = prompts per category and which need masks, box / text thresholds, NMS IoU, max
  detections, detector input size, segmenter kind, SAM arch (kind ``sam``) and mask threshold,
  and the compute dtype (bf16 autocast changes the numbers). Batch size, workers and routing thresholds are not part of it.

Per batch (see :meth:`FoundationPreLabeler.run_batch`): detector forward on all images; the
segmenter's image encoder only on the images that have a box of a mask category; one decoder call
per image with all its boxes (its embedding: row j of every tensor ``encode`` returned, one
tensor for SAM, several for SAM-HQ and SAM 2); masks to COCO RLE on the CPU. Out-of-memory halves the batch
(:class:`labelloop.prelabel.backends.runtime.OomHalving`).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image

from labelloop.geometry.masks import encode_rle
from labelloop.prelabel.backends.florence2 import Florence2Detector
from labelloop.prelabel.backends.grounding_dino import GroundingDinoDetector
from labelloop.prelabel.backends.loading import resolve_path
from labelloop.prelabel.backends.owlv2 import Owlv2Detector
from labelloop.prelabel.backends.pipeline import Prepare, batch_of_images, image_row, iter_file_batches
from labelloop.prelabel.backends.runtime import OomHalving, autocast_dtype, resolve_device
from labelloop.prelabel.backends.sam import SamSegmenter
from labelloop.prelabel.backends.sam_hf import SEGMENTERS
from labelloop.prelabel.protocol import Detection, image_level_tags, model_id_for
from labelloop.workspace.config import ProjectConfig


def _dtype_name(device: str, dtype: str) -> str:
    """Compute dtype as recorded in the settings hash, resolved without touching CUDA state
    beyond ``torch.cuda.is_available``/bf16 support."""
    amp = autocast_dtype(resolve_device(device), dtype)
    return "float32" if amp is None else str(amp).removeprefix("torch.")


class FoundationPreLabeler:
    """:class:`~labelloop.workspace.config.PreLabeler` backed by Grounding DINO (or OWLv2) +
    SAM (or SAM-HQ / SAM 2).

    Args:
        config: the project config (``prelabeler.backend: foundation``).
        root: directory relative model paths resolve against (the workspace root).

    Raises:
        ValueError: a category's ``detector`` is not the configured detector kind, or a category
            needs masks and no segmenter is configured.
        labelloop.prelabel.backends.runtime.DeviceError: the device / dtype cannot be used here.
    (Checkpoint errors are raised by :meth:`load`, on first use.)
    """

    def __init__(self, config: ProjectConfig, root: str | os.PathLike | None = None):
        p = config.prelabeler
        if p.detector is None:
            raise ValueError("prelabeler.backend foundation needs prelabeler.detector (path, sha256)")
        self.settings_cfg, self.root = p, Path(root or ".").resolve()
        # tag categories (image-level labels) run their prompt too, after the located ones and without
        # masks; their boxes collapse into one image-level pre-label (prelabel.protocol.image_level_tags)
        self.categories = [(c.name, (c.prompt or c.name), c.masks) for c in config.located_categories()]
        self.categories += [(c.name, (c.prompt or c.name), False) for c in config.categories
                            if c.annotation_level == "tag"]
        self.tag_categories = frozenset(config.tag_categories)
        for c in config.located_categories():  # tag categories need no detector of their own
            if c.detector != p.detector.kind:
                raise ValueError(f"category {c.name!r}: detector {c.detector!r} is not the configured detector "
                                 f"{p.detector.kind!r} (with backend foundation every category uses it)")
        if any(m for _, _, m in self.categories) and p.segmenter is None:
            need = [n for n, _, m in self.categories if m]
            raise ValueError(f"categories {need} need masks: configure prelabeler.segmenter (SAM .pth, sha256)")
        self.segment = p.segmenter is not None and any(m for _, _, m in self.categories)
        seg_spec = p.segmenter if self.segment else None  # the segmenter in use
        self.backend = p.detector.kind + (f"+{seg_spec.kind}" if seg_spec is not None else "")
        shas = [p.detector.sha256] + ([seg_spec.sha256] if seg_spec is not None else [])
        self.checkpoint_sha256 = shas[0] if len(shas) == 1 else hashlib.sha256("\n".join(shas).encode()).hexdigest()
        self.compute_dtype = _dtype_name(p.device, p.dtype)
        det = p.detector.model_dump(exclude={"path"})
        seg = seg_spec.settings() if seg_spec is not None else None
        settings = {"categories": self.categories, "detector": det, "segmenter": seg, "dtype": self.compute_dtype}
        self.model_id = model_id_for(self.backend, self.checkpoint_sha256, settings)
        self._models: tuple[Any, Any, Any] | None = None  # (detector, segmenter or None, device) once loaded
        self.halving: OomHalving | None = None
        self.timings: dict[str, float] = {}

    @property
    def device(self) -> str:
        """The resolved device (``cpu``, ``cuda``, ``cuda:N``)."""
        return str(resolve_device(self.settings_cfg.device))

    # ---- loading --------------------------------------------------------------------------
    def load(self):
        """Verify and load the checkpoints onto the device (once). Returns (detector, segmenter|None).

        Raises:
            CheckpointError: a checkpoint is missing, hashes differently or cannot be loaded.
        """
        if self._models is None:
            p = self.settings_cfg
            dev = resolve_device(p.device)
            amp = autocast_dtype(dev, p.dtype)
            Detector = {"owlv2": Owlv2Detector, "florence-2": Florence2Detector}.get(p.detector.kind,
                                                                                    GroundingDinoDetector)
            det = Detector(p.detector, resolve_path(p.detector.path, self.root),
                                        [pr for _, pr, _ in self.categories], dev, amp)
            seg = None
            if self.segment:
                Segmenter = SamSegmenter if p.segmenter.kind == "sam" else SEGMENTERS[p.segmenter.kind]
                seg = Segmenter(p.segmenter, resolve_path(p.segmenter.path, self.root), dev, amp)
            self._models = (det, seg, dev)
            self.halving = OomHalving(p.batch_size, dev)
        return self._models[:2]

    def prepare(self):
        """The picklable decode/resize/collate object the DataLoader workers run."""
        det, seg = self.load()
        return Prepare(det.preparer(), det.collate, seg.preparer() if seg else None, seg.collater() if seg else None)

    # ---- inference ------------------------------------------------------------------------
    def run_batch(self, batch) -> list[list[Detection]]:
        """Detections for every image of a collated :class:`~labelloop.prelabel.backends.pipeline.Batch`
        (already on the device), in batch order."""
        det, seg = self.load()
        t0 = time.perf_counter()
        found = det.detect(batch.det, batch.sizes)
        masks_for: dict[int, dict[int, str]] = {}
        need_mask = torch.tensor([m for _, _, m in self.categories], device=found[0].labels.device) if found else None
        if seg is not None and found:
            assert need_mask is not None  # found
            rows = [i for i, b in enumerate(found) if bool(need_mask[b.labels].any())]
            if rows:
                emb = seg.encode({k: v[rows] for k, v in batch.seg.items()})
                for j, i in enumerate(rows):
                    sel = need_mask[found[i].labels].nonzero().flatten()
                    m = seg.masks(image_row(emb, j), found[i].xyxy[sel], tuple(batch.seg["input_sizes"][i].tolist()), batch.sizes[i])
                    m = m.to("cpu", non_blocking=False).numpy()
                    masks_for[i] = {int(k): encode_rle(m[n]) for n, k in enumerate(sel.tolist())}
        out = []
        for i, b in enumerate(found):
            xyxy, scores, labels = b.xyxy.cpu().tolist(), b.scores.cpu().tolist(), b.labels.cpu().tolist()
            dets = []
            for k, (box, s, lab) in enumerate(zip(xyxy, scores, labels)):
                name, prompt, _ = self.categories[lab]
                dets.append(Detection(name, tuple(round(v, 3) for v in box), round(float(s), 6), prompt,
                                      masks_for.get(i, {}).get(k)))
            dets.sort(key=lambda d: (self.category_rank(d.category), -d.score))
            out.append(image_level_tags(dets, self.tag_categories))
        self.timings["model_s"] = self.timings.get("model_s", 0.0) + time.perf_counter() - t0
        return out

    def category_rank(self, name: str) -> int:
        return [n for n, _, _ in self.categories].index(name)

    def _halved(self, batch) -> Iterator[tuple[int, list[Detection] | BaseException]]:
        for idx, err in batch.errors:
            yield idx, err
        if not len(batch):
            return
        assert self.halving is not None  # loaded
        for piece, result in self.halving.run(batch, self.run_batch, lambda b, k: b.split(k)):
            if isinstance(result, BaseException):
                yield piece.indices[0], result
            else:
                yield from zip(piece.indices, result)

    def predict_files(self, paths: Sequence[str | os.PathLike],
                      image_ids: Sequence[str] | None = None) -> Iterator[tuple[int, list[Detection] | BaseException]]:
        """Stream ``(index into paths, detections)`` in input order; a file that cannot be decoded
        yields its :class:`~labelloop.images.files.ImageError`, an image that runs out of memory alone a
        ``torch.OutOfMemoryError``. Decoding and resizing run in ``num_workers`` DataLoader
        processes with pinned memory on CUDA; batches of ``batch_size`` (halved on OOM).
        ``image_ids``: the sha256 each file must still have; a changed file yields an ImageError."""
        prepare = self.prepare()
        assert self._models is not None and self.halving is not None  # loaded by prepare()
        _, _, dev = self._models
        p = self.settings_cfg
        for batch in iter_file_batches(paths, prepare, self.halving.batch_size, p.num_workers, dev.type == "cuda",
                                       image_ids):
            results = dict(self._halved(batch.to(dev)))
            for idx in sorted(results):
                yield idx, results[idx]

    def predict(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """One detection list per RGB image (boxes in its pixels), in batches of ``batch_size``.

        Raises:
            torch.OutOfMemoryError: an image does not fit on the device even alone.
        """
        prepare = self.prepare()
        assert self._models is not None  # loaded by prepare()
        _, _, dev = self._models
        out: list[list[Detection]] = []
        for start in range(0, len(images), self.settings_cfg.batch_size):
            batch = batch_of_images(images[start:start + self.settings_cfg.batch_size], prepare)
            for _, result in sorted(self._halved(batch.to(dev, non_blocking=False)), key=lambda r: r[0]):
                if isinstance(result, BaseException):
                    raise result
                out.append(result)
        return out

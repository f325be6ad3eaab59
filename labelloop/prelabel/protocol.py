"""The ``PreLabeler`` protocol every backend implements (classical CPU default now; Grounding
DINO + SAM on CUDA later).

A pre-labeler takes decoded, EXIF-transposed RGB images and returns, per image, detections
with ``bbox = (x0, y0, x1, y1)`` in pixels of that image, a score in [0, 1], the category
name from the project ontology, the prompt used, and optionally a COCO RLE mask (JSON text)
of the image's size. ``model_id`` identifies the weights and the inference settings that
change the output; routing thresholds are not part of it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

from PIL import Image

from labelloop.images.files import ImageError, check_image_id, load_rgb


@dataclass(frozen=True)
class Detection:
    """One predicted object. ``bbox``: xyxy float pixels; ``score``: [0, 1]; ``mask``: COCO RLE
    JSON text of the full image (h, w) or ``None``."""

    category: str
    bbox: tuple[float, float, float, float]
    score: float
    prompt: str | None = None
    mask: str | None = None


def image_level_tags(detections: Sequence[Detection], tag_categories: set[str] | frozenset[str]) -> list[Detection]:
    """Collapse the detections of ``level: tag`` categories into one image-level pre-label each.

    The rule (docs/design.md, "Progressive labeling"): a tag category's image-level score is the
    best (highest) box score among the detections of its prompt on that image; no detection of
    the prompt gives no tag pre-label. The one :class:`Detection` kept per tag category carries
    that score, its best box (xyxy pixels, the evidence only: no box label is ever made of it) and
    no mask. Detections of other categories pass through unchanged, in order; the tag pre-labels
    follow them, in order of first appearance.
    """
    out: list[Detection] = []
    best: dict[str, Detection] = {}
    for d in detections:
        if d.category not in tag_categories:
            out.append(d)
        elif d.category not in best or d.score > best[d.category].score:
            best[d.category] = Detection(d.category, d.bbox, d.score, d.prompt, None)
    return out + list(best.values())


@runtime_checkable
class PreLabeler(Protocol):
    """Images in, detections out, with a stable ``model_id``."""

    model_id: str
    checkpoint_sha256: str
    device: str

    def predict(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """``images``: RGB PIL images (EXIF already applied). Returns one list per image."""
        ...


def model_id_for(backend: str, checkpoint_sha256: str, settings: dict) -> str:
    """``<backend>@<12 hex of the weights' sha256>-<8 hex of the settings' sha256>``.

    ``settings`` holds everything that changes the output (prompts, thresholds applied inside
    the model, NMS, input size); canonical JSON (sorted keys) is hashed.
    """
    s = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{backend}@{checkpoint_sha256[:12]}-{s[:8]}"


def iter_predictions(model: PreLabeler, paths: Sequence,
                     image_ids: Sequence[str] | None = None) -> Iterator[tuple[int, list[Detection] | BaseException]]:
    """``(index into paths, detections)`` for every file, in input order.

    A model with ``predict_files(paths, image_ids=None)`` (the batched foundation backend:
    DataLoader workers, batches on the device) streams its own results; otherwise each file is
    decoded here with :func:`labelloop.images.files.load_rgb` and passed alone to ``model.predict``.
    ``image_ids``: the sha256 each file must still have (its raw_images row's image_id), checked
    on the bytes decoded, so a file replaced since raw_images never gets predictions under the
    old identity (a ``predict_files`` without an ``image_ids`` parameter gets the files checked
    here first). A file that cannot be decoded or has changed yields its
    :class:`~labelloop.images.files.ImageError` (the message names the file) instead of raising;
    errors of the model itself propagate.
    """

    ids: list[str | None] = list(image_ids) if image_ids is not None else [None] * len(paths)
    stream = getattr(model, "predict_files", None)
    if callable(stream):
        if image_ids is None or "image_ids" in inspect.signature(stream).parameters:
            yield from (stream(paths, image_ids=image_ids) if image_ids is not None else stream(paths))
            return
        keep = []
        for i, (path, iid) in enumerate(zip(paths, ids)):
            assert iid is not None  # image_ids were given
            try:
                check_image_id(path, iid)
            except ImageError as exc:
                yield i, exc
                continue
            keep.append(i)
        for j, result in stream([paths[i] for i in keep]):
            yield keep[j], result
        return
    for i, (path, iid) in enumerate(zip(paths, ids)):
        try:
            rgb = load_rgb(path, iid)
        except ImageError as exc:
            yield i, exc
            continue
        yield i, model.predict([rgb])[0]

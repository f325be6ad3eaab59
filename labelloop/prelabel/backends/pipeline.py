"""The input pipeline of the foundation pre-labeler: decode and resize in DataLoader workers,
collate into padded batches, pin, copy to the device while the device computes.

A :class:`Prepare` turns one file into an :class:`Item` (EXIF-corrected RGB decoded once by
:func:`labelloop.images.files.load_rgb`, then each model's own resize: the detector's and, when masks
are needed, the segmenter's). A bad file becomes an Item carrying the
:class:`~labelloop.images.files.ImageError` (its message names the file), never an exception in the
worker, so one bad image never stops a batch. ``collate`` (run in the worker too) pads each
model's tensors to the batch and returns a :class:`Batch`; ``Batch.pin_memory`` lets
``torch.utils.data.DataLoader(pin_memory=True)`` pin it so ``Batch.to(device, non_blocking=True)``
overlaps the copy with GPU work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from labelloop.images.files import ImageError, load_rgb


@dataclass
class Item:
    """One prepared image: ``index`` into the input list, ``size`` = (H, W) pixels of the
    EXIF-corrected image, per-model inputs (``det``, ``seg``: whatever the model's ``prepare``
    returns), or ``error`` when the file could not be decoded."""

    index: int
    size: tuple[int, int] = (0, 0)
    det: Any = None
    seg: Any = None
    error: ImageError | None = None


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


def select(obj: Any, rows: Sequence[int]) -> Any:
    """Rows ``rows`` (dim 0) of every tensor / list in a (nested) dict of batch inputs."""
    if isinstance(obj, torch.Tensor):
        return obj[list(rows)] if obj.dim() else obj
    if isinstance(obj, dict):
        return {k: select(v, rows) for k, v in obj.items()}
    if isinstance(obj, list):
        return [obj[i] for i in rows]
    return obj


def image_row(obj: Any, j: int) -> Any:
    """Row ``j`` (dim 0 = image) of every tensor in a (nested) tuple / list / dict of batch
    tensors, keeping the structure: one image's embedding out of a segmenter's ``encode``."""
    return _map_tensors(obj, lambda t: t[j])


@dataclass
class Batch:
    """Collated images: ``indices`` and ``sizes`` ((H, W) each) of the decoded ones, the
    detector's and segmenter's batch inputs (dicts of tensors, dim 0 = image), and
    ``errors`` = (index, ImageError) of the files that failed to decode."""

    indices: list[int]
    sizes: list[tuple[int, int]]
    det: dict = field(default_factory=dict)
    seg: dict | None = None
    errors: list[tuple[int, ImageError]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def rows(self, rows: Sequence[int]) -> "Batch":
        """The sub-batch of images at positions ``rows`` (no errors)."""
        return Batch([self.indices[i] for i in rows], [self.sizes[i] for i in rows], select(self.det, rows),
                     select(self.seg, rows) if self.seg is not None else None, [])

    def split(self, k: int) -> tuple["Batch", "Batch"]:
        """(first ``k`` images, the rest); used by out-of-memory halving."""
        n = len(self)
        return self.rows(range(k)), self.rows(range(k, n))

    def pin_memory(self) -> "Batch":
        """Page-locked copies of the tensors (called by DataLoader(pin_memory=True))."""
        return replace(self, det=_map_tensors(self.det, lambda t: t.pin_memory()),
                       seg=_map_tensors(self.seg, lambda t: t.pin_memory()))

    def to(self, device: torch.device, non_blocking: bool = True) -> "Batch":
        """The batch with its tensors on ``device`` (asynchronous from pinned memory)."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, det=_map_tensors(self.det, move), seg=_map_tensors(self.seg, move))


class Prepare:
    """Decode + per-model preprocessing of one image, and collation; picklable (no model).

    Args:
        det_prepare: ``rgb PIL image -> detector input`` (e.g. the normalized, resized tensor).
        det_collate: ``list of detector inputs -> dict of batch tensors``.
        seg_prepare, seg_collate: the same for the segmenter, or None when no mask is needed.
    """

    def __init__(self, det_prepare, det_collate, seg_prepare=None, seg_collate=None):
        self.det_prepare, self.det_collate = det_prepare, det_collate
        self.seg_prepare, self.seg_collate = seg_prepare, seg_collate

    def item(self, index: int, rgb: Image.Image) -> Item:
        return Item(index, (rgb.height, rgb.width), self.det_prepare(rgb),
                    self.seg_prepare(rgb) if self.seg_prepare else None)

    def __call__(self, items: Sequence[Item]) -> Batch:
        ok = [it for it in items if it.error is None]
        det = self.det_collate([it.det for it in ok]) if ok else {}
        seg = self.seg_collate([it.seg for it in ok]) if ok and self.seg_collate else None
        return Batch([it.index for it in ok], [it.size for it in ok], det, seg,
                     [(it.index, it.error) for it in items if it.error is not None])


class ImageFiles(Dataset):
    """``paths[i]`` -> :class:`Item` (decoded with :func:`~labelloop.images.files.load_rgb`, prepared by ``prepare``);
    with ``image_ids``, each file's sha256 must still be ``image_ids[i]``."""

    def __init__(self, paths: Sequence[str | os.PathLike], prepare: Prepare, image_ids: Sequence[str] | None = None):
        self.paths, self.prepare = list(paths), prepare
        self.image_ids = list(image_ids) if image_ids is not None else [None] * len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        try:
            rgb = load_rgb(self.paths[i], self.image_ids[i])
        except ImageError as exc:
            return Item(i, error=exc)
        return self.prepare.item(i, rgb)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers resize on one core each; the model owns the others


def iter_file_batches(paths: Sequence[str | os.PathLike], prepare: Prepare, batch_size: int,
                      num_workers: int, pin_memory: bool, image_ids: Sequence[str] | None = None) -> Iterator[Batch]:
    """Batches of ``batch_size`` files in input order, decoded by ``num_workers`` processes
    (0 = in this process), pinned when ``pin_memory``. Two batches per worker are prefetched.
    ``image_ids``: the sha256 each file must still have (a changed file becomes an error item)."""
    if not paths:
        return
    workers = min(num_workers, len(paths))
    loader = DataLoader(ImageFiles(paths, prepare, image_ids), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=prepare, pin_memory=pin_memory,
                        worker_init_fn=_worker_init if workers else None,
                        prefetch_factor=2 if workers else None)
    yield from loader


def batch_of_images(images: Sequence[Image.Image], prepare: Prepare) -> Batch:
    """Collate already-decoded RGB images (the :class:`~labelloop.prelabel.protocol.PreLabeler` ``predict`` path)."""
    return prepare([prepare.item(i, im.convert("RGB")) for i, im in enumerate(images)])

"""The training loop: seeded, resumable, with an atomic checkpoint after every epoch.

Layout of a training run's directory ``out``::

    checkpoints/epoch-0003/   the last complete epoch: trainer_state.pt (one ``torch.save`` of the
                              model's and optimizer's state dicts, RNG states, epoch, step, losses;
                              no ``save_pretrained``, which cost 0.25 s a checkpoint, a third of a
                              tiny run's time on a CPU)
    model/                    the final model (save_pretrained + image processor), written last

Each checkpoint is written to ``checkpoints/.tmp-epoch-NNNN-<pid>/`` and renamed into place
(``os.replace``, atomic on one file system), then the previous epoch's directory is removed, so a
crash at any point leaves the last complete epoch; :func:`train_detector` called again on the same
``out`` resumes from it (same order of images, optimizer moments and RNG state), and ``model/``
exists only once every epoch has finished, so a half-trained model is never evaluated or promoted.

The recipe: AdamW (``training.learning_rate``, ``training.weight_decay``), gradient L2-norm
clipping (``training.max_grad_norm``: RT-DETR's recipe clips at 0.1), a constant learning rate,
images shuffled per epoch by ``random.Random(seed + epoch)`` (each image decoded and resized once
per run, in a thread while the first epoch trains, and kept as a uint8 ``(3, S, S)`` tensor for
the later epochs while the cache stays under :data:`CACHE_BYTES`), no augmentation (the release is
small and the candidate must beat the current pre-labeler on the same ontology, not generalise
across datasets); mixed precision (``torch.autocast`` with bfloat16) only on CUDA; float32 on CPU.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from labelloop.training.data import Example, SplitData
from labelloop.training.detector import build_model, coco_to_target, load_rgb, pixel_values, save_model
from labelloop.workspace.config import Training

STATE_FILE = "trainer_state.pt"
#: most bytes of resized uint8 images kept between epochs (3 * S * S each); beyond it, decoded per batch
CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Progress:
    """One optimisation step: ``epoch`` (1-based) of ``epochs``, ``step`` (1-based, within the
    epoch) of ``steps``, ``global_step`` and the step's total DETR loss (float)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    global_step: int
    loss: float


@dataclass(frozen=True)
class TrainResult:
    """A finished run: ``model_dir`` (final ``save_pretrained`` directory), ``resumed_from`` (the
    epoch a crashed run resumed after, or None), per-epoch mean ``losses``, ``device``,
    ``seconds`` of this call and ``images_per_second`` (trained images / seconds in the loop)."""

    model_dir: Path
    resumed_from: int | None
    losses: list[float] = field(default_factory=list)
    device: str = "cpu"
    seconds: float = 0.0
    images_per_second: float = 0.0


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; any other value as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def last_checkpoint(out: Path) -> tuple[int, Path] | None:
    """``(epoch, dir)`` of the last complete epoch checkpoint under ``out/checkpoints``, or None."""
    ckpts = out / "checkpoints"
    done = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("epoch-*") if (p / STATE_FILE).is_file()) \
        if ckpts.is_dir() else []
    return (done[-1], ckpts / f"epoch-{done[-1]:04d}") if done else None


def batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[Example]]:
    """The epoch's batches: ``examples`` shuffled by ``random.Random(seed + epoch)``, cut into
    ``batch_size`` pieces (the last may be smaller)."""
    order = list(examples)
    random.Random(seed + epoch).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class DecodedImages:
    """Resized images of one run, decoded once: :meth:`batch` returns what :func:`make_batch`
    returns (the same float32 values: uint8 / 255), keeping each image's uint8 ``(3, S, S)``
    tensor and target for the next epochs while the cache holds under ``max_bytes``."""

    def __init__(self, image_size: int, device: str, max_bytes: int = CACHE_BYTES) -> None:
        self.image_size, self.device, self.max_bytes = image_size, device, max_bytes
        self._cache: dict[str, tuple[Any, dict]] = {}

    def _one(self, e: Example) -> tuple[Any, dict]:
        import torch

        hit = self._cache.get(str(e.file))
        if hit is not None:
            return hit
        im = load_rgb(e.file).resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        target = coco_to_target(e.bboxes, e.labels, e.width, e.height)
        if (len(self._cache) + 1) * 3 * self.image_size ** 2 <= self.max_bytes:
            self._cache[str(e.file)] = (pixels, target)
        return pixels, target

    def batch(self, batch: list[Example]) -> tuple[Any, list[dict]]:
        """``(pixel_values (B, 3, S, S) float32 in [0, 1], targets)`` on the run's device."""
        import torch

        items = [self._one(e) for e in batch]
        pixels = torch.stack([p for p, _ in items]).to(self.device).float().div_(255.0)
        return pixels, [{k: v.to(self.device) for k, v in t.items()} for _, t in items]


def make_batch(batch: list[Example], image_size: int, device: str) -> tuple[Any, list[dict]]:
    """Decode and resize a batch: ``(pixel_values (B, 3, S, S), targets)`` on ``device``."""
    pixels = pixel_values([load_rgb(e.file) for e in batch], image_size).to(device)
    targets = [{k: v.to(device) for k, v in coco_to_target(e.bboxes, e.labels, e.width, e.height).items()}
               for e in batch]
    return pixels, targets


def train_step(model: Any, optimizer: Any, pixels: Any, targets: list[dict], device: str, max_grad_norm: float) -> float:
    """One forward + backward + AdamW step (autocast bfloat16 on CUDA only); returns the loss."""
    import torch

    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        out = model(pixel_values=pixels, labels=targets)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(out.loss.detach())


def _write_checkpoint(out: Path, epoch: int, model: Any, optimizer: Any, state: dict) -> Path:
    import torch

    ckpts = out / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    tmp = ckpts / f".tmp-epoch-{epoch:04d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save({**state, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "random_state": random.getstate()}, tmp / STATE_FILE)
    final = ckpts / f"epoch-{epoch:04d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in ckpts.glob("epoch-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def train_detector(split: SplitData, settings: Training, out: str | os.PathLike, base: str | os.PathLike | None = None,
                   progress: Callable[[Progress], None] | None = None) -> TrainResult:
    """Fine-tune RT-DETRv2 on ``split`` (a release's train split) into ``out``.

    Args:
        split: :func:`labelloop.training.data.read_split` of the train split; its ``categories``
            become the class head (re-initialised: :mod:`labelloop.training.detector`).
        settings: the ``training:`` section (epochs, batch_size, learning_rate, seed, device, ...).
        out: the run directory (module docstring); an unfinished run there is resumed.
        base: the checkpoint to start from (default ``settings.base_checkpoint``; None = random
            weights of ``settings.architecture``).
        progress: called after every step with a :class:`Progress`; an exception it raises stops
            the run (the last complete epoch stays resumable).

    Returns:
        a :class:`TrainResult`; ``model_dir`` is ``out/model``.

    Raises:
        ReleaseDataError: the split has no image (``labelloop.training.data``).
        CheckpointError: ``base`` is not an RT-DETRv2 checkpoint.
    """
    import torch

    from labelloop.training.data import ReleaseDataError

    if not split.examples:
        raise ReleaseDataError(f"{split.source}: the split has no image to train on")
    out = Path(out)
    device = resolve_device(settings.device)
    resume = last_checkpoint(out)
    start = base if base is not None else settings.base_checkpoint
    model = build_model(split.categories, start, settings.architecture, settings.seed).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses: list[float] = []
    first_epoch, global_step = 1, 0
    if resume is not None:
        state = torch.load(resume[1] / STATE_FILE, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["random_state"])
        first_epoch, global_step, losses = state["epoch"] + 1, state["global_step"], list(state["losses"])
    else:
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
    steps = math.ceil(len(split.examples) / settings.batch_size)
    images, t0 = 0, time.perf_counter()
    decoded = DecodedImages(settings.image_size, device)
    for epoch in range(first_epoch, settings.epochs + 1):
        epoch_losses = []
        plan = batches(split.examples, settings.batch_size, settings.seed, epoch)
        with ThreadPoolExecutor(max_workers=1) as pool:  # decodes the next batch while this one trains
            pending = pool.submit(decoded.batch, plan[0])
            for i, batch in enumerate(plan, start=1):
                pixels, targets = pending.result()
                if i < len(plan):
                    pending = pool.submit(decoded.batch, plan[i])
                loss = train_step(model, optimizer, pixels, targets, device, settings.max_grad_norm)
                global_step += 1
                images += len(batch)
                epoch_losses.append(loss)
                if progress is not None:
                    progress(Progress(epoch, settings.epochs, i, steps, global_step, loss))
        losses.append(sum(epoch_losses) / len(epoch_losses))
        _write_checkpoint(out, epoch, model, optimizer,
                          {"epoch": epoch, "global_step": global_step, "losses": losses})
    seconds = time.perf_counter() - t0
    final = out / "model"
    if not final.is_dir():
        tmp = out / f".tmp-model-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        save_model(model.eval(), tmp, settings.image_size)
        os.replace(tmp, final)
    return TrainResult(model_dir=final, resumed_from=resume[0] if resume else None, losses=losses, device=device,
                       seconds=seconds, images_per_second=images / seconds if seconds > 0 else 0.0)

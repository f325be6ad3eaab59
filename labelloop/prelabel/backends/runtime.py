"""Where and how the foundation models run: device, autocast dtype, out-of-memory halving.

- Device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available, else CPU). Asking for
  CUDA on a machine without it is an error, never a silent fallback.
- Autocast (``torch.autocast``): ``auto`` = bfloat16 on CUDA, none (float32) on CPU; ``bfloat16``
  also works on CPU (slower there, used by the tests to run the same autocast path);
  ``float16`` only on CUDA. Weights stay float32; autocast casts per op.
- Out of memory: :class:`OomHalving` runs a batch; on ``torch.OutOfMemoryError`` (which
  ``torch.cuda.OutOfMemoryError`` is) it frees the cache, halves the batch and retries the same
  images, and keeps the smaller size for later batches. An image that does not fit alone is
  reported as failed, not retried forever.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sized, TypeVar

import torch

S = TypeVar("S", bound=Sized)  # a batch: len() and a split
R = TypeVar("R")


def _slice(xs: Any, k: int) -> tuple[Any, Any]:
    return xs[:k], xs[k:]


class DeviceError(RuntimeError):
    """The configured device or dtype cannot be used on this machine."""


def resolve_device(name: str) -> torch.device:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``auto`` -> :class:`torch.device`.

    Raises:
        DeviceError: CUDA requested but ``torch.cuda.is_available()`` is False, the index is out
            of range, or the name is not a device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"prelabeler.device {name!r} is not a device ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"prelabeler.device is {name!r} but CUDA is not available here "
                              f"(torch {torch.__version__}); set device: cpu or run on a GPU machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"prelabeler.device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"prelabeler.device {name!r}: only cpu, cuda, cuda:N and auto are supported")
    return dev


def autocast_dtype(device: torch.device, dtype: str) -> torch.dtype | None:
    """The autocast dtype for ``prelabeler.dtype`` on ``device``; None = no autocast (float32).

    Raises:
        DeviceError: ``float16`` on CPU, or ``bfloat16`` on a GPU without bf16 support.
    """
    if dtype == "float32" or (dtype == "auto" and device.type == "cpu"):
        return None
    if dtype in ("auto", "bfloat16"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            if dtype == "auto":
                return torch.float16
            raise DeviceError(f"dtype bfloat16: {torch.cuda.get_device_name(device)} does not support it")
        return torch.bfloat16
    if dtype == "float16":
        if device.type != "cuda":
            raise DeviceError("dtype float16 autocast needs CUDA; use bfloat16 or float32 on CPU")
        return torch.float16
    raise DeviceError(f"unknown dtype {dtype!r}")


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast(device.type, dtype)`` or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_oom(exc: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` (CUDA or CPU allocator)."""
    return isinstance(exc, torch.OutOfMemoryError)


def free_memory(device: torch.device) -> None:
    """Drop references held by the last exception's frames and return cached blocks to CUDA."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass
class OomHalving:
    """Runs batches, halving the batch on out-of-memory and retrying the same items.

    ``batch_size`` is the current limit (starts at the configured size, only shrinks);
    ``events`` records ``(size that failed, new size)`` per halving, for the run's metadata.
    """

    batch_size: int
    device: torch.device
    events: list[tuple[int, int]] = field(default_factory=list)

    def run(self, items: S, fn: Callable[[S], list[R]],
            split: Callable[[S, int], tuple[S, S]] | None = None,
            ) -> Iterator[tuple[S, list[R] | BaseException]]:
        """Run ``fn`` over ``items`` in pieces of at most ``batch_size``.

        Args:
            items: a sliceable batch (``len`` and ``split``).
            fn: computes one result per item of the piece it gets.
            split: ``split(items, k) -> (first k, rest)``; default slices.

        Yields:
            ``(piece, results)`` in order, or ``(piece of one item, exception)`` for an item that
            runs out of memory alone. Other exceptions propagate.
        """
        split = split or _slice
        pending = [items]
        while pending:
            piece = pending.pop(0)
            if len(piece) > self.batch_size:
                head, tail = split(piece, self.batch_size)
                pending[:0] = [head, tail]
                continue
            try:
                out = fn(piece)
            except Exception as exc:  # noqa: BLE001 - only OOM is handled here
                if not is_oom(exc):
                    raise
                del exc
                free_memory(self.device)
                n = len(piece)
                if n == 1:
                    yield piece, torch.OutOfMemoryError(
                        f"out of memory on {self.device} with a single image (batch size 1)")
                    continue
                half = (n + 1) // 2
                self.events.append((n, half))
                self.batch_size = min(self.batch_size, half)
                head, tail = split(piece, half)
                pending[:0] = [head, tail]
                continue
            yield piece, out

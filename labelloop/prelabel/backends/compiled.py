"""``torch.compile`` of a module with a fallback to eager: :class:`CompiledOrEager`.

Used for SAM's image encoder when ``segmenter.compile: true``
(:class:`labelloop.prelabel.backends.sam.SamSegmenter`).

Shapes: the encoder sees a different batch size almost every batch (only the images with a box of
a mask category are encoded, the last batch is short, out-of-memory halving shrinks it), while
everything else (image side, channels, dtype) is fixed. So the module is compiled with
``dynamic=False`` (static shapes: nothing but the batch becomes symbolic) and each input's batch
dimension is marked with ``torch._dynamo.maybe_mark_dynamic``: one graph serves every batch size
>= 2, and batch size 1, which PyTorch always specialises, gets a second one. Two compilations in
all (measured: batch sizes 2, 3, 1, 4, 2 -> 2 graphs, against 4 without the mark), far below
dynamo's recompile limit (8), and no padding (no computation on padded images).

Compilation happens at the first call (and the first batch of 1), not at construction. Inductor
needs a C++ compiler on the CPU (``g++``, or ``$CXX``) and Triton on CUDA. If compiling fails
(no compiler, an unsupported backend, a graph inductor cannot lower), the call is re-run eagerly,
a :class:`CompileFallbackWarning` names the reason, and every later call runs eagerly: slower,
never a failed batch. Out-of-memory errors are not caught (the caller's out-of-memory halving
handles them).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from labelloop.prelabel.backends.runtime import is_oom


class CompileFallbackWarning(RuntimeWarning):
    """``torch.compile`` failed; the module runs eagerly (same results, slower)."""


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its ``__cause__`` chain, outermost first."""
    out = [exc]
    while out[-1].__cause__ is not None and len(out) < 20:
        out.append(out[-1].__cause__)
    return out


def _reason(exc: BaseException) -> str:
    """``ExceptionType: first line`` of the compile error, its innermost cause included
    (inductor wraps the C++ compiler's error in ``BackendCompilerFailed`` / ``InductorError``)."""
    inner = _chain(exc)[-1]
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    if inner is not exc:
        inner_lines = [ln for ln in str(inner).splitlines() if ln.strip()]
        text += f" (caused by {type(inner).__name__}: {inner_lines[0] if inner_lines else ''})"
    return text[:500]


class CompiledOrEager:
    """Calls ``torch.compile(module, dynamic=False)`` on a tensor ``x`` whose dim 0 (batch) is
    marked dynamic; on a compile failure runs ``module`` eagerly from then on.

    Args:
        module: the ``torch.nn.Module`` (already on its device, in eval mode); called as
            ``module(x)``.
        what: names the module in the warning (e.g. ``"SAM image encoder"``).

    Attributes:
        error: None while compiled, else the reason compiling failed (``Type: message``).
    """

    def __init__(self, module: torch.nn.Module, what: str):
        self.module, self.what = module, what
        self.compiled = torch.compile(module, dynamic=False)  # lazy: compiles at the first call
        self.error: str | None = None

    def __call__(self, x: torch.Tensor) -> Any:
        if self.error is None:
            torch._dynamo.maybe_mark_dynamic(x, 0)
            try:
                return self.compiled(x)
            except Exception as exc:  # noqa: BLE001 - any compile failure falls back, OOM excepted
                if any(is_oom(e) for e in _chain(exc)):
                    raise
                self.error = _reason(exc)
                warnings.warn(f"torch.compile of the {self.what} failed, running it eagerly (same results, "
                              f"slower): {self.error}", CompileFallbackWarning, stacklevel=2)
        return self.module(x)

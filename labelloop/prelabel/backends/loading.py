"""Checkpoints on local disk: sha256 identity, verification, and safe loading.

Weights are never fetched at run time. A model spec names a file or directory and its sha256;
:func:`verify_checkpoint` refuses a missing path or a different hash with a
:class:`CheckpointError` naming the expected path and hash (and the hash found).

The hash of a file or of a ``save_pretrained`` directory is
:func:`labelloop.models.hashing.sha256_path` (its module docstring defines it; re-exported here).
``python -m labelloop.prelabel.backends.loading PATH`` prints the hash to put in ``labelloop.yaml``.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path

from labelloop.models.hashing import sha256_path

__all__ = ["CheckpointError", "load_state_dict", "main", "resolve_path", "sha256_path", "verify_checkpoint"]


class CheckpointError(FileNotFoundError):
    """A configured checkpoint is missing, unreadable, of the wrong kind, or not the file
    whose sha256 the config names. The message names the expected path and hash."""


def resolve_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """``path`` itself when absolute (after ``~`` expansion), else ``root / path`` (root defaults
    to the current directory)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root or ".").resolve() / p


def verify_checkpoint(path: str | os.PathLike, sha256: str, what: str, kind: str = "any") -> Path:
    """Check that ``path`` exists (a ``file`` or ``dir`` when ``kind`` says so) and hashes to ``sha256``.

    Args:
        path: the checkpoint file or directory (already resolved).
        sha256: the expected hash (64 lowercase hex).
        what: what the checkpoint is for, used in messages (e.g. ``"detector grounding-dino"``).
        kind: ``"file"``, ``"dir"`` or ``"any"``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: missing, wrong kind, unreadable, or a different sha256; the message
            names ``path`` and the expected ``sha256`` (and the one found).
    """
    path = Path(path)
    expect = f"{what}: expected {'a directory' if kind == 'dir' else 'a file' if kind == 'file' else 'a checkpoint'} " \
             f"at {path} with sha256 {sha256}"
    if not path.exists():
        raise CheckpointError(f"{expect}, but nothing is there (weights are never downloaded at run time: "
                              f"copy the checkpoint there or fix the path in labelloop.yaml)")
    if kind == "file" and not path.is_file():
        raise CheckpointError(f"{expect}, but it is not a file")
    if kind == "dir" and not path.is_dir():
        raise CheckpointError(f"{expect}, but it is not a directory (save the model with save_pretrained)")
    try:
        found = sha256_path(path)
    except OSError as exc:
        raise CheckpointError(f"{expect}, but it cannot be read: {exc}") from None
    if found != sha256:
        raise CheckpointError(f"{expect}, but its sha256 is {found} (a different or damaged checkpoint)")
    return path


def load_state_dict(path: str | os.PathLike, sha256: str, what: str) -> dict:
    """Verify and load a PyTorch ``.pth`` state dict with ``torch.load(weights_only=True)``
    onto the CPU (no pickled code is executed).

    Returns:
        ``{parameter name: torch.Tensor}``; a checkpoint that wraps it as ``{"model": ...}`` or
        ``{"state_dict": ...}`` is unwrapped.

    Raises:
        CheckpointError: see :func:`verify_checkpoint`; or the file is not a loadable state dict.
    """
    import torch  # optional heavy dependency (the gpu extra)

    path = verify_checkpoint(path, sha256, what, kind="file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global: the file holds pickled code
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise CheckpointError(f"{what}: {path} (sha256 {sha256}) holds pickled code"
                              f"{' (' + found.group(1) + ')' if found else ''}, which labelloop never runs: save "
                              "the weights alone (torch.save(model.state_dict(), path))") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError... on a damaged file
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise CheckpointError(f"{what}: {path} (sha256 {sha256}) is not a loadable weights-only "
                              f"PyTorch checkpoint: {type(exc).__name__}: {first}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{what}: {path} (sha256 {sha256}) holds a {type(obj).__name__}, not a state dict of tensors")
    return obj


def main(argv: list[str] | None = None) -> int:
    """``python -m labelloop.prelabel.backends.loading PATH...``: print ``<sha256>  <path>`` per path."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m labelloop.prelabel.backends.loading CHECKPOINT_FILE_OR_DIR...", file=sys.stderr)
        return 2
    for a in args:
        try:
            print(f"{sha256_path(a)}  {a}")
        except OSError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

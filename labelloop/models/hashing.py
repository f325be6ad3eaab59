"""The sha256 that identifies a checkpoint: of a file's bytes, or of a ``save_pretrained`` directory.

Hash of a file: sha256 of its bytes (as ``sha256sum``). Hash of a directory (a Hugging Face
``save_pretrained`` folder): sha256 of the UTF-8 text made of one line per regular file under it,
sorted by POSIX relative path, ``"<relative path>\\0<sha256 of the file>\\n"``; hidden files and
folders (name starting with ``.``) are left out, so a ``.cache``, a ``.git`` or the pull record
``labelloop models pull`` leaves (:data:`labelloop.models.pull.RECORD`) does not change it.

This is the ``sha256`` a model spec names in ``labelloop.yaml`` and the models table records;
``python -m labelloop.prelabel.backends.loading PATH`` prints it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from labelloop.images.files import sha256_file


def checkpoint_files(root: Path) -> list[Path]:
    """The regular files under the directory ``root`` that its hash covers (hidden names left
    out), sorted by POSIX relative path."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 (64 lowercase hex) of a checkpoint file, or of a checkpoint directory as the
    module docstring defines it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        OSError: a file cannot be read.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    listing = hashlib.sha256()
    for f in checkpoint_files(path):
        listing.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return listing.hexdigest()


def size_path(path: str | os.PathLike) -> int:
    """Bytes of a checkpoint file, or the sum over the files a directory's hash covers."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in checkpoint_files(path))

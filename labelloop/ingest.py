"""Copy image files into a workspace batch (the ``ingest`` step before ``raw_images``).

Each file's ``source_path`` is its path relative to the ingested folder (POSIX); the absolute
origin is kept as ``origin_path``. A file whose (source_path, sha256) was ingested before, in
any batch, is a no-op; the same bytes under another path are copied (``raw_images`` then marks
them ``duplicate_of``). Files are copied atomically (temporary name, then rename) and the batch
manifest is appended under the workspace lock, so a crash never leaves a half-copied image
registered.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.images import sha256_file
from labelloop.workspace import Workspace, WorkspaceError, check_batch_name, next_ingest_seq, read_manifest

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass
class IngestResult:
    """What one ``ingest`` did: the batch, files copied, files skipped with their reason."""

    batch: str
    copied: list[str] = field(default_factory=list)
    already_ingested: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def list_image_files(folder: Path) -> list[Path]:
    """Regular files with an image extension under ``folder``, recursively, sorted by relative
    path; hidden files and folders (``.name``) are left out; symlinked folders are not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() \
                    and not p.is_symlink():  # a symlink may point outside the folder: never followed
                out.append(p)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def default_batch_name(ws: Workspace) -> str:
    """``YYYYmmdd-HHMMSS`` (UTC), with ``-2``, ``-3``... when that batch exists."""
    base = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name, n = base, 1
    while ws.manifest_path(name).exists() or (ws.inbox / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def ingest(ws: Workspace, source: str | os.PathLike, batch: str | None = None) -> IngestResult:
    """Copy the image files under ``source`` (a folder, or one file) into ``inbox/<batch>/``.

    Raises:
        WorkspaceError: ``source`` does not exist, or the batch name is invalid.
    """
    src = Path(source).expanduser().resolve()
    if not src.exists():
        raise WorkspaceError(f"{source}: no such file or folder")
    files = [src] if src.is_file() else list_image_files(src)
    base = src.parent if src.is_file() else src
    with ws.lock():
        batch = check_batch_name(batch) if batch is not None else default_batch_name(ws)
        result = IngestResult(batch=batch)
        known = {(r["source_path"], r["sha256"]) for b in ws.batches() for r in read_manifest(ws, b)}
        in_batch = {r["source_path"]: r["sha256"] for r in read_manifest(ws, batch)}
        seq = next_ingest_seq(ws)
        dest_root = ws.batch_dir(batch)
        new_rows = []
        for f in files:
            rel = f.relative_to(base).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                result.skipped.append((rel.encode("utf-8", "backslashreplace").decode(), "file name is not valid UTF-8"))
                continue
            try:
                digest = sha256_file(f)
            except OSError as exc:
                result.skipped.append((str(f), f"unreadable: {exc.strerror or exc}"))
                continue
            if (rel, digest) in known:
                result.already_ingested.append(rel)
                continue
            if rel in in_batch and in_batch[rel] != digest:
                result.skipped.append(
                    (rel, f"batch {batch} already holds different bytes at this source path; ingest into a new batch")
                )
                continue
            dest = dest_root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
            os.close(fd)
            try:
                shutil.copyfile(f, tmp)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            new_rows.append(
                {"source_path": rel, "origin_path": str(f), "ingest_seq": seq, "sha256": digest,
                 "uri": ws.relative(dest)}
            )
            known.add((rel, digest))
            seq += 1
            result.copied.append(rel)
        if new_rows:
            path = ws.manifest_path(batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                for r in new_rows:
                    fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            dest_root.mkdir(parents=True, exist_ok=True)
    return result

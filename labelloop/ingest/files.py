"""Copy image files into a workspace batch (the ``ingest`` step before ``raw_images``).

Each file's ``source_path`` is its path relative to the ingested folder (POSIX); the absolute
origin is kept as ``origin_path``. A file whose (source_path, sha256) was ingested before, in
any batch, is a no-op; the same bytes under another path are copied (``raw_images`` then marks
them ``duplicate_of``). Files are copied atomically (temporary name, then rename) and the batch
manifest is appended under the workspace lock, so a crash never leaves a half-copied image
registered.

Files whose extension is not an image's (:data:`IMAGE_EXTENSIONS`) are left out and counted
(:attr:`IngestResult.not_images`, :meth:`IngestResult.not_image_extensions`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from labelloop.images.files import IN_MEMORY_BYTES, hash_file
from labelloop.store import copy_file, is_remote
from labelloop.workspace.layout import Workspace, WorkspaceError, check_batch_name, next_ingest_seq, read_manifest

# .heic/.heif/.hif (iPhones, Fujifilm cameras) through pillow-heif, .avif through Pillow (labelloop.images.files)
#: The file extensions ingest takes as images (lower case, with the dot).
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                    ".heic", ".heif", ".hif", ".avif"}
#: How a file name without an extension is counted among the files that are not images.
NO_EXTENSION = "(no extension)"


@dataclass
class IngestResult:
    """What one ``ingest`` did: the batch, files copied, files skipped with their reason, and the
    files left out because their extension is not an image's (``not_images``: relative paths,
    sorted; hidden files and folders are not counted)."""

    batch: str
    copied: list[str] = field(default_factory=list)
    already_ingested: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    not_images: list[str] = field(default_factory=list)

    def not_image_extensions(self) -> dict[str, int]:
        """``{extension: files}`` of :attr:`not_images`, most files first, then by extension;
        extensions lower-cased (``".txt"``), :data:`NO_EXTENSION` for a name without one."""
        counts = Counter(extension_of(p) for p in self.not_images)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def not_images_line(self) -> str:
        """``"skipped 3 files that are not images: .txt (2), .xml (1)"``; ``""`` when none."""
        n = len(self.not_images)
        if not n:
            return ""
        exts = ", ".join(f"{e} ({k})" for e, k in self.not_image_extensions().items())
        what = "1 file that is not an image" if n == 1 else f"{n} files that are not images"
        return f"skipped {what}: {exts}"


def extension_of(name: str) -> str:
    """The lower-cased extension of a file name or POSIX path (``".jpg"``), or :data:`NO_EXTENSION`."""
    return os.path.splitext(name.rsplit("/", 1)[-1])[1].lower() or NO_EXTENSION


def relative_name(path, folder) -> str:
    """POSIX path of ``path`` relative to ``folder`` (both local, or both on one object store)."""
    if is_remote(folder):
        base, full = str(folder).rstrip("/") + "/", str(path)
        if not full.startswith(base):
            raise ValueError(f"{full} is not under {base}")
        return full[len(base):]
    full, base = os.fspath(path), os.fspath(folder).rstrip(os.sep)
    if full.startswith(base + os.sep) and os.sep + ".." + os.sep not in full[len(base):] + os.sep:
        return full[len(base) + 1:].replace(os.sep, "/")
    return Path(path).relative_to(folder).as_posix()


def stored_name(name: str) -> str:
    """``name`` as tables and manifests store it: itself when it is valid UTF-8, else with each
    undecodable byte (a surrogate from ``os.fsdecode``) written as ``\\xNN``."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        try:
            return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate os.fsdecode does not make
            return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _list_remote(folder) -> tuple[list, list[str]]:
    """Objects with an image extension under the prefix ``folder`` (a UPath), as UPaths sorted
    by relative key, and the relative keys of the others, sorted; keys with a hidden part
    (``.name``) are left out of both."""
    base = folder.path.rstrip("/")
    out, left_out = [], []
    for key in folder.fs.find(base):
        rel = key[len(base) + 1:]
        parts = rel.split("/")
        if not rel or any(not p or p.startswith(".") for p in parts):
            continue
        if Path(parts[-1]).suffix.lower() in IMAGE_EXTENSIONS:
            out.append((rel, folder.joinpath(*parts)))
        else:
            left_out.append(rel)
    return [p for _, p in sorted(out, key=lambda t: t[0])], sorted(left_out)


def list_image_files(folder: Path) -> list[Path]:
    """Regular files with an image extension under ``folder``, recursively, sorted by relative
    path; hidden files and folders (``.name``) are left out; symlinked folders are not followed.
    ``folder`` may be an object-store prefix (:class:`upath.UPath`): its objects, as UPaths."""
    return _list_files(folder)[0]


def list_not_images(folder: Path) -> list[str]:
    """The relative POSIX paths (as :func:`stored_name` writes them), sorted, of the files that
    :func:`list_image_files` leaves out for their extension: regular files, hidden files and
    folders left out as there; on an object store, the keys."""
    return _list_files(folder)[1]


def _list_files(folder) -> tuple[list[Path], list[str]]:
    """(:func:`list_image_files`, :func:`list_not_images`) of ``folder`` from one listing."""
    if is_remote(folder):
        return _list_remote(folder)
    found: list[tuple[str, str]] = []
    left_out: list[str] = []
    stack = [(os.fspath(folder), "")]
    while stack:  # os.scandir: the entry types come with the listing, no stat per file
        path, prefix = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:  # an unreadable subfolder is left out, as os.walk does
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):  # a symlink may point outside: never followed
                stack.append((e.path, f"{prefix}{e.name}/"))
            elif e.is_file(follow_symlinks=False):
                if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                    found.append((prefix + e.name, e.path))
                else:
                    left_out.append(stored_name(prefix + e.name))
    return [Path(p) for _, p in sorted(found)], sorted(left_out)


def _copy_local(src: Path, dest: Path, data: bytes | None = None) -> None:
    """Copy ``src`` (or write its ``data``, already read) to ``dest`` atomically (temporary file
    in dest's folder, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    try:
        if data is None:
            os.close(fd)
            shutil.copyfile(src, tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    ``source`` may be local or an object-store URL (``s3://bucket/prefix``, read with the
    workspace store's endpoint and credentials), and the inbox may be the workspace folder or
    the S3 store (:mod:`labelloop.store`): local files are uploaded, S3 objects copied; the
    manifest (``.labelloop/ingest/<batch>.jsonl``) stays local either way. Files of a folder
    whose extension is not an image's are not copied; the result lists them (``not_images``).

    Raises:
        WorkspaceError: ``source`` does not exist, the batch name is invalid, or the inbox cannot
            be written (e.g. the store's bucket does not exist); files copied before stay
            unrecorded, and the next ingest copies them again.
    """
    if is_remote(str(source)):
        src = ws.store.locate(str(source).rstrip("/"))
    else:
        src = Path(source).expanduser().resolve()
    if not src.exists():
        raise WorkspaceError(f"{source}: no such file or folder")
    files = [src] if src.is_file() else list_image_files(src)
    not_images = [] if src.is_file() else list_not_images(src)  # a second listing: only names
    base = src.parent if src.is_file() else src
    with ws.lock():
        batch = check_batch_name(batch) if batch is not None else default_batch_name(ws)
        result = IngestResult(batch=batch, not_images=not_images)
        known = {(r["source_path"], r["sha256"]) for b in ws.batches() for r in read_manifest(ws, b)}
        in_batch = {r["source_path"]: r["sha256"] for r in read_manifest(ws, batch)}
        seq = next_ingest_seq(ws)
        dest_root = ws.batch_dir(batch)
        new_rows = []
        for f in files:
            rel = relative_name(f, base)
            if stored_name(rel) != rel:
                result.skipped.append((stored_name(rel), "file name is not valid UTF-8"))
                continue
            try:
                digest, _, data = hash_file(f, keep=0 if is_remote(f) else IN_MEMORY_BYTES)
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
            try:
                if is_remote(dest) or is_remote(f):
                    copy_file(f, dest)  # an object store: one PUT per object, atomic there
                else:
                    _copy_local(f, dest, data)
            except FileNotFoundError as exc:
                if f.exists():  # the source is there: the destination is missing (e.g. no such bucket)
                    raise WorkspaceError(f"cannot store {rel} at {dest}: {exc}") from None
                result.skipped.append((str(f), f"unreadable: {exc}"))  # vanished since it was hashed
                continue
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                # keys 'a.jpg' and 'a.jpg/b.jpg' of an object store: a file where a folder must go.
                # Other errors (a missing bucket, no permission) still stop the ingest.
                result.skipped.append((rel, f"cannot be stored at {dest}: {exc.strerror or exc}"))
                continue
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
            if not is_remote(dest_root):
                dest_root.mkdir(parents=True, exist_ok=True)
    return result

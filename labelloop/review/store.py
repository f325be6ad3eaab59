"""Append-only store of imported reviews, one immutable folder per import.

Layout under the store root (e.g. ``<workspace>/tables/human_labels``)::

    imports/<import_id>/reviews.parquet        REVIEWS rows
    imports/<import_id>/human_labels.parquet   HUMAN_LABELS rows
    imports/<import_id>/rejects.parquet        REJECTS rows
    imports/<import_id>/human_tags.parquet     HUMAN_TAGS rows (image-level tags; absent in older imports)
    imports/.tmp-*/                            an unfinished commit: ignored, removed at the next commit
    .lock                                      serializes commits (filelock)

A commit writes the three files into a temporary folder beside the final one and renames the
folder into place (one ``os.rename``), so a crash leaves either the whole import or nothing
visible. Import folders are never rewritten: imports from different sources (or files) get
different ids (:func:`make_import_id`), and committing an id that exists returns it unchanged.

On an object store (``s3://``, :mod:`labelloop.store`) there is no folder rename: a commit PUTs
the three files (each PUT atomic), then an empty ``imports/<import_id>/_SUCCESS`` marker (the
Hadoop convention) last; only imports with the marker exist, so a crash before it leaves
nothing visible and the next commit of the same id rewrites the same bytes. Commits are
serialized by a local file lock (``lock_path``): one writer machine per store.

What is written: an import with reviews (its rejects included), and also a result with
rejects but no reviews, so a fully rejected file leaves a trace in :meth:`ReviewStore.rejects`
(these rows never affect labels). A result with neither (e.g. everything already imported)
writes nothing.

Current state: the latest *version* of each ``(source, task, tool annotation)`` is the one with
the highest ``updated_at`` (ties: ``review_id``); if it is cancelled, that annotation does not
count. Per image the most recent remaining annotation wins, whoever made it (several annotators
on one image: the last one to save decides; no consensus is attempted). The result depends
only on the set of imported rows, never on the import order.

Double review (``review.double_review_share``, :func:`labelloop.routing.active_learning.assign_reviewers`):
each reviewer's annotation of an image has its own identity (source, task, tool annotation id)
and is stored as its own REVIEWS row with its HUMAN_LABELS rows; neither replaces the other.
Labels (:meth:`ReviewStore.latest_reviews`) use the most recently saved one, as above, while
agreement (:mod:`labelloop.qa.agreement`) reads every reviewer's current annotation from
:meth:`labelloop.review.store.ReviewStore.reviews` and :meth:`labelloop.review.store.ReviewStore.human_labels`, so both count there. Every
version of every annotation stays in the store with its ``updated_at`` (the history).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import pyarrow.parquet as pq
from filelock import FileLock

from labelloop.store import is_remote
from labelloop.tables.parquet import read_rows, to_table, write_table
from labelloop.tables.schemas import (
    HUMAN_LABELS,
    HUMAN_TAGS,
    REJECTS,
    REVIEWS,
    HumanLabelRow,
    HumanTagRow,
    RejectRow,
    ReviewRow,
)
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

_FILES = {"reviews": REVIEWS, "human_labels": HUMAN_LABELS, "rejects": REJECTS, "human_tags": HUMAN_TAGS}
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
SUCCESS = "_SUCCESS"


def make_import_id(source: str, import_sha256: str) -> str:
    """Folder name of the import of one file under one source: ``<slug>-<8 hex of
    sha256(source)>-<16 hex of the file's sha256>``. Different sources never share an id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._-")[:80] or "source"
    return f"{slug}-{hashlib.sha256(source.encode()).hexdigest()[:8]}-{import_sha256[:16]}"


def _ts(value: str | None) -> tuple[dt.datetime, str]:
    """Sort key of an ISO 8601 timestamp (``Z`` or offset; naive = UTC); unparsable ones sort first."""
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        t = t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
        return t.astimezone(dt.timezone.utc), str(value)
    except ValueError:
        return _EPOCH, str(value or "")


def _version_key(r: ReviewRow) -> tuple:
    return _ts(r.get("updated_at")), r.get("review_id") or ""


class ReviewStore:
    """Reviews imported from review tools, stored under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, lock_path: str | os.PathLike | None = None):
        """``root``: a folder, or an object-store prefix (UPath); ``lock_path``: the commit lock
        file (default ``root/.lock``; required local when ``root`` is on an object store)."""
        self.remote = is_remote(root)
        self.root: Path = cast(Path, root) if self.remote else Path(root)  # remote: a UPath (the Path API)
        self.imports_dir = self.root / "imports"
        if self.remote and lock_path is None:
            raise ValueError(f"a review store on {root} needs a local lock_path")
        self.lock_path = str(lock_path) if lock_path is not None else str(self.root / ".lock")

    # ------------------------------------------------------------------ writing

    def commit_import(self, import_id: str, result: dict) -> Path | None:
        """Store the result of :func:`labelloop.review.importer.import_review` atomically.

        Args:
            import_id: folder name, e.g. :func:`make_import_id` (letters, digits, ``._-``).
            result: ``{"reviews", "human_labels", "rejects", ...}`` row lists.

        Returns:
            ``imports/<import_id>``; ``None`` when there was nothing to record (no reviews, no
            rejects). An existing ``imports/<import_id>`` is returned as it is, never rewritten.

        Raises:
            ValueError: an invalid ``import_id``.
            pyarrow.ArrowInvalid / ArrowTypeError: a row does not fit its schema (nothing written).
        """
        if not _ID_RE.fullmatch(import_id):
            raise ValueError(f"invalid import id {import_id!r}: letters, digits, '.', '_', '-' only")
        if not result.get("reviews") and not result.get("rejects"):
            return None
        tables = {name: to_table(result.get(name) or [], schema) for name, schema in _FILES.items()}
        if self.remote:
            return self._commit_remote(import_id, tables)
        self.imports_dir.mkdir(parents=True, exist_ok=True)
        final = self.imports_dir / import_id
        with FileLock(str(self.root / ".lock")):
            self._clean_temps()
            if final.exists():
                return final
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.imports_dir))
            try:
                for name, table in tables.items():
                    path = tmp / f"{name}.parquet"
                    pq.write_table(table, path)
                    with open(path, "rb") as fh:
                        os.fsync(fh.fileno())
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            _fsync_dir(self.imports_dir)
        return final

    def _commit_remote(self, import_id: str, tables: dict):
        final = self.imports_dir / import_id
        Path(self.lock_path).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.lock_path):
            if (final / SUCCESS).is_file():
                return final
            for name, table in tables.items():
                write_table(table, final / f"{name}.parquet")
            (final / SUCCESS).write_bytes(b"")
        return final

    def _clean_temps(self) -> None:
        for p in self.imports_dir.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

    # ------------------------------------------------------------------ reading

    def import_ids(self) -> list[str]:
        """Finished imports, sorted by id (unfinished ``.tmp-*`` folders are not imports)."""
        if not self.imports_dir.is_dir():
            return []
        if self.remote:
            return sorted(p.parent.name for p in self.imports_dir.glob(f"*/{SUCCESS}"))
        return sorted(p.name for p in self.imports_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _read(self, name: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for iid in self.import_ids():
            rows.extend(read_rows(self.imports_dir / iid / f"{name}.parquet", _FILES[name]))
        return rows

    def reviews(self) -> list[ReviewRow]:
        """Every REVIEWS row of every finished import (one per review_id)."""
        out: dict[str, ReviewRow] = {}
        for r in cast(list[ReviewRow], self._read("reviews")):
            out.setdefault(r["review_id"], r)
        return list(out.values())

    def human_labels(self) -> list[HumanLabelRow]:
        """Every HUMAN_LABELS row (all versions, deletion markers included)."""
        return cast(list[HumanLabelRow], self._read("human_labels"))

    def rejects(self) -> list[RejectRow]:
        """The REJECTS rows recorded at import, one per (file, item, reason): a file imported again
        under another import (another run, another source) that rejects the same item again does
        not count it twice."""
        seen: dict[tuple[str, str, str], RejectRow] = {}
        for r in cast(list[RejectRow], self._read("rejects")):
            seen.setdefault((r["file"], r["item"], r["reason"]), r)
        return list(seen.values())

    def source_of_file(self, file: str) -> str | None:
        """The source the reviews of ``file`` (as REVIEWS rows name it) were imported under, or None:
        a file imported once keeps its identity when it is read again, whatever default rule applied."""
        sources = sorted({r["source"] for r in self.reviews() if r["file"] == file})
        return sources[0] if len(sources) == 1 else None

    def known_review_keys(self) -> set[tuple[str, str, str, str]]:
        """``(source, task_id, tool_annotation_id, updated_at)`` of every stored review version."""
        return {(r["source"], r["task_id"], r["tool_annotation_id"], r["updated_at"]) for r in self.reviews()}

    def latest_reviews(self) -> dict[str, ReviewRow]:
        """``image_id -> REVIEWS row``: per image, the most recent current annotation.

        Current = the latest version (``updated_at``, then ``review_id``) of each (source, task,
        tool annotation) when that version is not cancelled. Among those of one image, the highest
        ``updated_at`` (then ``review_id``) wins. Cancelled-only images are absent.
        """
        versions: dict[tuple, ReviewRow] = {}
        for r in self.reviews():
            k = (r["source"], r["task_id"], r["tool_annotation_id"])
            if k not in versions or _version_key(r) > _version_key(versions[k]):
                versions[k] = r
        latest: dict[str, ReviewRow] = {}
        for r in versions.values():
            if r["was_cancelled"]:
                continue
            cur = latest.get(r["image_id"])
            if cur is None or _version_key(r) > _version_key(cur):
                latest[r["image_id"]] = r
        return latest

    def current_human_labels(self) -> list[HumanLabelRow]:
        """HUMAN_LABELS rows of :meth:`latest_reviews` (deletion markers included), sorted by
        image_id then annotation_id."""
        ids = {r["review_id"] for r in self.latest_reviews().values()}
        rows: dict[tuple, HumanLabelRow] = {}
        for h in self.human_labels():
            if h["review_id"] in ids:
                rows.setdefault((h["image_id"], h["annotation_id"]), h)
        return [rows[k] for k in sorted(rows)]


    def human_tags(self) -> list[HumanTagRow]:
        """Every HUMAN_TAGS row (all versions of every review)."""
        return cast(list[HumanTagRow], self._read("human_tags"))

    def current_tags(self) -> dict[str, list[str]]:
        """``image_id -> sorted tag categories`` of :meth:`latest_reviews`: every image whose
        latest review is current appears, with ``[]`` when its reviewer gave no tag (a reviewed
        image is labeled for the tag categories: no tag = the class is absent)."""
        latest = self.latest_reviews()
        ids = {r["review_id"] for r in latest.values()}
        out: dict[str, set[str]] = {i: set() for i in latest}
        for t in self.human_tags():
            if t["review_id"] in ids:
                out[t["image_id"]].add(t["category"])
        return {i: sorted(c) for i, c in sorted(out.items())}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def review_store(ws: Workspace) -> ReviewStore:
    """The review store of a workspace: ``tables/human_labels`` (an S3 store's commits lock a
    local file, :func:`labelloop.workspace.repo.review_store_lock`)."""
    lock = repo.review_store_lock(ws)
    if lock is not None:
        return ReviewStore(repo.human_labels_dir(ws), lock_path=lock)
    return ReviewStore(repo.human_labels_dir(ws))

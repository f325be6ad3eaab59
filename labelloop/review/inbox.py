"""The review inbox (``review_inbox/``): which files in it are review exports, and the source
named for each at import time (``import-review --source``), remembered per file in
``review_inbox/.sources.json`` so re-imports by the sensor keep the same identity.

Symbolic links in the inbox are never followed, as ingest never follows them
(:func:`labelloop.ingest.files.list_image_files`): a link to a file, a link to a folder (and so
every file below it) and a link as the inbox itself are refused, each reported with its reason
(:func:`list_inbox`), and their targets are never opened, so a link cannot import an export from
outside the workspace, nor make every run open ``/etc/passwd``.

What each file was last read as (its sha256, the source and settings it was read under, the
outcome) is kept in ``.labelloop/review_inbox.json`` (:func:`read_ledger`, :func:`write_ledger_entry`),
so :func:`labelloop.review.importer.import_inbox` parses a file again only when that changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from labelloop.store import write_text_atomic
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

REVIEW_SUFFIXES = (".json", ".xml", ".zip")  # Label Studio / COCO JSON, CVAT XML, CVAT or COCO zip
LEDGER_VERSION = 1  # of .labelloop/review_inbox.json


def _path(ws: Workspace) -> Path:
    return ws.review_inbox / ".sources.json"


def remember_source(ws: Workspace, file: Path, source: str) -> None:
    """Record that ``file`` (inside the review inbox) came from ``source``."""
    p = _path(ws)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    data[ws.relative(file)] = source
    write_text_atomic(p, json.dumps(data, indent=1, sort_keys=True))


def source_for(ws: Workspace, file: Path) -> str | None:
    """The source named for ``file`` at import, or None."""
    p = _path(ws)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8")).get(ws.relative(file))
    except (ValueError, OSError):
        return None


class InboxListing(NamedTuple):
    """The review inbox as :func:`list_inbox` finds it: ``files`` (absolute paths, sorted) and
    ``refused`` (one line per symbolic link: ``"<workspace-relative path>: refused: <reason>"``)."""

    files: list[Path]
    refused: list[str]


def _refusal(ws: Workspace, path: Path, what: str) -> str:
    try:
        target = os.readlink(path)  # the link's text only: the target is never opened nor stat'ed
    except OSError:
        target = "?"
    return (f"{_rel(ws, path)}: refused: a symbolic link{what} (-> {target}); links in review_inbox/ are never "
            "followed, as ingest never follows them: copy the export in (labelloop import-review FILE)")


def _rel(ws: Workspace, path: Path) -> str:
    """``path`` relative to the workspace root without resolving links (the link's own name)."""
    return Path(os.path.relpath(os.path.abspath(path), ws.root)).as_posix()


def list_inbox(ws: Workspace) -> InboxListing:
    """The review files of the inbox and the symbolic links refused there.

    Files: every regular ``*.json``, ``*.xml`` and ``*.zip`` below ``review_inbox/`` (Label Studio,
    CVAT, COCO), sorted by path; hidden files and folders (``.name``) are left out. Links are
    never followed (``os.scandir`` without following, ``os.readlink`` for the message): a link
    to a file, a link to a folder (nothing below it is listed) and a linked ``review_inbox/``
    itself are each refused with one line. A subfolder that cannot be read is left out.

    Returns:
        :class:`InboxListing` ``(files: list[Path], refused: list[str])``.
    """
    root = ws.review_inbox
    if os.path.islink(root):
        return InboxListing([], [_refusal(ws, root, " as the review inbox itself")])
    if not root.is_dir():
        return InboxListing([], [])
    files: list[tuple[str, Path]] = []
    refused: list[tuple[str, str]] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            path = Path(e.path)
            if e.is_symlink():
                suffix = os.path.splitext(e.name)[1].lower()
                what = "" if suffix in REVIEW_SUFFIXES else " (a folder, or a file that is no review export)"
                refused.append((e.path, _refusal(ws, path, what)))
            elif e.is_dir(follow_symlinks=False):
                stack.append(path)
            elif e.is_file(follow_symlinks=False) and os.path.splitext(e.name)[1].lower() in REVIEW_SUFFIXES:
                files.append((e.path, path))
    return InboxListing([p for _, p in sorted(files)], [line for _, line in sorted(refused)])


def inbox_files(ws: Workspace) -> list[Path]:
    """Every regular ``*.json``, ``*.xml`` and ``*.zip`` under the review inbox (Label Studio, CVAT,
    COCO), sorted by path; hidden files and symbolic links left out (:func:`list_inbox`)."""
    return list_inbox(ws).files


def link_in_inbox(ws: Workspace, path: Path) -> str | None:
    """Why ``path`` may not be read as a review-inbox file, or None.

    A path below ``review_inbox/`` (taken as written, links not resolved) is refused when it, a
    folder between it and the inbox, or the inbox itself is a symbolic link; a path elsewhere
    gives None (an explicit import of a file outside the inbox reads it). Only ``os.lstat`` of the
    path's own components is used: no target is opened.
    """
    full = Path(os.path.abspath(path))
    inbox = Path(os.path.abspath(ws.review_inbox))
    try:
        rel = full.relative_to(inbox)
    except ValueError:
        return None
    current = inbox
    for part in ("",) + rel.parts:
        current = current / part if part else current
        if os.path.islink(current):
            what = "" if current == full else " (a folder above it)"
            return _refusal(ws, current, what)
    return None


# ---- what each file was read as ---------------------------------------------------------------


def read_ledger(ws: Workspace) -> dict[str, dict]:
    """``{workspace-relative path: entry}`` from ``.labelloop/review_inbox.json``
    (:func:`labelloop.workspace.repo.review_inbox_ledger_path`); ``{}`` when it is missing, of
    another version, or unreadable (then every file is read again, which is always safe).

    An entry (written by :func:`write_ledger_entry`) holds ``key`` (sha256, source and settings
    the file was read under), ``images`` (the images it was matched against when some of its
    records were rejected, else None), ``import_id`` (its commit in the review store, or None),
    ``error`` (why the file was rejected whole, or None) and ``summary`` (counts).
    """
    p = repo.review_inbox_ledger_path(ws)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return {k: v for k, v in data["files"].items() if isinstance(v, dict)}


def write_ledger_entry(ws: Workspace, rel: str, entry: dict | None, keep: set[str] | None = None) -> None:
    """Set (or, with ``entry`` None, drop) the ledger entry of ``rel``, written atomically
    (:func:`labelloop.store.write_text_atomic`); with ``keep``, entries of other files not in it
    are dropped (files gone from the inbox). The caller holds the workspace lock.

    Raises:
        OSError: the ledger cannot be written.
    """
    files = read_ledger(ws)
    if entry is None:
        files.pop(rel, None)
    else:
        files[rel] = entry
    if keep is not None:
        files = {k: v for k, v in files.items() if k in keep or k == rel}
    p = repo.review_inbox_ledger_path(ws)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(p, json.dumps({"version": LEDGER_VERSION, "files": files}, indent=1, sort_keys=True))

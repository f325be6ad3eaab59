"""The review inbox (``review_inbox/``): which files in it are review exports, and the source
named for each at import time (``import-review --source``), remembered per file in
``review_inbox/.sources.json`` so re-imports by the sensor keep the same identity."""

from __future__ import annotations

import json
from pathlib import Path

from labelloop.store import write_text_atomic
from labelloop.workspace.layout import Workspace


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


def inbox_files(ws: Workspace) -> list[Path]:
    """Every ``*.json``, ``*.xml`` and ``*.zip`` under the review inbox (Label Studio, CVAT, COCO),
    sorted by path (hidden files left out)."""
    if not ws.review_inbox.is_dir():
        return []
    return sorted(p for p in ws.review_inbox.rglob("*") if p.suffix.lower() in (".json", ".xml", ".zip")
                  and p.is_file() and not any(part.startswith(".") for part in p.relative_to(ws.review_inbox).parts))

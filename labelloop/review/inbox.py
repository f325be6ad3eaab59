"""Sources named at import time (``import-review --source``), remembered per inbox file in
``review_inbox/.sources.json`` so re-imports by the sensor keep the same identity."""

from __future__ import annotations

import json
from pathlib import Path

from labelloop.workspace import Workspace


def _path(ws: Workspace) -> Path:
    return ws.review_inbox / ".sources.json"


def remember_source(ws: Workspace, file: Path, source: str) -> None:
    """Record that ``file`` (inside the review inbox) came from ``source``."""
    p = _path(ws)
    data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    data[ws.relative(file)] = source
    tmp = p.with_name(".sources.json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(p)


def source_for(ws: Workspace, file: Path) -> str | None:
    """The source named for ``file`` at import, or None."""
    p = _path(ws)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8")).get(ws.relative(file))
    except (ValueError, OSError):
        return None

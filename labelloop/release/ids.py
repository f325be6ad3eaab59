"""Stable COCO integer ids across releases.

COCO files number images and annotations with integers; a consumer that caches results by
those ids (evaluation runs, error lists, tool imports) needs the same object to keep its id from
one release to the next. labelloop keeps a registry (``tables/release/coco_ids.parquet``,
:data:`labelloop.tables.schemas.COCO_IDS`) and never reuses an id:

- an image keeps the id it got when first released (key: its image_id);
- an annotation keeps the id of its *identity*: a model label's own label_id; a reviewer's
  ``accepted`` or ``corrected`` box takes the identity of the model label it came from (the
  label id of its source prediction), so reviewing an auto-accepted box keeps its id while the
  box moves; any other human label (``added``) has its own label_id as identity. When two labels
  of one release claim one identity, the second falls back to its own label_id.

New ids are ``max(every id ever given) + 1`` in a fixed order (images by image_id, annotations by
image then label_id), so the same history gives the same ids in any workspace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from labelloop import tables
from labelloop.review.resolve import label_id as make_label_id
from labelloop.store import is_remote
from labelloop.tables.schemas import COCO_IDS, LabelRow, ReleaseLineageRow

REVIEWED_FROM_MODEL = ("accepted", "corrected")


def identity(label: LabelRow | ReleaseLineageRow) -> str:
    """The identity key of a LABELS row (see the module docstring)."""
    pid = label.get("prediction_id")
    if label.get("origin") == "human" and pid and label.get("action") in REVIEWED_FROM_MODEL:
        return make_label_id("model", pid)
    return label["label_id"]


class CocoIds:
    """The id registry stored at ``path`` (read on construction; :meth:`save` writes it back)."""

    def __init__(self, path: str | Path):
        self.path = path if is_remote(path) else Path(path)
        self.ids: dict[tuple[str, str], int] = {
            (r["kind"], r["key"]): int(r["coco_id"]) for r in tables.read_rows(self.path, COCO_IDS)}
        self.top: dict[str, int] = {}
        self._taken: dict[str, set[int]] = {}
        for (kind, _), v in self.ids.items():
            self.top[kind] = max(self.top.get(kind, 0), v)
            self._taken.setdefault(kind, set()).add(v)
        self.added = 0

    def is_empty(self) -> bool:
        return not self.ids

    def _next(self, kind: str) -> int:
        self.top[kind] = self.top.get(kind, 0) + 1
        return self.top[kind]

    def seed(self, kind: str, key: str, coco_id: int) -> None:
        """Record an id given by an earlier release (registry rebuilt from release files); an id
        already taken by another key is left out."""
        if (kind, key) not in self.ids and coco_id not in self._taken.setdefault(kind, set()):
            self.ids[(kind, key)] = int(coco_id)
            self._taken[kind].add(int(coco_id))
            self.top[kind] = max(self.top.get(kind, 0), int(coco_id))
            self.added += 1

    def image_ids(self, image_ids: list[str]) -> dict[str, int]:
        """``image_id -> COCO id`` for these images, registering new ones in image_id order."""
        for iid in sorted(set(image_ids)):
            if ("image", iid) not in self.ids:
                self.ids[("image", iid)] = self._next("image")
                self.added += 1
        return {iid: self.ids[("image", iid)] for iid in image_ids}

    def annotation_ids(self, labels: Sequence[LabelRow], image_order: dict[str, int]) -> dict[str, int]:
        """``label_id -> COCO annotation id`` for the labels of one release.

        ``image_order``: image_id -> COCO image id (labels are numbered image by image).
        """
        out: dict[str, int] = {}
        used: set[int] = set()
        pending: list[LabelRow] = []
        for lab in sorted(labels, key=lambda d: (image_order.get(d["image_id"], 0), d["label_id"])):
            for key in (identity(lab), lab["label_id"]):
                got = self.ids.get(("annotation", key))
                if got is not None and got not in used:
                    out[lab["label_id"]] = got
                    used.add(got)
                    break
            else:
                pending.append(lab)
        for lab in pending:
            key = identity(lab)
            if ("annotation", key) in self.ids:
                key = lab["label_id"]
            new = self._next("annotation")
            self.ids[("annotation", key)] = new
            self.added += 1
            out[lab["label_id"]] = new
            used.add(new)
        return out

    def save(self) -> None:
        """Write the registry atomically (kind, then id order)."""
        rows = [{"kind": k, "key": key, "coco_id": v} for (k, key), v in self.ids.items()]
        tables.write_rows(sorted(rows, key=lambda r: (r["kind"], r["coco_id"])), COCO_IDS, self.path)

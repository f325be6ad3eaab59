"""Matching a review tool's image reference to one of our IMAGES rows (review imports and gold
sets): by our image_id, by path, by a release file name (image_id prefix), or by a unique file name.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence, cast

from labelloop.formats.labelstudio import image_ref_path
from labelloop.tables.schemas import ImageRow


def _nfc_paths(row: ImageRow) -> ImageRow:
    """``row`` with ``source_path`` and ``uri`` in Unicode NFC, the form references are compared in
    (macOS writes file names decomposed, NFD; most tools and editors compose them, NFC)."""
    out: dict[str, Any] = dict(row)
    for key in ("source_path", "uri"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = unicodedata.normalize("NFC", value)
    return cast(ImageRow, out)


class MatchReject(Exception):
    """The record cannot be imported; the message is the REJECTS reason."""


_HEX = re.compile(r"[0-9a-f]{16,64}")


class ImageIndex:
    """Resolves a task's image reference to one of our IMAGES rows.

    Order: (1) ``data.image_id`` if it is a known image_id; (2) the referenced path
    (:func:`labelloop.formats.labelstudio.reader.image_ref_path`) equal to an ok image's ``source_path`` or
    ``uri``, or ending with ``"/" + uri`` or ``"/" + source_path`` (without ``allow_name``, only a
    source_path that has a folder: a suffix of one component would be a bare file name); (3) a file name whose stem is a hex prefix (at
    least 16 characters) of exactly one image_id (release files are named ``<image_id[:16]>.ext``);
    (4) only when ``allow_name``: the file name, when exactly one image_id has a source_path with
    that name. References and stored paths are compared in Unicode NFC, so a name that differs
    only by normalisation (NFC vs NFD: "café" composed or decomposed) matches. Several image_ids at a step -> ambiguous; none -> unknown. A path with a ``..``
    component is refused before any matching (it could only reach outside the workspace).
    Byte-identical duplicates share an image_id and are one match.
    """

    def __init__(self, images: Sequence[ImageRow]):
        ok = sorted((r for r in images if r.get("status") in (None, "ok")),
                    key=lambda r: (r.get("duplicate_of") is not None, r.get("source_path") or ""))
        self.by_id: dict[str | None, ImageRow] = {}  # the rows as stored: what a match returns
        for r in ok:
            self.by_id.setdefault(r["image_id"], r)
        self.ok = [_nfc_paths(r) for r in ok]  # compared in NFC
        self.rejected = {r["image_id"] for r in images if r["image_id"] not in self.by_id}

    def _pick(self, rows: list[ImageRow], ref: str) -> ImageRow | None:
        ids = sorted(cast(set[str], {r["image_id"] for r in rows}))  # ok rows: each has its sha256
        if len(ids) > 1:
            names = ", ".join(f"{self.by_id[i]['source_path']} ({i[:12]})" for i in ids)
            raise MatchReject(f"ambiguous image reference {ref!r}: matches {len(ids)} images: {names}")
        return self.by_id[ids[0]] if ids else None

    def match(self, image_ref: str | None, data_image_id: str | None = None, allow_name: bool = True,
              by_stem: bool = False) -> ImageRow:
        """The IMAGES row a reference points at (``by_stem``: step 5 of the class docstring).
        Raises ``MatchReject`` (``..`` path, ambiguous, unknown)."""
        if not isinstance(data_image_id, str):
            data_image_id = None  # an image_id that is not a string matches nothing
        if image_ref is not None and not isinstance(image_ref, str):
            raise MatchReject(f"image reference {str(image_ref)[:80]} is not a string")
        if data_image_id:
            if data_image_id in self.by_id:
                return self.by_id[data_image_id]
            if data_image_id in self.rejected:
                raise MatchReject(f"image {data_image_id[:12]} was rejected at ingest")
        if not image_ref:
            raise MatchReject("unknown image: the task has no image reference")
        image_ref = unicodedata.normalize("NFC", image_ref)
        path = image_ref_path(image_ref)
        if ".." in path.replace("\\", "/").split("/"):
            raise MatchReject(f"image reference {image_ref!r} has a '..' path component (it would leave the workspace)")

        def suffix(sp: str | None) -> bool:  # a path suffix; without allow_name never a bare file name
            return bool(sp and (allow_name or "/" in sp) and path.endswith("/" + sp))

        step2 = [
            r
            for r in self.ok
            if path == r.get("source_path") or suffix(r.get("source_path")) or path == r.get("uri")
            or image_ref == r.get("uri") or path.endswith("/" + (r.get("uri") or "\0"))
        ]
        hit = self._pick(step2, image_ref)
        name = path.rsplit("/", 1)[-1]
        stem = name.rsplit(".", 1)[0].lower()
        if hit is None and _HEX.fullmatch(stem):
            hit = self._pick([r for r in self.ok if cast(str, r["image_id"]).startswith(stem)], image_ref)  # ok rows
        if hit is None and allow_name:
            hit = self._pick([r for r in self.ok if (r.get("source_path") or "").rsplit("/", 1)[-1] == name], image_ref)
        if hit is None and by_stem:
            hit = self._pick([r for r in self.ok
                              if (r.get("source_path") or "").rsplit("/", 1)[-1].rsplit(".", 1)[0] == name], image_ref)
        if hit is None:
            how = ("id, path, file name or file stem" if by_stem else "id, path or file name" if allow_name
                   else "id or path (bare file names are not matched here)")
            raise MatchReject(f"unknown image {image_ref!r}: no ok image in the workspace has that {how}")
        return hit

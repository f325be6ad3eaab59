"""One reader for every review file dropped in the review inbox: Label Studio JSON / JSON-MIN,
CVAT for images 1.1 XML (or CVAT's export zip holding ``annotations.xml``), COCO JSON (or a zip
holding one ``*.json``).

The format is read from the content, not the name: XML -> CVAT; a JSON list -> Label Studio; a
JSON object with ``images`` and ``annotations`` -> COCO. The size is checked before anything
is read (a zip's members by their declared uncompressed size too), so a 1 GB file is refused
with a clear message instead of exhausting memory. Whatever is wrong with the file as a whole
raises :class:`labelloop.formats.labelstudio.reader.ExportFormatError` (message: the file and the problem);
problems of single tasks / images are carried on their records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zipfile
from pathlib import Path

from labelloop.formats import labelstudio
from labelloop.formats.coco import reader as coco_import
from labelloop.formats.cvat import reader as cvat_import
from labelloop.formats.cvat.writer import CvatFormatError
from labelloop.formats.labelstudio import ExportFormatError, ExportTooLarge, check_size

FORMATS = ("label-studio", "cvat", "coco")


def _from_zip(path: Path, max_bytes: int | None) -> tuple[bytes, str]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ExportFormatError(f"{path}: not a valid zip file ({exc})") from None
    with zf:
        names = [i for i in zf.infolist() if not i.is_dir()]
        xml = [i for i in names if i.filename.rsplit("/", 1)[-1] == "annotations.xml"]
        js = [i for i in names if i.filename.lower().endswith(".json")]
        pick = xml or js
        if len(pick) != 1:
            raise ExportFormatError(f"{path}: a review zip must hold one annotations.xml (CVAT) or one *.json "
                                    f"(COCO); found {[i.filename for i in pick] or 'neither'}")
        info = pick[0]
        if max_bytes is not None and info.file_size > max_bytes:
            raise ExportTooLarge(f"{path}: {info.filename} unpacks to {info.file_size / 2**20:.1f} MiB, over the "
                                 f"{max_bytes / 2**20:.1f} MiB limit for a review export (review.max_export_mb)")
        with zf.open(info) as fh:
            data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
        if max_bytes is not None and len(data) > max_bytes:
            raise ExportTooLarge(f"{path}: {info.filename} unpacks to more than the {max_bytes / 2**20:.1f} MiB limit")
        return data, info.filename


def read_review_file(path: str | os.PathLike, *, max_bytes: int | None = labelstudio.DEFAULT_MAX_EXPORT_BYTES,
                     keypoints: dict[str, list[str]] | None = None, inbox: Path | None = None) -> dict:
    """Read and parse one review file.

    Args:
        path: the file (``.json``, ``.xml`` or ``.zip``).
        max_bytes: size limit (``review.max_export_mb``); ``None`` for none.
        keypoints: ``{category: [keypoint names]}`` (CVAT skeletons, COCO keypoints).
        inbox: the review inbox (Label Studio's default source uses the subfolder).

    A CVAT XML without ``<updated>`` / ``<dumped>`` (e.g. written by datumaro) and a COCO file
    without ``info.date_created`` take the file's modification time (UTC) as their version time;
    ``labelloop import-review`` keeps the export's own mtime when it copies it into the inbox.

    Returns:
        ``{"format": "label-studio" | "cvat" | "coco", "records": [...], "default_source": str}``.

    Raises:
        ExportFormatError (ExportTooLarge): the file as a whole is not a review export, or too large.
        OSError: the file cannot be read.
    """
    path = Path(path)
    check_size(path, max_bytes)
    if zipfile.is_zipfile(path):
        data, member = _from_zip(path, max_bytes)
        where = f"{path}!{member}"
    else:
        data, where = path.read_bytes(), str(path)
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat()
    if head == b"<":
        try:
            records, meta = cvat_import.parse_cvat(data, where=where, keypoints=keypoints, updated_at=mtime)
        except CvatFormatError as exc:
            raise ExportFormatError(str(exc)) from None
        for r in records:
            r["item"] = f"image {r['task_id']} ({r['tool_annotation_id'].replace('-', ' ')})"
        return {"format": "cvat", "records": records, "default_source": cvat_import.default_source(meta, path.stem)}
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ExportFormatError(f"{where}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"{where}: not valid JSON (nor XML) ({exc})") from None
    if coco_import.looks_like_coco(obj):
        try:
            records = coco_import.parse_coco_review(obj, where=where, fallback_time=mtime, keypoints=keypoints)
        except coco_import.CocoFormatError as exc:
            raise ExportFormatError(str(exc)) from None
        for r in records:
            r.setdefault("item", f"image {r['task_id']}" if r.get("tool_annotation_id") else r["task_id"])
        return {"format": "coco", "records": records, "default_source": coco_import.default_source(path)}
    if isinstance(obj, dict):
        raise ExportFormatError(f"{where}: a JSON object without 'images' and 'annotations' is neither a COCO file "
                                "nor a Label Studio export (a list of tasks)")
    try:
        records = labelstudio.parse_export(obj)
    except ExportFormatError as exc:
        raise ExportFormatError(f"{where}: {exc}") from None
    return {"format": "label-studio", "records": records,
            "default_source": labelstudio.default_source(records, path, inbox)}

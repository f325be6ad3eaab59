"""Shared helpers for the review-inbox tests: a workspace holding the three fixture photos, a real
CVAT-shaped export (datumaro 1.13.12's file, as CVAT gives it back), zips of it damaged byte by
byte, and large Label Studio exports made by repeating the real 1.23.2 tasks with new ids."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

from support.helpers import FIXTURES, cli, ls_fixtures

DATUMARO_XML = FIXTURES / "cvat-datumaro-1.13.12" / "datumaro_export" / "default.xml"
CATS = ["person", "face", "cat"]
PHOTOS = {"astronaut.png": (512, 512), "chelsea.png": (451, 300), "coffee.png": (600, 400)}
DUMPED = "2026-11-29T12:00:00+00:00"


def cvat_export_bytes(task_id: int = 7) -> bytes:
    """datumaro's CVAT for images 1.1 file as CVAT exports it: the task numbered, an owner and a
    dump time in ``<meta>`` (datumaro writes neither). Three images: boxes, a polygon, a mask."""
    text = DATUMARO_XML.read_text(encoding="utf-8")
    text = text.replace("<id></id>", f"<id>{task_id}</id><owner><username>reviewer</username></owner>", 1)
    text = text.replace("</task>\n  </meta>", f"</task>\n    <dumped>{DUMPED}</dumped>\n  </meta>", 1)
    assert f"<id>{task_id}</id>" in text and "<dumped>" in text
    return text.encode("utf-8")


def cvat_zip_bytes(method: int = zipfile.ZIP_STORED, task_id: int = 7) -> bytes:
    """CVAT's export zip: one ``annotations.xml`` member (stored or deflated)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("annotations.xml", cvat_export_bytes(task_id))
    return buf.getvalue()


def _offsets(data: bytes) -> tuple[int, int]:
    """(start of the first member's data, start of its central directory entry)."""
    assert data[:4] == b"PK\x03\x04"
    name_len, extra_len = struct.unpack_from("<HH", data, 26)
    cd = data.index(b"PK\x01\x02")
    return 30 + name_len + extra_len, cd


DAMAGE = ("crc", "deflate", "encrypted", "method", "size_smaller", "size_larger")


def damaged_cvat_zip(kind: str) -> bytes:
    """A real CVAT zip (see :func:`cvat_zip_bytes`) damaged one way (:data:`DAMAGE`):

    - ``crc``: a byte of a stored member's data flipped (the CRC-32 no longer matches);
    - ``deflate``: bytes of a deflated member's stream overwritten (a corrupt deflate stream);
    - ``encrypted``: general-purpose flag bit 0x1 set in the local and central headers;
    - ``method``: compression method 99 in both headers (a method zipfile does not implement);
    - ``size_smaller`` / ``size_larger``: the central directory's uncompressed size patched.
    """
    stored = kind not in ("deflate",)
    data = bytearray(cvat_zip_bytes(zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED))
    start, cd = _offsets(bytes(data))
    size = struct.unpack_from("<I", data, cd + 24)[0]
    if kind == "crc":
        data[start + 200] ^= 0x20
    elif kind == "deflate":
        data[start + 3:start + 19] = b"\xff" * 16
    elif kind == "encrypted":
        struct.pack_into("<H", data, 6, struct.unpack_from("<H", data, 6)[0] | 0x1)
        struct.pack_into("<H", data, cd + 8, struct.unpack_from("<H", data, cd + 8)[0] | 0x1)
    elif kind == "method":
        struct.pack_into("<H", data, 8, 99)
        struct.pack_into("<H", data, cd + 10, 99)
    elif kind == "size_smaller":
        struct.pack_into("<I", data, cd + 24, size // 2)
    elif kind == "size_larger":
        struct.pack_into("<I", data, cd + 24, size * 2)
    else:
        raise ValueError(kind)
    return bytes(data)


def photo_rows(batch: str = "b1") -> list[dict]:
    """IMAGES rows of the three fixture photos as ``inbox/<batch>/photos/<name>`` (ingested from a
    folder holding ``photos/``): the names the CVAT file and the Label Studio exports use."""
    import skimage

    sk = Path(skimage.__file__).parent / "data"
    rows = []
    for seq, (name, (w, h)) in enumerate(PHOTOS.items()):
        raw = (sk / name).read_bytes()
        rows.append({"image_id": hashlib.sha256(raw).hexdigest(), "uri": f"inbox/{batch}/photos/{name}",
                     "batch": batch, "source_path": f"photos/{name}", "ingest_seq": seq, "width": w, "height": h,
                     "format": "PNG", "mode": "RGB", "bytes": len(raw), "status": "ok"})
    return rows


def review_workspace(template: Path, dest: Path):
    """A copy of ``template`` (a workspace made by :func:`make_template`) at ``dest``, as a
    :class:`~labelloop.workspace.layout.Workspace`."""
    from labelloop.workspace.layout import Workspace

    shutil.copytree(template, dest, symlinks=True)
    return Workspace.at(dest)


def make_template(root: Path) -> Path:
    """``labelloop init`` at ``root`` with the three fixture photos' IMAGES rows (no pipeline run)."""
    from labelloop import tables
    from labelloop.tables.schemas import IMAGES
    from labelloop.workspace import repo
    from labelloop.workspace.layout import Workspace

    cli(root, "init")
    ws = Workspace.at(root)
    tables.write_rows(photo_rows(), IMAGES, repo.images_path(ws, "b1"))
    return root


def repeated_ls_export(n_tasks: int, *, indent: int | None = None) -> bytes:
    """A Label Studio JSON export of ``n_tasks`` tasks: the real export's tasks repeated, each copy
    with new task, annotation and prediction ids (the same images and regions)."""
    tasks = json.loads((ls_fixtures() / "export_json.json").read_text(encoding="utf-8"))
    out = []
    for i in range(n_tasks):
        t = copy.deepcopy(tasks[i % len(tasks)])
        t["id"] = t["inner_id"] = 1000 + i
        for j, ann in enumerate(t["annotations"]):
            ann["id"] = 100000 + i * 10 + j
            ann["task"] = t["id"]
        out.append(t)
    return json.dumps(out, indent=indent).encode("utf-8")

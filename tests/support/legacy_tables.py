"""Tables as older labelloop versions wrote them (for the upgrade tests)."""

from __future__ import annotations

from pathlib import Path

import imagehash
import pyarrow as pa
import pyarrow.parquet as pq

from labelloop.images.files import load_rgb
from labelloop.tables.schemas import IMAGES


def legacy_phash(path) -> str:
    """The hash tables written before 2026-11-29 hold: imagehash.phash of the full image."""
    return str(imagehash.phash(load_rgb(path)))


def as_legacy_table(path: Path) -> None:
    """Rewrite a raw_images table as labelloop wrote it before the hash had a method column."""
    t = pq.read_table(path)
    rows = t.to_pylist()
    for r in rows:
        if r["phash"]:
            r["phash"] = legacy_phash(Path(r["origin_path"]))
    schema = pa.schema([f for f in IMAGES if f.name != "phash_method"])
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema), path)

"""Atomic Parquet tables.

Every write goes to a temporary file in the destination folder and is renamed into place
(``os.replace``, atomic on POSIX), so a reader sees the old table or the new one, never half
of one, and a crash leaves finished files intact. Chunked writers add one part file per chunk
(``part-00000.parquet`` ...), so a crashed run keeps its finished chunks.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq


def to_table(rows: Sequence[dict] | Iterable[dict], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from row dicts; missing keys become null.

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: a value does not fit its column type.
    """
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` atomically (temporary file, fsync, rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_rows(rows: Iterable[dict], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """Shorthand for ``write_table(to_table(rows, schema), path)``."""
    return write_table(to_table(rows, schema), path)


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read one Parquet file, or every ``*.parquet`` under a folder (sorted by name).

    A missing path gives an empty table of ``schema``; temporary files are ignored.
    Columns are cast to ``schema`` so older files with fewer columns still read.
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith(".tmp-"))
    else:
        files = []
    if not files:
        return schema.empty_table()
    parts = []
    for f in files:
        t = pq.read_table(f)
        cols = [t.column(n) if n in t.column_names else pa.nulls(len(t), schema.field(n).type) for n in schema.names]
        parts.append(pa.table(cols, schema=schema))
    return pa.concat_tables(parts)


def read_rows(path: str | os.PathLike, schema: pa.Schema) -> list[dict]:
    """Rows of :func:`read_table` as dicts."""
    return read_table(path, schema).to_pylist()

"""Atomic Parquet tables.

Every write goes to a temporary file in the destination folder and is renamed into place
(``os.replace``, atomic on POSIX), so a reader sees the old table or the new one, never half
of one, and a crash leaves finished files intact. Chunked writers add one part file per chunk
(``part-00000.parquet`` ...), so a crashed run keeps its finished chunks.

Paths may also be object-store paths (:class:`upath.UPath` on ``s3://...``, see
:mod:`labelloop.store`): there a write is one PUT of the finished file, which S3 makes atomic
(readers see the old object or the new one), and reads go through fsspec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping, cast

import pyarrow as pa
import pyarrow.parquet as pq

from labelloop import store as _store


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from row dicts; missing keys become null.

    Raises:
        pyarrow.ArrowInvalid / ArrowTypeError: a value does not fit its column type.
    """
    rows = list(rows)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` atomically (:func:`labelloop.store.write_bytes_atomic`: a
    temporary file, fsync, rename; one PUT on an object store). Returns the path.

    Raises:
        OSError: the write failed; a full disk says which file (errno ENOSPC, ``filename`` set).
    """
    _store.failure_point("table-write", path)
    _store.write_bytes_atomic(path, lambda fh: pq.write_table(table, fh))
    return cast(Path, path) if _store.is_remote(path) else Path(path)


def write_rows(rows: Iterable[Mapping[str, Any]], schema: pa.Schema, path: str | os.PathLike) -> Path:
    """Shorthand for ``write_table(to_table(rows, schema), path)``."""
    return write_table(to_table(rows, schema), path)


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read one Parquet file, or every ``*.parquet`` under a folder (sorted by name).

    A missing path gives an empty table of ``schema``; temporary files are ignored.
    Columns are cast to ``schema`` so older files with fewer columns still read.
    """
    where = cast(Path, path) if _store.is_remote(path) else Path(path)  # remote: a UPath (the Path API)
    if where.is_file():
        files = [where]
    elif where.is_dir():
        files = sorted(p for p in where.rglob("*.parquet") if not p.name.startswith(".tmp-"))
    else:
        files = []
    if not files:
        return schema.empty_table()
    parts = []
    for f in files:
        t = read_parquet(f)
        cols = [t.column(n) if n in t.column_names else pa.nulls(len(t), schema.field(n).type) for n in schema.names]
        parts.append(pa.table(cols, schema=schema))
    return pa.concat_tables(parts)


def read_rows(path: str | os.PathLike, schema: pa.Schema) -> list[dict[str, Any]]:
    """Rows of :func:`read_table` as dicts."""
    return read_table(path, schema).to_pylist()


def read_parquet(path, columns: list[str] | None = None) -> pa.Table:
    """``pq.read_table`` of one file, local or on an object store (``columns``: a subset)."""
    if _store.is_remote(path):
        with _store.open_binary(path) as fh:
            return pq.read_table(fh, columns=columns)
    return pq.read_table(path, columns=columns)


def read_schema(path) -> pa.Schema:
    """``pq.read_schema`` of one file, local or on an object store (reads only the footer)."""
    if _store.is_remote(path):
        with _store.open_binary(path) as fh:
            return pq.read_schema(fh)
    return pq.read_schema(path)

"""Content-addressed tar shards: many small files stored as a few large ones (WebDataset layout).

DVC hashes, caches and uploads per file, so a release of 100k small images costs 100k cache
entries and 100k remote objects. Packed into shards of ``target_bytes`` (default 256 MiB), the
same bytes are a few hundred files. Each shard is a POSIX tar (``ustar``, uncompressed: images
are already compressed, and uncompressed members can be read at an offset) named
``<prefix>-<sha256[:16]>.tar`` after its own bytes, so equal content gives equal names and a
shard that did not change between releases is neither re-hashed nor re-uploaded by DVC.

``index.parquet`` beside the shards lists every member: ``name`` (the path it had, POSIX),
``shard`` (file name), ``offset`` (byte offset of the member's data in the shard), ``size``
(bytes), ``sha256`` (of the member's bytes). Members are in name order within a shard.

Reading (training code): stream a shard with ``tarfile`` or the ``webdataset`` package
(``webdataset.WebDataset(["shards/train-....tar", ...])`` yields one sample per member
basename); or random access: ``f.seek(offset); f.read(size)`` with the index row
(:func:`read_member`).

Stability across releases: :func:`write_shards` given the previous index keeps every old shard
whose members are all still wanted (same name, same bytes) and packs only the rest, so adding a
batch adds new shards and leaves the old ones byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

INDEX = "index.parquet"
INDEX_SCHEMA = pa.schema([("name", pa.string()), ("shard", pa.string()), ("offset", pa.int64()),
                          ("size", pa.int64()), ("sha256", pa.string())])


class ShardError(ValueError):
    """A member name that cannot be stored, or a shard whose bytes differ from its index."""


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, 0, 0o644, "", ""  # no timestamps: same bytes
    return info


def _pack(members: list[tuple[str, bytes, str]], dest: Path, prefix: str) -> list[dict]:
    """Write one shard of ``(name, data, sha256)`` members; returns their index rows."""
    buf = io.BytesIO()
    rows = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, digest in members:
            tar.addfile(_member_info(name, len(data)), io.BytesIO(data))
            rows.append({"name": name, "offset": buf.tell() - len(data) - (-len(data) % 512), "size": len(data),
                         "sha256": digest})
    body = buf.getvalue()
    shard = f"{prefix}-{hashlib.sha256(body).hexdigest()[:16]}.tar"
    tmp = dest / f".tmp-{shard}"
    tmp.write_bytes(body)
    os.replace(tmp, dest / shard)
    for r in rows:
        r["shard"] = shard
    return rows


def write_shards(files: dict[str, Path], dest: Path, prefix: str = "shard", target_bytes: int = 256 << 20,
                 previous: Path | None = None) -> list[dict]:
    """Pack ``files`` (``name -> path``; name is the member path, POSIX, relative, <= 100 chars)
    into tar shards of about ``target_bytes`` under ``dest`` and write ``dest/index.parquet``.

    ``previous``: a shard folder of an earlier release; its shards whose members are all in
    ``files`` with the same bytes are hard-linked (else copied) into ``dest`` unchanged. A
    previous shard that is missing or whose bytes no longer match its name is not reused (its
    members are packed again from ``files``); an unreadable previous index is ignored.
    Returns the index rows (see the module docstring), sorted by name.

    Raises:
        ShardError: a name that is absolute, has ``..``, ``.`` or empty parts, a backslash or NUL, or
            is longer than ustar allows.
        OSError: a file cannot be read or the shard cannot be written.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        parts = name.split("/")
        if (name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name or "\0" in name
                or len(name.encode()) > 100):  # '', '.' parts: 'a//b', './a' would alias 'a/b', 'a' in a tar
            raise ShardError(f"{name!r}: a shard member name must be relative, without '..', '.' or empty parts "
                             "or backslashes, at most 100 bytes")
    rows: list[dict] = []
    todo = dict(files)
    if previous is not None and (Path(previous) / INDEX).is_file():
        try:  # the previous release only saves work: a damaged index means packing everything again
            old = pq.read_table(Path(previous) / INDEX, schema=INDEX_SCHEMA).to_pylist()
        except (OSError, ValueError, pa.ArrowException):
            old = []
        by_shard: dict[str, list[dict]] = {}
        for r in old:
            by_shard.setdefault(r["shard"], []).append(r)
        for shard, members in sorted(by_shard.items()):
            if _intact(Path(previous), shard) and all(m["name"] in todo and os.path.getsize(todo[m["name"]]) == m["size"]
                   and _sha256(todo[m["name"]]) == m["sha256"] for m in members):
                src, out = Path(previous) / shard, dest / shard
                if not out.exists():
                    try:
                        os.link(src, out)
                    except OSError:
                        out.write_bytes(src.read_bytes())
                rows += members
                for m in members:
                    del todo[m["name"]]
    batch: list[tuple[str, bytes, str]] = []
    size = 0
    for name in sorted(todo):
        data = Path(todo[name]).read_bytes()
        batch.append((name, data, hashlib.sha256(data).hexdigest()))
        size += len(data) + 1024
        if size >= target_bytes:
            rows += _pack(batch, dest, prefix)
            batch, size = [], 0
    if batch:
        rows += _pack(batch, dest, prefix)
    rows.sort(key=lambda r: r["name"])
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_SCHEMA), dest / INDEX)
    return rows


def _intact(folder: Path, shard: str | None) -> bool:
    """Whether ``folder/shard`` exists and its bytes still hash to the sha256 prefix in its name."""
    if not shard or "/" in shard or "\\" in shard or not shard.endswith(".tar") or not (folder / shard).is_file():
        return False
    digest = hashlib.sha256()
    with open(folder / shard, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return shard[:-4].rsplit("-", 1)[-1] == digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_index(folder: Path) -> list[dict]:
    """The index rows of a shard folder (``folder/index.parquet``)."""
    return pq.read_table(Path(folder) / INDEX).to_pylist()


def read_member(folder: Path, row: dict) -> bytes:
    """The bytes of one member (an index row), read at its offset and checked against its sha256.

    Raises:
        ShardError: the bytes differ from the index, or the row names a shard outside
            ``folder`` or a negative offset / size (names the shard and member).
        OSError: the shard cannot be read (e.g. missing).
    """
    shard = str(row.get("shard") or "")
    if not shard or "/" in shard or "\\" in shard or shard in (".", ".."):
        raise ShardError(f"{shard!r}: member {row.get('name')} names a shard outside {folder}")
    if not (isinstance(row.get("offset"), int) and isinstance(row.get("size"), int)
            and row["offset"] >= 0 and row["size"] >= 0):
        raise ShardError(f"{shard}: member {row.get('name')} has offset {row.get('offset')!r} / size "
                         f"{row.get('size')!r}, not byte counts")
    with open(Path(folder) / row["shard"], "rb") as f:
        f.seek(row["offset"])
        data = f.read(row["size"])
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise ShardError(f"{row['shard']}: member {row['name']} does not match the index (sha256 differs)")
    return data

"""Perceptual hashes of images: definition, versions, Hamming distance, duplicate groups.

Hash (method :data:`PHASH_METHOD`): ``imagehash.phash`` (64 bits: 2-D DCT-II of a 32x32
greyscale image, its top-left 8x8 coefficients against their median; Zauner 2010,
"Implementation and Benchmarking of Perceptual Image Hash Functions") of a 32x32 thumbnail of the
displayed image (first frame, EXIF-transposed, alpha on white, ITU-R 601-2 luma). The thumbnail:
an integer reduction by ``k`` = :func:`hash_reduction` of the stored size (JPEG: libjpeg's DCT
scaling through Pillow's ``Image.draft``, the mechanism of ``Image.thumbnail``; other formats:
``Image.reduce(k)``, k x k box means, after a full decode), then Pillow's antialiased bilinear
resample to :data:`HASH_INPUT_SIDE` square. Written as 16 hex digits (``str`` of the hash);
rows carry the method in ``phash_method``.

Why not the full image: ``imagehash.phash`` resamples it to 32x32 with Lanczos, which cost about
as much as decoding it, and a hash cannot use detail a 32x32 thumbnail loses. Measured on 500
photo variants 250-1,200 px (``python benchmarks/phash_quality.py --images 500 --pairs 250``,
the images of ``benchmarks/pipeline_scale.py``'s generator): against the legacy
full-resolution hash 78% of hashes are identical, the rest differ by 2-4 bits (mean 0.5); every
one of 250 97%-size JPEG recompressions stays within 4 bits of its source (mean 0.34, legacy 0.14;
both at most 4), and pairs within 4 bits among the 124,750 others are as many as before (102 vs
101, crops of one source photo). A 64-pixel floor (k up to twice as large) was 12% faster to
ingest but put those recompressions at a mean 0.92 bits and moved the bundled stereo pair
motorcycle_left / motorcycle_right from 4 bits (a near duplicate) to 6.

Versions: ``phash_method`` None (tables written before 2026-11-29) = :data:`LEGACY_METHOD`,
``imagehash.phash`` of the full-resolution image. :func:`upgrade_hashes` re-hashes such rows from
their stored files so that every hash compared by :func:`assign_duplicates` has one definition.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from labelloop.tables.schemas import ImageRow

#: The current hash definition, stored in every IMAGES row's ``phash_method``.
PHASH_METHOD = "imagehash.phash/thumbnail32-v2"
#: The definition of hashes stored before ``phash_method`` existed (a null column).
LEGACY_METHOD = "imagehash.phash/full"
#: Side of the square thumbnail the DCT hash is computed on, pixels.
HASH_INPUT_SIDE = 32
MIN_HASH_SIDE = 128  # shorter side of the image the 32x32 resample starts from, at least


def hash_reduction(width: int, height: int) -> int:
    """The reduction factor k in (8, 4, 2, 1) for a ``width`` x ``height`` image (stored pixels):
    the largest with ``min(width, height) // k >= MIN_HASH_SIDE`` (1 for small images), so the
    32x32 resample starts from at least 128 pixels on the shorter side."""
    for k in (8, 4, 2):
        if min(width, height) // k >= MIN_HASH_SIDE:
            return k
    return 1


def hamming(phash_a: str, phash_b: str) -> int:
    """Number of differing bits of two equal-length hex hashes (as imagehash's ``a - b``).

    Raises:
        ValueError: the lengths differ or a string is not hex.
    """
    if len(phash_a) != len(phash_b):
        raise ValueError(f"hashes of different lengths: {phash_a!r}, {phash_b!r}")
    return (int(phash_a, 16) ^ int(phash_b, 16)).bit_count()


def _popcount64(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(x).astype(np.int64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1, dtype=np.int64)


def upgrade_hashes(rows: list[ImageRow], rehash: Callable[[ImageRow], str]) -> tuple[list[ImageRow], int, list[str]]:
    """Rows (IMAGES dicts) with every ok row's ``phash`` in :data:`PHASH_METHOD`.

    ``rehash(row)`` returns the current-method hash of the row's stored file (e.g.
    ``labelloop.images.files.phash_file`` of its ``uri``) or raises ``OSError`` / ``ValueError`` (a
    missing or unreadable file: ``labelloop.images.files.ImageError`` is a ValueError). Such rows keep
    their legacy hash and method. Returns ``(rows, n_rehashed, problems)``, problems as
    ``"<source_path>: <reason>"``; the input rows are not mutated.
    """
    out: list[ImageRow] = []
    n, problems = 0, []
    for r in rows:
        if r.get("status") != "ok" or not r.get("phash") or r.get("phash_method") == PHASH_METHOD:
            out.append(r)
            continue
        try:
            new: ImageRow = {**r, "phash": rehash(r), "phash_method": PHASH_METHOD}
        except (OSError, ValueError) as exc:
            problems.append(f"{r.get('source_path')}: {exc}")
            out.append(r)
            continue
        out.append(new)
        n += 1
    return out, n, problems


def assign_duplicates(rows: list[ImageRow], prior: list[ImageRow], max_distance: int) -> list[ImageRow]:
    """Copies of ``rows`` (same order) with ``duplicate_of`` and ``near_duplicate_of`` set.

    Rows are IMAGES dicts (image_id, source_path, ingest_seq, status, phash of 16 hex digits);
    ``prior`` holds already-assigned rows of other batches. Rows are processed in ascending
    ``ingest_seq``; "earlier" means a smaller ``ingest_seq``, in ``prior`` or in ``rows``.
    Exact duplicate: an earlier ok row has the same image_id -> ``duplicate_of`` = source_path of
    the earliest one. Otherwise near duplicate: the closest (ties: earliest) earlier ok,
    non-duplicate row within ``max_distance`` phash bits -> ``near_duplicate_of`` = its group
    representative's image_id (its own ``near_duplicate_of``, else its image_id), so groups never
    chain and representatives keep None. Rejected rows get neither. Inputs are not mutated.
    """
    out: list[ImageRow] = [{**r, "duplicate_of": None, "near_duplicate_of": None} for r in rows]
    first: dict[str | None, tuple[int, str]] = {}  # image_id -> (ingest_seq, source_path) of earliest ok
    n = len(prior) + len(rows)
    seqs, hashes, valid = np.zeros(n, np.int64), np.zeros(n, np.uint64), np.zeros(n, bool)
    reps: list[str | None] = [None] * n  # near-duplicate candidates: ok, non-duplicate, hashed

    def add_candidate(i: int, r: ImageRow, rep: str | None) -> None:
        phash = r["phash"]
        assert phash is not None  # callers pass hashed rows only
        seqs[i], hashes[i], valid[i], reps[i] = int(r["ingest_seq"]), int(phash, 16), True, rep

    for i, r in enumerate(prior):
        if r.get("status") != "ok":
            continue
        s = int(r["ingest_seq"])
        if r["image_id"] not in first or s < first[r["image_id"]][0]:
            first[r["image_id"]] = (s, r["source_path"])
        if r.get("duplicate_of") is None and r.get("phash"):
            add_candidate(i, r, r.get("near_duplicate_of") or r["image_id"])
    for k in sorted(range(len(rows)), key=lambda j: int(rows[j]["ingest_seq"])):
        r, s = out[k], int(out[k]["ingest_seq"])
        if r.get("status") != "ok":
            continue
        earliest = first.get(r["image_id"])
        if earliest is not None and earliest[0] < s:
            r["duplicate_of"] = earliest[1]
            continue
        first[r["image_id"]] = (s, r["source_path"])
        phash = r.get("phash")
        if not phash:
            continue
        idx = np.flatnonzero(valid & (seqs < s))
        dist = _popcount64(hashes[idx] ^ np.uint64(int(phash, 16)))
        idx, dist = idx[dist <= max_distance], dist[dist <= max_distance]
        if idx.size:
            r["near_duplicate_of"] = reps[idx[np.lexsort((seqs[idx], dist))[0]]]
        add_candidate(len(prior) + k, r, r["near_duplicate_of"] or r["image_id"])
    return out

"""Leakage-safe train / val / test splits: one split per near-duplicate group, assigned once.

A *group* is a near-duplicate group: an image and the images whose ``near_duplicate_of`` names
it (the group id is the representative's image_id), so near copies of a photo never straddle
train and test. A group's split is assigned the first time the group is released and stored
(``tables/release/splits.parquet``, :data:`labelloop.tables.schemas.SPLIT_ASSIGNMENTS`); later releases
reuse it, so an image never moves between splits unless a re-split is asked for.

New groups are assigned by iterative stratification (Sechidis, Tsoumakas & Vlahavas, "On the
Stratification of Multi-Label Data", ECML PKDD 2011, algorithm 1), started from the counts the
already-assigned groups hold: each split *wants* ``ratio * total - held`` objects of every class;
the class with the fewest unassigned objects is served first, each of its groups going to the
split that wants that class most (ties: the split wanting most images, then train, val, test
order); groups without labels (negatives) then fill the splits by image count. Groups are taken
in sha256(group_id) order, so the result depends only on the data, never on input order.

Every split with a positive ratio gets at least one group once the release holds enough groups
for it (``ceil(1 / smallest positive ratio)``: 10 for 0.8 / 0.1 / 0.1): when the stratification
leaves one empty, the smallest *new* group of the split holding the most groups moves there
(reason ``non_empty``); stored groups never move without ``--resplit``. Ultralytics refuses a
dataset without ``val`` images, and a test split with nothing in it measures nothing, so a
split that stays empty is reported (:func:`empty_splits`) in the release note and warnings.

:func:`balance_report` states, per class, the objects per split, their share, the target ratio
and the *drift* (share - ratio); a release note and the ``dataset_release`` metadata carry it.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path
from typing import Any, cast

from labelloop import tables
from labelloop.tables.schemas import SPLIT_ASSIGNMENTS, ImageRow, SplitAssignmentRow

SPLITS = ("train", "val", "test")


def _order(group_id: str) -> str:
    return hashlib.sha256(group_id.encode()).hexdigest()


def group_of(image: ImageRow) -> str:
    """The near-duplicate group of an IMAGES row: ``near_duplicate_of`` or its own image_id."""
    return image.get("near_duplicate_of") or cast(str, image["image_id"])  # an ok row: it has its sha256


def load_assignments(path: str | Path) -> dict[str, SplitAssignmentRow]:
    """``group_id -> SPLIT_ASSIGNMENTS row`` stored at ``path`` (empty when missing)."""
    return {r["group_id"]: r for r in cast(list[SplitAssignmentRow], tables.read_rows(path, SPLIT_ASSIGNMENTS))}


def save_assignments(path: str | Path, rows: dict[str, SplitAssignmentRow]) -> None:
    """Write every assignment (atomically), ordered by ``seq``."""
    tables.write_rows(sorted(rows.values(), key=lambda r: (r["seq"], r["group_id"])), SPLIT_ASSIGNMENTS, path)


def _check_ratios(ratios: dict[str, float]) -> dict[str, float]:
    r = {s: float(ratios.get(s, 0.0)) for s in SPLITS}
    if any(v < 0 for v in r.values()) or abs(sum(r.values()) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be >= 0 and sum to 1, got {ratios!r}")
    return r


def assign_splits(
    groups: dict[str, dict],
    stored: dict[str, SplitAssignmentRow],
    ratios: dict[str, float],
    resplit: bool = False,
) -> tuple[dict[str, str], dict[str, SplitAssignmentRow]]:
    """Splits of the groups of a release.

    Args:
        groups: ``group_id -> {"images": int, "classes": Counter(category -> objects)}`` for
            every group in the release (``classes`` may be empty: a negative group).
        stored: assignments made before (:func:`load_assignments`), kept as they are.
        ratios: ``{"train", "val", "test"}`` shares summing to 1.
        resplit: assign every group of ``groups`` anew (stored rows for them are replaced;
            stored rows of groups not in this release are kept).

    Returns:
        ``(split_of, rows)``: ``group_id -> split`` for every group of ``groups``, and the
        updated ``group_id -> SPLIT_ASSIGNMENTS row`` mapping (old rows plus new ones).

    Raises:
        ValueError: ratios that are negative or do not sum to 1.
    """
    r = _check_ratios(ratios)
    rows = dict(stored)
    fixed = {g: stored[g]["split"] for g in groups if g in stored and not resplit and stored[g]["split"] in SPLITS}
    new = sorted((g for g in groups if g not in fixed), key=_order)
    totals: Counter = Counter()
    n_images = 0
    for info in groups.values():
        totals.update(info["classes"])
        n_images += info["images"]
    want = {s: {c: r[s] * totals[c] for c in totals} for s in SPLITS}
    want_img = {s: r[s] * n_images for s in SPLITS}
    split_of: dict[str, str] = {}

    def take(g: str, s: str) -> None:
        split_of[g] = s
        for c, k in groups[g]["classes"].items():
            want[s][c] -= k
        want_img[s] -= groups[g]["images"]

    for g, s in fixed.items():
        take(g, s)
    pending = list(new)
    while True:
        remaining: Counter = Counter()
        for g in pending:
            remaining.update({c: k for c, k in groups[g]["classes"].items() if k > 0})
        if not remaining:
            break
        rarest = min(remaining, key=lambda c: (remaining[c], c))
        served = [g for g in pending if groups[g]["classes"].get(rarest, 0) > 0]
        for g in served:
            s = max(SPLITS, key=lambda s: (want[s][rarest], want_img[s], -SPLITS.index(s)))
            take(g, s)
        done = set(served)
        pending = [g for g in pending if g not in done]
    for g in pending:  # negatives
        take(g, max(SPLITS, key=lambda s: (want_img[s], -SPLITS.index(s))))
    moved = _fill_empty(split_of, groups, set(new), r)
    seq = max((int(x["seq"]) for x in rows.values()), default=0)
    for g in new:
        seq += 1
        reason = "non_empty" if g in moved else "resplit" if resplit else "balanced"
        rows[g] = {"group_id": g, "split": split_of[g], "seq": seq, "reason": reason}
    return split_of, rows


def min_groups(ratios: dict[str, float]) -> int:
    """Groups a release needs before every split with a positive ratio is kept non-empty:
    ``ceil(1 / smallest positive ratio)`` (10 for 0.8 / 0.1 / 0.1)."""
    r = _check_ratios(ratios)
    return math.ceil(1.0 / min(v for v in r.values() if v > 0) - 1e-9)


def _fill_empty(split_of: dict[str, str], groups: dict[str, dict], new: set[str], r: dict[str, float]) -> set[str]:
    """Move new groups into empty positive-ratio splits (see the module docstring); returns them."""
    moved: set[str] = set()
    if len(groups) < min_groups(r):
        return moved
    for s in SPLITS:
        members: dict[str, list[str]] = {x: [] for x in SPLITS}
        for g, x in split_of.items():
            members[x].append(g)
        if r[s] <= 0 or members[s]:
            continue
        donors = [x for x in SPLITS if x != s and len(members[x]) > 1 and any(g in new for g in members[x])]
        if not donors:
            continue
        donor = max(donors, key=lambda x: (len(members[x]), -SPLITS.index(x)))
        g = min((g for g in members[donor] if g in new), key=lambda g: (groups[g]["images"], _order(g)))
        split_of[g] = s
        moved.add(g)
    return moved


def empty_splits(split_of: dict[str, str], ratios: dict[str, float]) -> list[str]:
    """One message per split with a positive ratio that holds no group, saying why and what
    settles it (more groups, or ``--resplit`` when stored assignments hold every group)."""
    r = _check_ratios(ratios)
    need = min_groups(r)
    held = Counter(split_of.values())
    out = []
    for s in SPLITS:
        if r[s] > 0 and not held[s]:
            why = (f"{len(split_of)} near-duplicate groups are fewer than the {need} a {r[s]:g} share needs"
                   if len(split_of) < need else
                   "every group already has a stored split (release --resplit assigns them anew)")
            extra = "; Ultralytics needs val images to train" if s == "val" else ""
            out.append(f"split {s} is empty: {why}{extra}")
    return out


def balance_report(groups: dict[str, dict], split_of: dict[str, str], ratios: dict[str, float],
                   categories: list[str]) -> dict:
    """Class balance of the splits.

    Returns:
        ``{"images": {...}, "classes": {category: {...}}, "max_abs_drift": float}`` where each
        entry is ``{"total", "per_split": {split: count}, "share": {split: fraction},
        "target": {split: ratio}, "drift": {split: share - ratio}}`` (objects for classes, images
        for ``images``; shares and drifts rounded to 4 decimals, ``None`` when total is 0).
        ``max_abs_drift`` is the largest ``|drift|`` over classes with objects.
    """
    r = _check_ratios(ratios)

    def entry(counts: dict[str, int]) -> dict:
        total = sum(counts.values())
        share: dict[str, Any] = {s: round(counts[s] / total, 4) if total else None for s in SPLITS}
        return {"total": total, "per_split": dict(counts), "share": share, "target": dict(r),
                "drift": {s: round(share[s] - r[s], 4) if total else None for s in SPLITS}}

    img = {s: 0 for s in SPLITS}
    cls = {c: {s: 0 for s in SPLITS} for c in categories}
    for g, info in groups.items():
        s = split_of[g]
        img[s] += info["images"]
        for c, k in info["classes"].items():
            cls.setdefault(c, {x: 0 for x in SPLITS})[s] += k
    classes = {c: entry(v) for c, v in cls.items()}
    drifts = [abs(d) for e in classes.values() if e["total"] for d in e["drift"].values()]
    return {"images": entry(img), "classes": classes, "max_abs_drift": round(max(drifts, default=0.0), 4)}


def format_balance(report: dict) -> list[str]:
    """One line per class (and one for images): ``person 3: train 2 (67%), val 1 (33%), test 0
    (0%); drift +0.13/-0.23/-0.10`` style text for release notes."""
    lines = []
    for name, e in [("images", report["images"])] + sorted(report["classes"].items()):
        if not e["total"]:
            lines.append(f"{name} 0")
            continue
        parts = ", ".join(f"{s} {e['per_split'][s]} ({e['share'][s]:.0%})" for s in SPLITS)
        drift = "/".join(f"{e['drift'][s]:+.2f}" for s in SPLITS)
        lines.append(f"{name} {e['total']}: {parts}; drift {drift}")
    return lines

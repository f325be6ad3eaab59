"""Release bookkeeping at scale: split assignment and stable COCO ids for a large dataset.

Synthetic groups (1-2 images each, a skewed class mix with a rare class, as in
tests/unit/release/test_splits.py) and one label per object. Prints, for the stored, class-balanced splits
(labelloop.release.splits.assign_splits) and for the baseline they replaced (a hash of the group id, run
in the same process): the seconds taken and the largest per-class drift from the ratios; then
the same for a second release adding 10% new groups to the stored assignment; then the seconds to
give stable COCO ids to every label (labelloop.release.ids) in a first and a second release.

    /work/venv/bin/python benchmarks/release_scale.py [--groups 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _timing import timed  # benchmarks/ is sys.path[0] when a script runs

from labelloop.release.ids import CocoIds
from labelloop.release.splits import assign_splits, balance_report

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
CATS = ["person", "face", "cat", "rare"]


def groups(n: int, seed: int, prefix: str = "") -> dict[str, dict]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        classes: Counter = Counter()
        for c, p in (("person", 0.6), ("face", 0.4), ("cat", 0.15), ("rare", 0.003)):
            if rng.random() < p:
                classes[c] += rng.randint(1, 3)
        out[hashlib.sha256(f"{prefix}{i}".encode()).hexdigest()] = {"images": rng.choice((1, 1, 2)), "classes": classes}
    return out


def by_hash(gs: dict) -> dict[str, str]:
    out = {}
    for g in gs:
        u = int(hashlib.sha256(g.encode()).hexdigest()[:8], 16) / 2**32
        out[g] = "train" if u < 0.8 else "val" if u < 0.9 else "test"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=100_000)
    n = ap.parse_args().groups
    gs = groups(n, 1)
    base, t_base = timed(lambda: by_hash(gs))
    (split_of, rows), t_ours = timed(lambda: assign_splits(gs, {}, RATIOS))
    d_base = balance_report(gs, base, RATIOS, CATS)["max_abs_drift"]
    d_ours = balance_report(gs, split_of, RATIOS, CATS)["max_abs_drift"]
    print(f"{n} groups, {sum(g['images'] for g in gs.values())} images, "
          f"{sum(sum(g['classes'].values()) for g in gs.values())} objects")
    print(f"first release   hash baseline {t_base:7.2f} s  max class drift {d_base:.4f}")
    print(f"                stratified    {t_ours:7.2f} s  max class drift {d_ours:.4f}  "
          f"(time x{t_ours / t_base:.1f}, drift x{d_ours / d_base:.2f} of baseline)")
    more = {**gs, **groups(n // 10, 2, prefix="new")}
    base2, t_base2 = timed(lambda: by_hash(more))
    (split2, _), t_ours2 = timed(lambda: assign_splits(more, rows, RATIOS))
    assert all(split2[g] == split_of[g] for g in gs)
    d_base2 = balance_report(more, base2, RATIOS, CATS)["max_abs_drift"]
    d_ours2 = balance_report(more, split2, RATIOS, CATS)["max_abs_drift"]
    print(f"+10% new groups hash baseline {t_base2:7.2f} s  max class drift {d_base2:.4f}")
    print(f"                stored+new    {t_ours2:7.2f} s  max class drift {d_ours2:.4f}  (no stored group moved)")
    labels = [{"label_id": f"lb-{g[:12]}-{c}-{k}", "image_id": g, "origin": "model", "action": "auto_accepted"}
              for g, info in gs.items() for c, m in info["classes"].items() for k in range(m)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "coco_ids.parquet"

        def first():
            ids = CocoIds(path)
            img = ids.image_ids(list(gs))
            ann = ids.annotation_ids(labels, img)
            ids.save()
            return ann

        ann, t1 = timed(first)
        def second():
            ids = CocoIds(path)
            return ids.annotation_ids(labels, ids.image_ids(list(gs)))

        ann2, t2 = timed(second)
        assert ann2 == ann
        print(f"COCO ids        {len(labels)} labels: first release {t1:.2f} s, next release {t2:.2f} s "
              "(same ids)")


if __name__ == "__main__":
    sys.exit(main())

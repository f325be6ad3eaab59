"""Active-learning selection cost: labelloop.routing.active_learning.prioritize against a naive greedy
selection (the same scores, recomputing every candidate's distance to every chosen image at each
pick, in Python), in the same process on the same synthetic batch.

    python benchmarks/active_learning_selection.py [--images N] [--budget K]

Prints both times, their ratio, and checks that both choose the same images in the same order.
"""

from __future__ import annotations

import argparse
import random
import time

from labelloop.routing.active_learning import hamming, prioritize
from labelloop.routing.confidence import route_images
from labelloop.workspace.config import ProjectConfig


def naive(rows: list[dict], phash: dict[str, str], budget: int, w: float, min_d: int) -> list[str]:
    pool = sorted((r for r in rows if r["route"] == "human_review"), key=lambda r: r["image_id"])
    taken: list[dict] = []
    while pool and len(taken) < budget:
        best, key = None, None
        for r in pool:
            d = min((hamming(phash[r["image_id"]], phash[t["image_id"]]) for t in taken), default=64)
            if taken and d <= min_d:
                continue
            k = (round((1 - w) * r["al_uncertainty"] + w * d / 64.0, 12), r["al_uncertainty"])
            if best is None or k > key:
                best, key = r, k
        if best is None:
            break
        taken.append(best)
        pool.remove(best)
    return [t["image_id"] for t in taken]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--budget", type=int, default=100)
    args = ap.parse_args()
    cfg = ProjectConfig.model_validate({"categories": [{"name": "person", "detector": "x"}, {"name": "cat", "detector": "y"}],
                                        "active_learning": {"budget": args.budget}})
    rng = random.Random(0)
    images = [{"image_id": f"{i:08x}", "source_path": f"{i}.jpg", "phash": f"{rng.getrandbits(64):016x}"}
              for i in range(args.images)]
    preds = [{"prediction_id": f"p{i}-{k}", "image_id": im["image_id"], "category": rng.choice(["person", "cat"]),
              "score": rng.random(), "bbox": [0, 0, 10 + k, 10], "mask": None}
             for i, im in enumerate(images) for k in range(3)]
    rows = route_images(images, preds, cfg)
    t0 = time.perf_counter()
    ours = prioritize(rows, images, preds, cfg)
    t_ours = time.perf_counter() - t0
    chosen = [r["image_id"] for r in sorted((r for r in ours if r["al_decision"] == "selected"), key=lambda r: r["al_rank"])]
    scored = {r["image_id"]: r for r in ours}
    t0 = time.perf_counter()
    base = naive([scored[r["image_id"]] for r in rows], {i["image_id"]: i["phash"] for i in images}, args.budget,
                 cfg.active_learning.diversity_weight, cfg.active_learning.min_phash_distance)
    t_naive = time.perf_counter() - t0
    print(f"images {args.images}, budget {args.budget}, human_review {sum(r['route'] == 'human_review' for r in rows)}")
    print(f"labelloop prioritize (scores + incremental vectorized selection): {t_ours:.3f} s")
    print(f"naive greedy selection alone (baseline):                         {t_naive:.3f} s")
    print(f"ratio baseline / labelloop: {t_naive / t_ours:.1f}x; same choice and order: {chosen == base}")


if __name__ == "__main__":
    main()

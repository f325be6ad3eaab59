"""QA at scale on label tables: 3000 augmented copies of the hand-labeled photos (as in
tests/support/calibration_sim.py), simulated pre-labels and reviews.

Prints, for the default routing policy (baseline) and the calibrated one fitted on the first
half: the share of images routed to review, the true error rate of auto-accepted images and the
audited error rate; then the seconds each QA figure takes on the second half, as a ratio of the
baseline report (labelloop.qa.metrics.build_qa_report) run in the same process.

    /work/venv/bin/python benchmarks/qa_scale.py [--images 3000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _timing import timed  # noqa: E402  (benchmarks/ is sys.path[0] when a script runs)

from labelloop.qa.agreement import pairwise_agreement  # noqa: E402
from labelloop.qa.calibration import calibrate  # noqa: E402
from labelloop.qa.gold_eval import reviewer_vs_gold  # noqa: E402
from labelloop.qa.label_errors import find_suspects  # noqa: E402
from labelloop.qa.metrics import build_qa_report  # noqa: E402
from labelloop.qa.model_eval import coco_ap  # noqa: E402
from labelloop.workspace.config import DEFAULT_CONFIG, load_config  # noqa: E402
from support.calibration_sim import augment, run_policy, simulate_predictions  # noqa: E402
from support.qa_helpers import gold_photos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3000)
    n = ap.parse_args().images
    rng = np.random.default_rng(7)
    images, gold = augment(gold_photos(), n, rng)
    preds = simulate_predictions(gold, rng)
    history, future = images[: n // 2], images[n // 2:]
    cfg = load_config(DEFAULT_CONFIG)
    hist = run_policy(history, gold, preds, cfg)
    policy = calibrate(cfg, hist["kept"], [i["image_id"] for i in history], hist["humans"],
                       {r["image_id"]: r for r in hist["reviews"]})
    new_cfg = load_config(DEFAULT_CONFIG)
    new_cfg._calibrated = {c: type(cfg.thresholds(c))(**t) for c, t in policy["thresholds"].items()}
    print(f"{n} images ({len(future)} routed with each policy), {len(preds)} predictions")
    print(f"thresholds (high): " + ", ".join(f"{c} {cfg.thresholds(c).high} -> {t['high']:.3f}"
                                              for c, t in policy["thresholds"].items()))
    rows = {}
    for name, c in (("baseline", cfg), ("calibrated", new_cfg)):
        r = run_policy(future, gold, preds, c)
        rows[name] = r
        a = r["audit"]
        print(f"{name:>10}: review share {r['review_share']:.3f}  true error of auto-accepted {r['true_error']:.4f} "
              f"({r['n_auto']} images)  audited {a['n_errors']}/{a['n_audited']} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]")
    b, c = rows["baseline"], rows["calibrated"]
    print(f"ratio calibrated/baseline: review share {c['review_share'] / b['review_share']:.3f}, "
          f"true error {c['true_error'] / b['true_error']:.3f}")

    ids = [i["image_id"] for i in future]
    sizes = {i: (2000, 2000) for i in ids}
    truths = [dict(g, image_id=i) for i in ids for g in gold[i]]
    labels = [dict(t, label_id=f"l{k}", origin="human", route="human_review") for k, t in enumerate(truths)]
    fut_preds = [p for p in preds if p["image_id"] in set(ids)]
    anns = [{"annotator": "r1", "image_id": i, "review_id": f"a{i}", "labels": gold[i]} for i in ids]
    anns += [{"annotator": "r2", "image_id": i, "review_id": f"b{i}", "labels": gold[i]} for i in ids]
    _, base = timed(lambda: build_qa_report(labels=labels, labels_sha256="0" * 64, policy_id="p", review_queue=c["queue"],
                                            reviews=c["reviews"], human_labels=c["humans"], predictions=fut_preds,
                                            images=sizes, categories=cfg.category_names))
    print(f"baseline report (counts, P/R/IoU, audit, schema): {base:.2f} s")
    for name, fn in (("reviewer vs gold", lambda: reviewer_vs_gold(truths, ids, anns[: len(ids)])),
                     ("kappa, 2 reviewers", lambda: pairwise_agreement(anns)),
                     ("COCO AP (pycocotools)", lambda: coco_ap(truths, fut_preds, sizes, cfg.category_names)),
                     ("cleanlab suspects", lambda: find_suspects(labels, fut_preds, ids, cfg.category_names)),
                     ("calibration fit", lambda: calibrate(cfg, c["kept"], ids, c["humans"],
                                                           {r["image_id"]: r for r in c["reviews"]}))):
        _, s = timed(fn)
        print(f"{name:>24}: {s:6.2f} s  ({s / base:5.2f} x baseline)")


if __name__ == "__main__":
    main()

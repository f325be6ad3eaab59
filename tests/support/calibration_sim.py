"""Pre-labels and reviews simulated from the 12 photos' hand-made labels with per-class score
behaviour, for the calibration test and ``benchmarks/qa_scale.py``: no detector runs."""

from __future__ import annotations

from labelloop.geometry.boxes import iou
from labelloop.qa.metrics import audit
from labelloop.routing.confidence import AUTO, QA_SAMPLE, kept_predictions, route_images

# class -> (P(correct), correct score range, error score range)
BEHAVIOUR = {"person": (0.90, (0.55, 1.0), (0.30, 0.55)),
             "face": (0.95, (0.50, 1.0), (0.30, 0.50)),
             "cat": (0.85, (0.60, 1.0), (0.60, 0.92))}


MISS = 0.003  # share of gold boxes the detector does not find


def augment(photos, n, rng):
    """``n`` copies: random horizontal flip and scale 0.5-1.5 of each photo's boxes."""
    images, gold = [], {}
    for k in range(n):
        p = photos[k % len(photos)]
        s = rng.uniform(0.5, 1.5)
        flip = rng.random() < 0.5
        image_id = f"{p['name']}#{k:05d}"
        W = (p["w"] or 500) * s
        boxes = []
        for cat, (x0, y0, x1, y1) in p["boxes"]:
            if flip:
                x0, x1 = W / s - x1, W / s - x0
            boxes.append({"category": cat, "bbox": [x0 * s, y0 * s, x1 * s, y1 * s]})
        images.append({"image_id": image_id, "source_path": image_id})
        gold[image_id] = boxes
    return images, gold


def simulate_predictions(gold, rng):
    preds = []
    for image_id, boxes in gold.items():
        for j, b in enumerate(boxes):
            if rng.random() < MISS:
                continue
            p_ok, ok_rng, err_rng = BEHAVIOUR[b["category"]]
            x0, y0, x1, y1 = b["bbox"]
            w, h = x1 - x0, y1 - y0
            if rng.random() < p_ok:
                box, score = [x0 + 0.01 * w, y0, x1, y1 - 0.01 * h], rng.uniform(*ok_rng)
            else:  # badly located: moved by 40% of its size (IoU about 0.4)
                box, score = [x0 + 0.4 * w, y0 + 0.4 * h, x1 + 0.4 * w, y1 + 0.4 * h], rng.uniform(*err_rng)
            preds.append({"prediction_id": f"{image_id}/{j}", "image_id": image_id, "category": b["category"],
                          "bbox": box, "score": float(score)})
        if not boxes and rng.random() < 0.1:  # a false face on a negative, low score
            preds.append({"prediction_id": f"{image_id}/fp", "image_id": image_id, "category": "face",
                          "bbox": [10.0, 10.0, 60.0, 60.0], "score": float(rng.uniform(0.3, 0.5))})
    return preds


def simulate_reviews(ids, gold, kept):
    """What a reviewer who draws the gold labels returns for ``ids``: REVIEWS and HUMAN_LABELS rows."""
    by_image = {}
    for p in kept:
        by_image.setdefault(p["image_id"], []).append(p)
    reviews, humans = [], []
    for i in ids:
        reviews.append({"image_id": i, "review_id": f"r-{i}", "was_cancelled": False, "updated_at": "2026-01-01T00:00:00Z"})
        preds = list(by_image.get(i, []))
        for j, g in enumerate(gold[i]):
            match = max(preds, key=lambda p: iou(p["bbox"], g["bbox"]) if p["category"] == g["category"] else -1,
                        default=None)
            linked = match is not None and match["category"] == g["category"] and iou(match["bbox"], g["bbox"]) >= 0.5
            action = "added" if not linked else ("accepted" if iou(match["bbox"], g["bbox"]) >= 0.95 else "corrected")
            humans.append({"image_id": i, "review_id": f"r-{i}", "annotation_id": f"h-{i}-{j}", "category": g["category"],
                           "bbox": g["bbox"], "action": action,
                           "source_prediction_id": match["prediction_id"] if linked else None})
            if linked:
                preds.remove(match)
        humans += [{"image_id": i, "review_id": f"r-{i}", "annotation_id": f"d-{p['prediction_id']}",
                    "category": p["category"], "bbox": p["bbox"], "action": "deleted",
                    "source_prediction_id": p["prediction_id"]} for p in preds]
    return reviews, humans


def true_error_rate(queue, gold, kept, move_iou=0.75):
    """Share of auto-accepted images (auto_accept + qa_sample) whose labels differ from gold."""
    by_image = {}
    for p in kept:
        by_image.setdefault(p["image_id"], []).append(p)
    auto = [q["image_id"] for q in queue if q["route"] in (AUTO, QA_SAMPLE)]
    bad = 0
    for i in auto:
        ps, gs = by_image.get(i, []), list(gold[i])
        ok = len(ps) == len(gs)
        for p in ps:
            m = next((g for g in gs if g["category"] == p["category"] and iou(g["bbox"], p["bbox"]) >= move_iou), None)
            ok = ok and m is not None
            if m is not None:
                gs.remove(m)
        bad += not ok
    return bad / len(auto), len(auto)


def run_policy(images, gold, preds, cfg):
    kept = kept_predictions(preds, cfg)
    queue = route_images(images, preds, cfg)
    review_ids = [q["image_id"] for q in queue if q["route"] != AUTO]
    reviews, humans = simulate_reviews(review_ids, gold, kept)
    qa_ids = {q["image_id"] for q in queue if q["route"] == QA_SAMPLE}
    aud = audit(queue, reviews, humans, [p for p in kept if p["image_id"] in qa_ids])
    err, n_auto = true_error_rate(queue, gold, kept)
    return {"queue": queue, "kept": kept, "reviews": reviews, "humans": humans, "audit": aud,
            "review_share": len(review_ids) / len(images), "true_error": err, "n_auto": n_auto}

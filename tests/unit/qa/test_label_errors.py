"""Label-error detection with cleanlab on the hand-made labels: a swapped class, a dropped box and a
badly located box are each found as their issue; a reviewer's "not an error" is remembered."""

from __future__ import annotations

import pytest

from labelloop.qa.label_errors import find_suspects, merge_suspects, suspect_review_tasks
from support.qa_helpers import gold_photos

CATS = ["person", "face", "cat"]


@pytest.fixture(scope="module")
def case():
    photos = [p for p in gold_photos() if p["boxes"]]
    labels, preds = [], []
    for p in photos:
        for j, (cat, box) in enumerate(p["boxes"]):
            lid = f"{p['name']}/{j}"
            preds.append({"image_id": p["name"], "category": cat, "bbox": list(box), "score": 0.97})
            labels.append({"label_id": lid, "image_id": p["name"], "category": cat, "bbox": list(box)})
    by_id = {lab["label_id"]: lab for lab in labels}
    astro_face = next(k for k, v in by_id.items() if k.startswith("astronaut") and v["category"] == "face")
    by_id[astro_face]["category"] = "cat"  # swapped class
    cat = next(k for k, v in by_id.items() if v["category"] == "cat" and k.startswith("chelsea"))
    del by_id[cat]  # the cat box is missing from the labels
    hop = next(k for k, v in by_id.items() if k.startswith("grace") and v["category"] == "person")
    x0, y0, x1, y1 = by_id[hop]["bbox"]
    by_id[hop]["bbox"] = [x0 + 0.5 * (x1 - x0), y0 + 0.5 * (y1 - y0), x1, y1]  # badly located
    images = [p["name"] for p in gold_photos()]
    return list(by_id.values()), preds, images, {"swapped": astro_face, "missing": cat, "badly_located": hop}


def test_each_planted_error_is_found(case):
    labels, preds, images, planted = case
    found = find_suspects(labels, preds, images, CATS)
    by_issue = {}
    for s in found:
        by_issue.setdefault(s["issue"], []).append(s)
    assert [s["label_id"] for s in by_issue["swapped"]] == [planted["swapped"]]
    assert any(s["label_id"] == planted["badly_located"] for s in by_issue["badly_located"])
    (miss,) = by_issue["missing"]
    assert miss["label_id"] is None and miss["category"] == "cat" and miss["image_id"] == "chelsea.png"
    assert all(0.0 <= s["score"] < 0.25 for s in found)
    untouched = {lab["label_id"] for lab in labels} - set(planted.values())
    assert not {s["label_id"] for s in found} & untouched  # no false alarm on the correct labels


def test_not_an_error_is_remembered(case):
    labels, preds, images, planted = case
    found = find_suspects(labels, preds, images, CATS)
    first = merge_suspects(found, [], {}, now="2026-01-01T00:00:00+00:00")
    assert {s["status"] for s in first} == {"open"}
    # the swapped image is reviewed afterwards and the reviewer keeps the label: dismissed
    swapped = next(s for s in first if s["issue"] == "swapped")
    second = merge_suspects(found, first, {swapped["image_id"]: "2026-01-02T00:00:00Z"}, now="2026-01-03T00:00:00+00:00")
    st = {(s["image_id"], s["issue"]): s["status"] for s in second}
    assert st[(swapped["image_id"], "swapped")] == "dismissed"
    assert st[("chelsea.png", "missing")] == "open"
    third = merge_suspects(found, second, {}, now="2026-01-04T00:00:00+00:00")
    assert [s["status"] for s in third if s["issue"] == "swapped"] == ["dismissed"]  # never raised again
    opened = {s["suspect_id"]: s["found_at"] for s in third if s["status"] == "open"}
    assert set(opened.values()) == {"2026-01-01T00:00:00+00:00"}  # found_at of the first sighting
    # a suspect reviewed *before* it was raised is not dismissed
    early = merge_suspects(found, first, {"chelsea.png": "2025-12-31T00:00:00Z"})
    assert all(s["status"] == "open" for s in early)


def test_suspects_go_to_review_with_current_labels(case):
    labels, preds, images, _ = case
    rows = merge_suspects(find_suspects(labels, preds, images, CATS), [], {})
    imgs = [{"image_id": i, "uri": f"inbox/p/{i}", "source_path": i, "width": 512, "height": 512, "status": "ok"}
            for i in images]
    tasks, exported, sent = suspect_review_tasks(rows, imgs, labels, max_images=2)
    assert len(tasks) == len(sent) == 2 and sent[0] == rows[0]["image_id"]
    assert all(e["source"] == "labelloop/label-suspects" for e in exported)
    first_regions = {r["id"] for r in tasks[0]["predictions"][0]["result"]}
    assert first_regions == {lab["label_id"] for lab in labels if lab["image_id"] == sent[0]}

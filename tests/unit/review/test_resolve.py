"""Label resolution (labelloop.review.resolve): human over model per image, stable label ids."""

from __future__ import annotations

import copy
import hashlib

from labelloop.review.resolve import label_id, resolve_labels
from labelloop.routing.confidence import AUTO, QA_SAMPLE, REVIEW
from labelloop.workspace.config import ProjectConfig

CFG = ProjectConfig.model_validate(
    {
        "categories": [
            {"name": "person", "detector": "opencv-hog-person"},
            {"name": "face", "detector": "opencv-haar-frontalface_default", "thresholds": {"low": 0.3, "high": 0.75}},
        ],
        "routing": {"defaults": {"low": 0.3, "high": 0.8}},
    }
)
POLICY = CFG.policy_id()


def lid(origin: str, key: str) -> str:
    return "lb-" + hashlib.sha256(f"{origin}\0{key}".encode()).hexdigest()[:16]


def image(iid: str, status: str = "ok") -> dict:
    return {"image_id": iid, "source_path": f"{iid}.jpg", "status": status}


def queued(iid: str, route: str, reason: str = "r") -> dict:
    return {"image_id": iid, "source_path": f"{iid}.jpg", "route": route, "reason": f"{reason} {iid}",
            "policy_id": POLICY, "priority": 0.5}


def pred(iid: str, category: str, score: float, n: int = 0) -> dict:
    return {"prediction_id": f"pr-{iid}-{n}", "image_id": iid, "category": category, "score": score,
            "bbox": [1.0, 2.0, 30.0, 40.0], "mask": None, "model_id": "opencv-hog", "checkpoint_sha256": "c" * 64}


def human(iid: str, ann: str, review: str, category: str = "face", action: str = "accepted",
          bbox=(5.0, 6.0, 50.0, 60.0)) -> dict:
    return {"annotation_id": ann, "review_id": review, "image_id": iid, "category": category, "bbox": list(bbox),
            "mask": None, "annotator": "ann-1", "action": action, "reviewed_at": "2025-01-02T03:04:05Z",
            "source_prediction_id": None}


def scenario():
    images = [image(i) for i in ("auto", "qa", "qa_reviewed", "waiting", "negative", "reviewed", "never")]
    images += [image("rejected", status="rejected"), image("auto")]  # a duplicate row of "auto"
    queue = [queued("auto", AUTO), queued("qa", QA_SAMPLE), queued("qa_reviewed", QA_SAMPLE),
             queued("waiting", REVIEW), queued("negative", REVIEW), queued("reviewed", REVIEW),
             queued("rejected", AUTO)]
    preds = [
        pred("auto", "person", 0.9, 0), pred("auto", "face", 0.3, 1), pred("auto", "face", 0.29, 2),
        pred("qa", "face", 0.8, 0),
        pred("qa_reviewed", "person", 0.95, 0),
        pred("waiting", "person", 0.5, 0),
        pred("reviewed", "person", 0.85, 0),
        pred("rejected", "person", 0.99, 0),
        pred("never", "person", 0.99, 0),
    ]
    latest = {
        "qa_reviewed": {"review_id": "rv-qa-1", "image_id": "qa_reviewed"},
        "negative": {"review_id": "rv-neg-1", "image_id": "negative"},
        "reviewed": {"review_id": "rv-2", "image_id": "reviewed"},
    }
    humans = [
        human("qa_reviewed", "an-qa-1", "rv-qa-1", category="person", action="corrected"),
        human("reviewed", "an-old", "rv-1"),  # an earlier review of the image: superseded
        human("reviewed", "an-1", "rv-2", action="corrected"),
        human("reviewed", "an-2", "rv-2", category="person", action="added"),
        human("reviewed", "an-3", "rv-2", category="person", action="deleted"),  # deletion marker
        human("waiting", "an-w", "rv-w"),  # labels of a review that is not the image's latest (none)
    ]
    return images, queue, preds, latest, humans


def test_resolved_images_routes_and_resolutions():
    labels, resolved = resolve_labels(*scenario(), CFG)
    assert resolved == [
        {"image_id": "auto", "resolution": "auto_accepted", "n_labels": 2, "review_id": None, "route": AUTO},
        {"image_id": "negative", "resolution": "reviewed", "n_labels": 0, "review_id": "rv-neg-1", "route": REVIEW},
        {"image_id": "qa", "resolution": "auto_accepted", "n_labels": 1, "review_id": None, "route": QA_SAMPLE},
        {"image_id": "qa_reviewed", "resolution": "reviewed", "n_labels": 1, "review_id": "rv-qa-1",
         "route": QA_SAMPLE},
        {"image_id": "reviewed", "resolution": "reviewed", "n_labels": 2, "review_id": "rv-2", "route": REVIEW},
    ]
    # waiting for review, never routed, rejected: unresolved, no labels
    assert {lb["image_id"] for lb in labels} == {"auto", "qa", "qa_reviewed", "reviewed"}


def test_auto_labels_are_the_kept_predictions_of_auto_and_qa_routes():
    labels, _ = resolve_labels(*scenario(), CFG)
    auto = [lb for lb in labels if lb["image_id"] == "auto"]
    # the 0.29 face is below low (0.3) and left out; 0.3 is exactly low and kept
    assert sorted(lb["prediction_id"] for lb in auto) == ["pr-auto-0", "pr-auto-1"]
    person = next(lb for lb in auto if lb["prediction_id"] == "pr-auto-0")
    assert person == {
        "route": AUTO, "route_reason": "r auto", "policy_id": POLICY,
        "label_id": lid("model", "pr-auto-0"), "image_id": "auto", "category": "person",
        "bbox": [1.0, 2.0, 30.0, 40.0], "mask": None, "score": 0.9, "origin": "model", "model_id": "opencv-hog",
        "checkpoint_sha256": "c" * 64, "prediction_id": "pr-auto-0", "annotation_id": None, "annotator": None,
        "action": "auto_accepted", "review_id": None, "reviewed_at": None,
    }
    (qa,) = [lb for lb in labels if lb["image_id"] == "qa"]
    assert (qa["origin"], qa["action"], qa["route"], qa["score"]) == ("model", "auto_accepted", QA_SAMPLE, 0.8)


def test_human_review_wins_over_the_model_and_deletions_are_left_out():
    labels, _ = resolve_labels(*scenario(), CFG)
    (qa_rev,) = [lb for lb in labels if lb["image_id"] == "qa_reviewed"]
    assert qa_rev["origin"] == "human" and qa_rev["action"] == "corrected"
    assert qa_rev["label_id"] == lid("human", "an-qa-1") and qa_rev["score"] is None
    reviewed = [lb for lb in labels if lb["image_id"] == "reviewed"]
    assert [lb["annotation_id"] for lb in reviewed] == sorted(["an-1", "an-2"], key=lambda a: lid("human", a))
    first = next(lb for lb in reviewed if lb["annotation_id"] == "an-1")
    assert first == {
        "route": REVIEW, "route_reason": "r reviewed", "policy_id": POLICY,
        "label_id": lid("human", "an-1"), "image_id": "reviewed", "category": "face",
        "bbox": [5.0, 6.0, 50.0, 60.0], "mask": None, "score": None, "origin": "human", "model_id": None,
        "checkpoint_sha256": None, "prediction_id": None, "annotation_id": "an-1", "annotator": "ann-1",
        "action": "corrected", "review_id": "rv-2", "reviewed_at": "2025-01-02T03:04:05Z",
    }
    assert all(lb["action"] != "deleted" for lb in labels)
    assert all(lb["origin"] == "human" for lb in labels if lb["image_id"] in ("reviewed", "qa_reviewed"))


def test_labels_sorted_by_image_then_label_id_and_one_entry_per_image():
    labels, resolved = resolve_labels(*scenario(), CFG)
    assert labels == sorted(labels, key=lambda lb: (lb["image_id"], lb["label_id"]))
    assert [r["image_id"] for r in resolved] == sorted({r["image_id"] for r in resolved})
    # "auto" is listed twice in images: resolved once, its labels not duplicated
    assert [r["image_id"] for r in resolved].count("auto") == 1
    assert len([lb for lb in labels if lb["image_id"] == "auto"]) == 2
    assert len({lb["label_id"] for lb in labels}) == len(labels)


def test_label_ids_are_stable_and_independent_of_input_order():
    first, _ = resolve_labels(*scenario(), CFG)
    images, queue, preds, latest, humans = scenario()
    again, _ = resolve_labels(images[::-1], queue[::-1], preds[::-1], latest, humans[::-1], CFG)
    assert [lb["label_id"] for lb in again] == [lb["label_id"] for lb in first]
    assert again == first
    assert label_id("human", "an-1") == lid("human", "an-1") == "lb-" + hashlib.sha256(b"human\0an-1").hexdigest()[:16]
    assert label_id("model", "an-1") != label_id("human", "an-1")


def test_updated_annotation_keeps_its_label_id():
    images, queue, preds, latest, humans = scenario()
    before, _ = resolve_labels(images, queue, preds, latest, humans, CFG)
    # the reviewer updates the same annotation: a new review version, a moved box
    latest2 = copy.deepcopy(latest)
    latest2["reviewed"] = {"review_id": "rv-3", "image_id": "reviewed"}
    humans2 = humans + [human("reviewed", "an-1", "rv-3", action="corrected", bbox=(7.0, 8.0, 70.0, 80.0))]
    after, resolved = resolve_labels(images, queue, preds, latest2, humans2, CFG)
    old = [lb for lb in before if lb["annotation_id"] == "an-1"]
    new = [lb for lb in after if lb["image_id"] == "reviewed"]
    assert len(old) == 1 and len(new) == 1  # only the labels of the latest review count
    assert new[0]["label_id"] == old[0]["label_id"] == lid("human", "an-1")
    assert (new[0]["review_id"], new[0]["bbox"]) == ("rv-3", [7.0, 8.0, 70.0, 80.0])
    assert next(r for r in resolved if r["image_id"] == "reviewed")["n_labels"] == 1


def test_model_rerun_does_not_touch_reviewed_labels():
    images, queue, preds, latest, humans = scenario()
    before, _ = resolve_labels(images, queue, preds, latest, humans, CFG)
    rerun = [dict(p, prediction_id=p["prediction_id"] + "-v2", score=0.99) for p in preds]
    after, _ = resolve_labels(images, queue, rerun, latest, humans, CFG)
    human_before = [lb for lb in before if lb["origin"] == "human"]
    human_after = [lb for lb in after if lb["origin"] == "human"]
    assert human_after == human_before and len(human_after) == 3
    model_after = [lb for lb in after if lb["origin"] == "model"]
    assert sorted(lb["prediction_id"] for lb in model_after) == ["pr-auto-0-v2", "pr-auto-1-v2", "pr-auto-2-v2",
                                                                "pr-qa-0-v2"]


def test_rejected_image_is_skipped_even_when_reviewed():
    images = [image("x", status="rejected")]
    queue = [queued("x", REVIEW)]
    latest = {"x": {"review_id": "rv-x"}}
    humans = [human("x", "an-x", "rv-x")]
    assert resolve_labels(images, queue, [], latest, humans, CFG) == ([], [])


def test_nothing_to_resolve():
    assert resolve_labels([], [], [], {}, [], CFG) == ([], [])

"""Release diffs: pairing by label_id and by identity, every kind of change, and its cause."""

from __future__ import annotations

from labelloop.release.diff import ReleaseView, diff_releases, format_cause, format_diff, summary_lines
from labelloop.review.resolve import label_id

A, B, C, D = "a" * 64, "b" * 64, "c" * 64, "d" * 64
MODEL = {"origin": "model", "model_id": "opencv@1", "checkpoint_sha256": "e" * 64, "action": "auto_accepted"}


def _lab(lid, image, cat, box, **kw):
    return {"label_id": lid, "image_id": image, "category": cat, "bbox": box, "mask": None, "keypoints": None, **kw}


def _human(lid, image, cat, box, **kw):
    return _lab(lid, image, cat, box, origin="human", annotator="ls-user-3", review_id="rv-" + image[:2],
                reviewed_at="2026-11-20T10:00:00Z", **kw)


def _views():
    m1 = label_id("model", "pr-1")
    old = ReleaseView("dataset-v1", labels=[
        _lab(m1, A, "face", [10, 10, 50, 50], prediction_id="pr-1", **MODEL),  # -> corrected (moved)
        _lab(label_id("model", "pr-2"), A, "face", [60, 60, 90, 90], prediction_id="pr-2", **MODEL),  # -> accepted
        _lab("lb-keep", B, "person", [0, 0, 100, 200], **MODEL),  # unchanged
        _lab("lb-relabel", B, "cat", [5, 5, 20, 20], **MODEL),  # -> dog (same label_id)
        _lab("lb-gone", C, "cat", [1, 1, 9, 9], **MODEL),  # C reviewed in v2: removed by the reviewer
        _lab("lb-img-gone", D, "cat", [1, 1, 9, 9], **MODEL),  # D leaves the release
    ], images=[
        {"image_id": A, "file_name": "images/train/aa.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
        {"image_id": B, "file_name": "images/train/bb.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
        {"image_id": C, "file_name": "images/val/cc.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
        {"image_id": D, "file_name": "images/test/dd.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
    ])
    new = ReleaseView("dataset-v2", labels=[
        _human("lb-h1", A, "face", [12, 10, 52, 50], prediction_id="pr-1", action="corrected"),
        _human("lb-h2", A, "face", [60, 60, 90, 90], prediction_id="pr-2", action="accepted"),
        _human("lb-h3", A, "person", [0, 0, 100, 100], action="added"),
        _lab("lb-keep", B, "person", [0, 0, 100, 200.004], **MODEL),
        _lab("lb-relabel", B, "dog", [5, 5, 20, 20], **MODEL),
        _lab("lb-new-model", "e" * 64, "cat", [3, 3, 30, 30], **MODEL),
    ], images=[
        {"image_id": A, "file_name": "images/train/aa.jpg", "resolution": "reviewed", "annotator": "ls-user-3",
         "review_id": "rv-aa", "review_source": "label-studio/project-7", "review_task_id": "17",
         "reviewed_at": "2026-11-20T10:00:00Z"},
        {"image_id": B, "file_name": "images/train/bb.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
        {"image_id": C, "file_name": "images/val/cc.jpg", "resolution": "reviewed", "annotator": "ls-user-9",
         "review_id": "rv-cc", "review_source": "label-studio/project-7", "review_task_id": "18",
         "reviewed_at": "2026-11-21T09:00:00Z"},
        {"image_id": "e" * 64, "file_name": "images/train/ee.jpg", "resolution": "auto_accepted", "model_id": "opencv@1"},
    ], lineage={
        "lb-h1": {"review_source": "label-studio/project-7", "review_task_id": "17", "import_run_id": "71c2e0aa-run"},
        "lb-new-model": {"label_run_id": "4997e619-dabf-4102"},
    })
    return old, new


def test_every_kind_of_change_with_its_cause():
    d = diff_releases(*_views())
    assert (d["from"], d["to"]) == ("dataset-v1", "dataset-v2")
    assert [e["image_id"] for e in d["images"]["added"]] == ["e" * 64]
    assert [e["image_id"] for e in d["images"]["removed"]] == [D]
    lab = d["labels"]
    moved = lab["moved"]
    assert [(e["label_id"], e["from_label_id"], e["from_bbox"]) for e in moved] == [
        ("lb-h1", label_id("model", "pr-1"), [10, 10, 50, 50])]
    assert moved[0]["cause"] == {"kind": "reviewer", "annotator": "ls-user-3", "review_id": "rv-aa",
                                 "source": "label-studio/project-7", "task_id": "17", "at": "2026-11-20T10:00:00Z",
                                 "run_id": "71c2e0aa-run"}  # the Dagster run of the review import
    assert [e["label_id"] for e in lab["confirmed"]] == ["lb-h2"]
    assert [(e["label_id"], e["from_category"], e["category"]) for e in lab["relabeled"]] == [("lb-relabel", "cat", "dog")]
    assert [e["label_id"] for e in lab["added"]] == ["lb-h3", "lb-new-model"]
    assert lab["added"][1]["cause"] == {"kind": "model", "model_id": "opencv@1", "run_id": "4997e619-dabf-4102",
                                        "checkpoint_sha256": "e" * 64}
    removed = {e["label_id"]: e["cause"] for e in lab["removed"]}
    assert removed["lb-gone"]["annotator"] == "ls-user-9" and removed["lb-gone"]["task_id"] == "18"
    assert removed["lb-img-gone"] == {"kind": "image_removed"}
    assert d["unchanged"] == 1  # lb-keep moved by 0.004 px: within the 0.01 px tolerance
    assert d["per_class"] == {
        "cat": {"added": 1, "removed": 2, "moved": 0, "relabeled": 0, "confirmed": 0},
        "dog": {"added": 0, "removed": 0, "moved": 0, "relabeled": 1, "confirmed": 0},
        "face": {"added": 0, "removed": 0, "moved": 1, "relabeled": 0, "confirmed": 1},
        "person": {"added": 1, "removed": 0, "moved": 0, "relabeled": 0, "confirmed": 0},
    }
    assert d["by_cause"] == {
        "image left the release": {"images": 1, "labels": 1},
        "model opencv@1": {"images": 0, "labels": 1},  # the relabel (no run known for it)
        "model opencv@1 run 4997e619": {"images": 1, "labels": 1},  # the new image and its label
        "reviewer ls-user-3": {"images": 0, "labels": 3},
        "reviewer ls-user-9": {"images": 0, "labels": 1},
    }


def test_text_forms():
    d = diff_releases(*_views())
    lines = summary_lines(d)
    assert lines[0] == ("changes since dataset-v1: images +1 -1; labels +2 -2, 1 moved, 1 relabeled, 1 confirmed, "
                        "1 unchanged")
    assert "  face: +0, -0, 1 moved, 1 confirmed" in lines
    assert "  by reviewer ls-user-3: 0 images, 3 labels" in lines
    text = format_diff(d)
    assert ("label moved     lb-h1 face [12.0, 10.0, 52.0, 50.0] from [10.0, 10.0, 50.0, 50.0] on aaaaaaaaaaaa  by "
            "reviewer ls-user-3 (label-studio/project-7, task 17, 2026-11-20T10:00:00Z)") in text
    assert "label relabeled lb-relabel dog [5.0, 5.0, 20.0, 20.0] from cat" in text
    assert "image removed dddddddddddd images/test/dd.jpg" in text
    assert format_cause({"kind": "model", "model_id": "m", "run_id": None}) == "model m"


def test_identical_releases_have_no_changes():
    old, _ = _views()
    d = diff_releases(old, ReleaseView("again", old.labels, old.images))
    assert d["unchanged"] == 6 and not any(d["labels"].values()) and not any(d["images"].values())
    assert d["per_class"] == {} and d["by_cause"] == {}

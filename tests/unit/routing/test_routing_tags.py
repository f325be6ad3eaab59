"""Routing in a project with image-level tag categories (labelloop.routing.confidence): with the
embedded classical backend (no tag pre-label) an image whose boxes are all confident still goes to
review for its tags; with a prompted backend (foundation, sam3) a tag pre-label routes like a box,
against the tag category's own thresholds."""

from __future__ import annotations

from labelloop.routing.confidence import AUTO, QA_SAMPLE, REVIEW, route_images
from labelloop.workspace.config import ProjectConfig


def config(tags: bool) -> ProjectConfig:
    cats = [{"name": "face", "detector": "opencv-haar-frontalface_default"}]
    return ProjectConfig.model_validate({"categories": cats + ([{"name": "outdoor", "level": "tag"}] if tags else [])})


def foundation_config() -> ProjectConfig:
    return ProjectConfig.model_validate({
        "categories": [{"name": "face", "detector": "grounding-dino", "prompt": "a human face"},
                       {"name": "outdoor", "level": "tag", "prompt": "outdoors",
                        "thresholds": {"low": 0.3, "high": 0.8}}],
        "routing": {"qa_sample_rate": 0.0},  # at least one image is still sampled
        "prelabeler": {"backend": "foundation", "detector": {"path": "models/gd", "sha256": "0" * 64}}})


def pred(pid: str, image_id: str, category: str, score: float) -> dict:
    return {"prediction_id": pid, "image_id": image_id, "category": category, "score": score,
            "bbox": [0.0, 0.0, 9.0, 9.0]}


def test_no_tag_pre_label_sends_the_image_to_review():
    images = [{"image_id": i, "source_path": f"{i}.jpg"} for i in ("a", "b", "c")]
    preds = [pred("pa", "a", "face", 0.95), pred("pb", "b", "face", 0.5), pred("pc", "c", "outdoor", 0.9)]
    plain = {r["image_id"]: r for r in route_images(images, preds[:2], config(False))}
    assert (plain["a"]["route"], plain["b"]["route"], plain["c"]["route"]) == (QA_SAMPLE, REVIEW, REVIEW)
    tagged = {r["image_id"]: r for r in route_images(images, preds, config(True))}
    assert tagged["a"]["route"] == REVIEW and tagged["a"]["priority"] == 0.05
    assert tagged["a"]["reason"] == "tag categories (outdoor) have no pre-label: a reviewer gives the image's tags"
    assert tagged["b"]["route"] == REVIEW and tagged["b"]["reason"].startswith("tag categories")
    # the opencv backend gives no tag pre-label: every image goes to review for its tags
    assert tagged["c"]["route"] == REVIEW and tagged["c"]["reason"].startswith("tag categories")


def test_tag_pre_label_routes_like_a_box_with_its_thresholds():
    cfg = foundation_config()
    images = [{"image_id": i, "source_path": f"{i}.jpg"} for i in "abcde"]
    face_high = cfg.thresholds("face").high
    preds = [pred("a1", "a", "face", 0.99), pred("a2", "a", "outdoor", 0.85),   # both confident -> auto
             pred("b1", "b", "face", 0.99), pred("b2", "b", "outdoor", 0.5),    # tag between low and high
             pred("c1", "c", "outdoor", 0.81),                                  # only a confident tag -> auto
             pred("d1", "d", "outdoor", 0.29),                                  # tag below its low: dropped
             pred("e1", "e", "face", 0.99)]                                     # no tag pre-label: like boxes
    assert face_high < 0.99
    r = {q["image_id"]: q for q in route_images(images, preds, cfg)}
    assert r["a"]["route"] in (AUTO, QA_SAMPLE) and r["a"]["n_predictions"] == 2
    assert r["b"]["route"] == REVIEW and r["b"]["min_score"] == 0.5 and r["b"]["priority"] == 0.5
    assert r["c"]["route"] in (AUTO, QA_SAMPLE) and r["c"]["n_predictions"] == 1
    assert r["d"]["route"] == REVIEW and r["d"]["reason"] == "no prediction at or above its low threshold"
    assert r["e"]["route"] in (AUTO, QA_SAMPLE)


def test_release_tags_are_human_over_model():
    """labelloop.review.resolve.resolve_tags: reviewed images keep their reviewer's tags, auto-accepted
    ones get their kept tag pre-labels ([] when none), and the opencv backend gives them no entry."""
    from labelloop.review.resolve import resolve_tags
    resolved = [{"image_id": "a", "resolution": "auto_accepted"}, {"image_id": "b", "resolution": "auto_accepted"},
                {"image_id": "c", "resolution": "reviewed"}, {"image_id": "d", "resolution": "auto_accepted"}]
    preds = [pred("a1", "a", "outdoor", 0.9), pred("a2", "a", "face", 0.99),
             pred("b1", "b", "outdoor", 0.29),  # below outdoor's low (0.3): not kept
             pred("c1", "c", "outdoor", 0.95)]   # reviewed: the reviewer's answer wins
    human = {"c": ["no objects"]}
    assert resolve_tags(resolved, human, preds, foundation_config()) == {
        "a": ["outdoor"], "b": [], "c": ["no objects"], "d": []}
    assert resolve_tags(resolved, human, preds, config(True)) == {"c": ["no objects"]}
    assert resolve_tags(resolved, human, preds, config(False)) == {}

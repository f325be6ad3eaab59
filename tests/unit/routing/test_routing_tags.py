"""Routing in a project with image-level tag categories (labelloop.routing.confidence): with no tag
pre-label, an image whose boxes are all confident still goes to review for its tags."""

from __future__ import annotations

from labelloop.routing.confidence import AUTO, QA_SAMPLE, REVIEW, route_images
from labelloop.workspace.config import ProjectConfig


def config(tags: bool) -> ProjectConfig:
    cats = [{"name": "face", "detector": "opencv-haar-frontalface_default"}]
    return ProjectConfig.model_validate({"categories": cats + ([{"name": "outdoor", "level": "tag"}] if tags else [])})


def test_no_tag_pre_label_sends_the_image_to_review():
    images = [{"image_id": i, "source_path": f"{i}.jpg"} for i in ("a", "b", "c")]
    preds = [{"prediction_id": "pa", "image_id": "a", "category": "face", "score": 0.95, "bbox": [0.0, 0.0, 9.0, 9.0]},
             {"prediction_id": "pb", "image_id": "b", "category": "face", "score": 0.5, "bbox": [0.0, 0.0, 9.0, 9.0]},
             {"prediction_id": "pc", "image_id": "c", "category": "outdoor", "score": 0.9, "bbox": [0.0, 0.0, 9.0, 9.0]}]
    plain = {r["image_id"]: r for r in route_images(images, preds[:2], config(False))}
    assert (plain["a"]["route"], plain["b"]["route"], plain["c"]["route"]) == (QA_SAMPLE, REVIEW, REVIEW)
    tagged = {r["image_id"]: r for r in route_images(images, preds, config(True))}
    assert tagged["a"]["route"] == REVIEW and tagged["a"]["priority"] == 0.05
    assert tagged["a"]["reason"] == "tag categories (outdoor) have no pre-label: a reviewer gives the image's tags"
    assert tagged["b"]["route"] == REVIEW and tagged["b"]["reason"].startswith("tag categories")
    # an image-level pre-label of the tag category routes like a box: confident -> auto-accepted (QA sample)
    assert tagged["c"]["route"] in (AUTO, QA_SAMPLE)

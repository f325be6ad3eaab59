"""Image-level tag pre-labels (``level: tag``, progressive labeling) from the foundation
(Grounding DINO + SAM) and sam3 backends, with tiny random-weight models run on real photos: a
tag category runs its prompt like a box category, gets no mask, and gives one image-level
pre-label whose score is the best box score of that prompt computed by the same model (the
category configured as a box category, same prompts in the same order, gives those boxes)."""

from __future__ import annotations

import pytest
from PIL import Image

from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.sam3 import Sam3PreLabeler
from labelloop.prelabel.protocol import Detection, image_level_tags
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.random_weights import TEST_SAM_ARCH, write_grounding_dino, write_sam, write_sam3

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png")


@pytest.fixture(scope="module")
def photos():
    return [Image.open(skimage_data() / n).convert("RGB") for n in PHOTOS]


def check_tag_is_best_box(as_box: list[list[Detection]], as_tag: list[list[Detection]], tag: str) -> int:
    """Per image: the other categories' detections are the same; the tag category has exactly
    one detection iff the box run found any, with the best box's score and box and no mask."""
    n = 0
    for boxes, tagged in zip(as_box, as_tag):
        assert [d for d in tagged if d.category != tag] == [d for d in boxes if d.category != tag]
        mine = [d for d in boxes if d.category == tag]
        got = [d for d in tagged if d.category == tag]
        if not mine:
            assert got == []
            continue
        n += 1
        best = max(mine, key=lambda d: d.score)
        assert len(got) == 1 and got[0].mask is None
        assert got[0].score == max(d.score for d in mine) == best.score
        assert got[0].bbox == best.bbox and got[0].prompt == best.prompt
    return n


# ---- foundation: Grounding DINO (+ SAM for the mask categories) --------------------------------
GD_PROMPTS = {"person": "a person", "face": "a human face", "cat": "a cat"}


@pytest.fixture(scope="module")
def gd_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"root": root, "gd_sha": write_grounding_dino(root / "models" / "gd", GD_PROMPTS.values()),
            "sam_sha": write_sam(root / "models" / "sam.pth", TEST_SAM_ARCH)}


def gd_config(models, cat_level: str | None) -> ProjectConfig:
    cats = [{"name": "person", "detector": "grounding-dino", "prompt": "a person", "masks": True},
            {"name": "face", "detector": "grounding-dino", "prompt": "a human face"}]
    if cat_level == "tag":
        cats.append({"name": "cat", "level": "tag", "prompt": "a cat"})
    elif cat_level == "box":
        cats.append({"name": "cat", "detector": "grounding-dino", "prompt": "a cat"})
    pl = {"backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 4,
          "detector": {"path": "models/gd", "sha256": models["gd_sha"], "shortest_edge": 96, "longest_edge": 160,
                       "box_threshold": 0.3},
          "segmenter": {"path": "models/sam.pth", "sha256": models["sam_sha"], "arch": TEST_SAM_ARCH.model_dump()}}
    return ProjectConfig.model_validate({"categories": cats, "prelabeler": pl})


def test_foundation_tag_score_is_the_best_box_score_of_its_prompt(gd_models, photos):
    as_box = FoundationPreLabeler(gd_config(gd_models, "box"), gd_models["root"]).predict(photos)
    tagger = FoundationPreLabeler(gd_config(gd_models, "tag"), gd_models["root"])
    as_tag = tagger.predict(photos)
    assert check_tag_is_best_box(as_box, as_tag, "cat") >= 1, "random weights at 0.3 find some 'a cat' box"
    assert sum(d.category == "cat" for dets in as_box for d in dets) > sum(
        d.category == "cat" for dets in as_tag for d in dets)  # several boxes collapsed into one tag
    # the tag category is part of the model's identity; a config without one keeps the box-only id
    plain = FoundationPreLabeler(gd_config(gd_models, None), gd_models["root"])
    assert len({plain.model_id, tagger.model_id}) == 2
    assert tagger.categories[-1] == ("cat", "a cat", False) and plain.categories == tagger.categories[:-1]


# ---- sam3 -----------------------------------------------------------------------------------------
S3_PROMPTS = ("a person", "a human face", "a cup")


@pytest.fixture(scope="module")
def s3_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam3")
    return root, write_sam3(root / "sam3", list(S3_PROMPTS))


def s3_config(sha: str, cup_level: str) -> ProjectConfig:
    cats = [{"name": "person", "detector": "sam3", "prompt": "a person", "masks": True},
            {"name": "face", "detector": "sam3", "prompt": "a human face"},
            ({"name": "cup", "level": "tag", "prompt": "a cup"} if cup_level == "tag"
             else {"name": "cup", "detector": "sam3", "prompt": "a cup"})]
    return ProjectConfig.model_validate({
        "categories": cats,
        "prelabeler": {"backend": "sam3", "device": "cpu", "num_workers": 0, "batch_size": 2,
                       "sam3": {"path": "sam3", "sha256": sha, "score_threshold": 0.2499}}})


def test_sam3_tag_score_is_the_best_box_score_of_its_prompt(s3_dir, photos):
    root, sha = s3_dir
    as_box = Sam3PreLabeler(s3_config(sha, "box"), root).predict(photos[:2])
    as_tag = Sam3PreLabeler(s3_config(sha, "tag"), root).predict(photos[:2])
    assert check_tag_is_best_box(as_box, as_tag, "cup") >= 1


def test_image_level_tags_rule():
    dets = [Detection("cat", (0.0, 0.0, 5.0, 5.0), 0.4, "a cat"), Detection("dog", (1.0, 1.0, 2.0, 2.0), 0.9),
            Detection("cat", (2.0, 2.0, 9.0, 9.0), 0.7, "a cat", '{"size": [1, 1], "counts": "1"}'),
            Detection("cat", (3.0, 3.0, 4.0, 4.0), 0.7, "a cat")]
    assert image_level_tags(dets, {"cat"}) == [dets[1], Detection("cat", (2.0, 2.0, 9.0, 9.0), 0.7, "a cat", None)]
    assert image_level_tags(dets, set()) == dets

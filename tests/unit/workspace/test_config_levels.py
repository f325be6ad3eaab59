"""Progressive labeling settings (labelloop.workspace.config): ``level: tag | box | mask`` per
category, ``masks: true`` read as ``level: mask``, and the errors of a bad level."""

from __future__ import annotations

import pytest

from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
from labelloop.workspace.config import ConfigError, load_config

HEAD = "categories:\n"


def write(tmp_path, body: str):
    p = tmp_path / "labelloop.yaml"
    p.write_text(HEAD + body, encoding="utf-8")
    return p


def error_of(path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


def test_levels_and_the_older_masks_spelling(tmp_path):
    cfg = load_config(write(tmp_path, "  - {name: person, detector: opencv-hog-person, masks: true}\n"
                                      "  - {name: face, detector: opencv-haar-frontalface_default}\n"
                                      "  - {name: cat, detector: opencv-haar-frontalcatface, level: mask}\n"
                                      "  - {name: outdoor, level: tag}\n"
                                      "  - {name: dog, detector: opencv-haar-frontalcatface, level: box, masks: false}\n"))
    assert [(c.name, c.annotation_level, c.masks) for c in cfg.categories] == [
        ("person", "mask", True), ("face", "box", False), ("cat", "mask", True), ("outdoor", "tag", False),
        ("dog", "box", False)]
    assert cfg.tag_categories == ["outdoor"]
    assert [c.name for c in cfg.located_categories()] == ["person", "face", "cat", "dog"]
    assert cfg.category("outdoor").detector is None


def test_the_embedded_backend_skips_tag_categories(tmp_path):
    cfg = load_config(write(tmp_path, "  - {name: face, detector: opencv-haar-frontalface_default}\n"
                                      "  - {name: outdoor, level: tag}\n"))
    backend = OpenCVPreLabeler(cfg)
    assert [c[0] for c in backend.categories] == ["face"]
    # the model id of the box categories is the one a config without the tag category gets
    alone = OpenCVPreLabeler(load_config(write(tmp_path, "  - {name: face, detector: opencv-haar-frontalface_default}\n")))
    assert backend.model_id == alone.model_id


@pytest.mark.parametrize("body, expected", [
    ("  - {name: pen, detector: opencv-hog-person, level: polygon}\n",
     "categories.0: Value error, category 'pen': level 'polygon' is unknown (one of tag | box | mask)"),
    ("  - {name: pen, detector: opencv-hog-person, level: box, masks: true}\n",
     "categories.0: Value error, category 'pen': masks: true contradicts level 'box'"),
    ("  - {name: face, detector: opencv-haar-frontalface_default}\n  - {name: pen, level: mask}\n",
     "categories.1: Value error, category 'pen': level 'mask' needs a detector"),
    ("  - {name: pen}\n", "categories.0: Value error, category 'pen': level 'box' needs a detector"),
    ("  - {name: outdoor, level: tag, keypoints: [a, b]}\n",
     "categories.0: Value error, category 'outdoor': level 'tag' is an image-level label, it cannot have keypoints"),
])
def test_bad_level_names_the_file_and_category(tmp_path, body, expected):
    path = write(tmp_path, body)
    msg = error_of(path)
    assert msg.startswith(f"{path}: ")
    assert expected in msg


@pytest.mark.parametrize("name, problem", [
    ("out;door", "';' is not allowed in a category name"),
    ("no objects", "'no objects' is reserved"),
    ("x;no objects", "'no objects' is reserved"),
    ("No Objects", "'no objects' is reserved"),
])
def test_a_category_name_that_would_corrupt_the_release_tags_is_refused_up_front(tmp_path, name, problem):
    """The release joins an image's tags with ';' and reads the reserved 'no objects' answer:
    such names are refused by the config check, naming the file and the category, before any run."""
    path = write(tmp_path, f"  - {{name: person, detector: opencv-hog-person}}\n  - {{name: '{name}', level: tag}}\n")
    err = error_of(path)
    assert problem in err and "labelloop.yaml" in err and repr(name) in err

"""SAM 3 (``prelabeler.backend: sam3``) on the CPU: a tiny random-weight ``Sam3Model`` +
``Sam3Processor`` written with ``save_pretrained``, loaded back through the sha256-checked path,
run on two real photos. Random weights make the instances meaningless, so the tests assert
shapes, frames, formats, identities, the one-vision-pass-per-image guarantee, batching, and
equality with the library's own processor + model + ``post_process_instance_segmentation``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from labelloop.geometry.masks import decode_rle
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.backends.sam3 import Sam3PreLabeler
from labelloop.prelabel.protocol import PreLabeler
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.random_weights import write_sam3

PHOTOS = ("astronaut.png", "coffee.png")
CATEGORIES = [{"name": "person", "detector": "sam3", "prompt": "a person", "masks": True},
              {"name": "cup", "detector": "sam3", "prompt": "a cup", "masks": True},
              {"name": "face", "detector": "sam3", "prompt": "a human face", "masks": False}]
# random weights score every query ~0.25 (sigmoid(~0) * sigmoid(~0)): keep some, drop some
SCORE = 0.2499


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sam3")
    sha = write_sam3(root / "sam3", [c["prompt"] for c in CATEGORIES])
    return root, sha


@pytest.fixture(scope="module")
def photos():
    return [Image.open(skimage_data() / n).convert("RGB") for n in PHOTOS]


def config(sha: str, categories=CATEGORIES, path: str = "sam3", **sam3) -> ProjectConfig:
    return ProjectConfig.model_validate({
        "categories": categories,
        "prelabeler": {"backend": "sam3", "device": "cpu", "num_workers": 0, "batch_size": 2,
                       "sam3": {"path": path, "sha256": sha, "score_threshold": SCORE, **sam3}}})


def labeler(model_dir, **kw) -> Sam3PreLabeler:
    root, sha = model_dir
    return Sam3PreLabeler(config(sha, **kw), root)


def test_predictions_fields_boxes_and_masks(model_dir, photos):
    m = labeler(model_dir)
    assert isinstance(m, PreLabeler)
    out = m.predict(photos)
    assert len(out) == 2
    prompts = {c["name"]: c["prompt"] for c in CATEGORIES}
    for dets, im in zip(out, photos):
        assert dets, "random weights at this threshold keep some instances"
        assert len(dets) <= m.spec.max_detections
        assert {d.category for d in dets} <= set(prompts)
        for d in dets:
            assert d.prompt == prompts[d.category]
            assert SCORE < d.score <= 1.0
            x0, y0, x1, y1 = d.bbox
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
            if d.category == "face":
                assert d.mask is None  # masks: false
            else:
                assert d.mask is not None
                assert decode_rle(d.mask).shape == (im.height, im.width)
        ranks = [(m.category_rank(d.category), -d.score) for d in dets]
        assert ranks == sorted(ranks)


def test_same_as_the_library_pipeline(model_dir, photos):
    """With NMS off, one category: the backend's boxes, scores and masks are those of
    ``Sam3Processor`` + ``Sam3Model`` + ``post_process_instance_segmentation``."""
    from transformers import Sam3Model, Sam3Processor

    root, sha = model_dir
    cats = [CATEGORIES[0]]
    m = Sam3PreLabeler(config(sha, categories=cats, nms_iou=1.0), root)
    ours = m.predict(photos)
    model = Sam3Model.from_pretrained(root / "sam3", local_files_only=True).eval()
    proc = Sam3Processor.from_pretrained(root / "sam3", local_files_only=True)
    for im, dets in zip(photos, ours):
        with torch.inference_mode():
            outputs = model(**proc(images=im, text="a person", return_tensors="pt"))
        ref = proc.post_process_instance_segmentation(outputs, threshold=SCORE, mask_threshold=0.5,
                                                      target_sizes=[(im.height, im.width)])[0]
        order = ref["scores"].argsort(descending=True, stable=True)
        assert len(dets) == len(order) > 0
        np.testing.assert_allclose([d.score for d in dets], ref["scores"][order].numpy(), atol=1e-5)
        np.testing.assert_allclose([d.bbox for d in dets], ref["boxes"][order].numpy(), atol=2e-3)
        for d, k in zip(dets, order.tolist()):
            assert d.mask is not None
            assert (decode_rle(d.mask) != ref["masks"][k].numpy()).mean() < 1e-3


def test_nms_removes_duplicates(model_dir, photos):
    none = labeler(model_dir, nms_iou=1.0).predict(photos[:1])[0]
    some = labeler(model_dir, nms_iou=0.5).predict(photos[:1])[0]
    assert len(some) < len(none)


def test_vision_features_once_per_image(model_dir, photos):
    """One backbone pass per image whatever the number of categories (counted on the real model's
    method, wrapped)."""
    counts = {}
    for n in (1, 3):
        m = labeler(model_dir, categories=CATEGORIES[:n])
        runner, _ = m.load()
        hf = runner.model
        original = hf.get_vision_features
        seen: list[int] = []

        def counting(*args, _orig=original, _seen=seen, **kwargs):
            _seen.append(int(kwargs.get("pixel_values", args[0] if args else None).shape[0]))
            return _orig(*args, **kwargs)

        hf.get_vision_features = counting
        calls_vision = 0
        original_encoder = hf.vision_encoder.forward

        def encoder(*args, _orig=original_encoder, **kwargs):
            nonlocal calls_vision
            calls_vision += 1
            return _orig(*args, **kwargs)

        hf.vision_encoder.forward = encoder
        out = m.predict(photos)
        assert len(out) == 2
        counts[n] = (seen, calls_vision)
    assert counts[1] == counts[3] == ([2], 1)  # one batch of 2 images, one vision encoder call


def test_batched_equals_one_at_a_time(model_dir, photos):
    batched = labeler(model_dir).predict(photos)
    root, sha = model_dir
    cfg = config(sha)
    cfg.prelabeler.batch_size = 1
    single = Sam3PreLabeler(cfg, root)
    alone = single.predict(photos)
    assert [[(d.category, d.prompt) for d in x] for x in batched] == [[(d.category, d.prompt) for d in x] for x in alone]
    for a, b in zip(batched, alone):
        np.testing.assert_allclose([d.score for d in a], [d.score for d in b], atol=1e-5)
        np.testing.assert_allclose([d.bbox for d in a], [d.bbox for d in b], atol=1e-2)
        for da, db in zip(a, b):
            assert (da.mask is None) == (db.mask is None)
            if da.mask is not None and db.mask is not None:
                assert (decode_rle(da.mask) != decode_rle(db.mask)).mean() < 1e-3


def test_predict_files_streams_and_reports_bad_files(model_dir, photos, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    m = labeler(model_dir)
    paths = [skimage_data() / PHOTOS[0], bad, skimage_data() / PHOTOS[1]]
    results = dict(m.predict_files(paths))
    assert sorted(results) == [0, 1, 2]
    assert isinstance(results[1], Exception) and "bad.png" in str(results[1])
    direct = m.predict(photos)
    assert [d.category for d in results[0]] == [d.category for d in direct[0]]  # type: ignore[union-attr]


def test_model_id_covers_sha_and_thresholds_only(model_dir):
    root, sha = model_dir
    base = Sam3PreLabeler(config(sha), root)
    assert base.model_id.startswith(f"sam3@{sha[:12]}-")
    assert base.checkpoint_sha256 == sha
    same = [Sam3PreLabeler(config(sha, path=str(root / "sam3")), root),  # another spelling of the path
            Sam3PreLabeler(config(sha), root / "elsewhere")]
    cfg = config(sha)
    cfg.prelabeler.batch_size, cfg.prelabeler.num_workers, cfg.prelabeler.chunk_size = 7, 3, 11
    same.append(Sam3PreLabeler(cfg, root))
    routed = config(sha, categories=[{**CATEGORIES[0], "thresholds": {"low": 0.1, "high": 0.9}}, *CATEGORIES[1:]])
    same.append(Sam3PreLabeler(routed, root))
    assert {s.model_id for s in same} == {base.model_id}
    different = [Sam3PreLabeler(config("0" * 64), root),
                 Sam3PreLabeler(config(sha, score_threshold=0.6), root),
                 Sam3PreLabeler(config(sha, mask_threshold=0.4), root),
                 Sam3PreLabeler(config(sha, nms_iou=0.7), root),
                 Sam3PreLabeler(config(sha, max_detections=5), root),
                 Sam3PreLabeler(config(sha, categories=[{**CATEGORIES[0], "prompt": "an astronaut"}, *CATEGORIES[1:]]), root),
                 Sam3PreLabeler(config(sha, categories=[*CATEGORIES[:2], {**CATEGORIES[2], "masks": True}]), root)]
    ids = [d.model_id for d in different]
    assert base.model_id not in ids and len(set(ids)) == len(ids)


def test_wrong_or_missing_checkpoint_is_refused(model_dir, tmp_path, photos):
    root, sha = model_dir
    wrong = Sam3PreLabeler(config("f" * 64), root)
    with pytest.raises(CheckpointError) as err:
        wrong.predict(photos[:1])
    assert str(root / "sam3") in str(err.value) and "f" * 64 in str(err.value) and sha in str(err.value)
    missing = Sam3PreLabeler(config(sha, path="nowhere"), root)
    with pytest.raises(CheckpointError, match="nowhere"):
        missing.load()
    changed = tmp_path / "sam3"
    shutil.copytree(root / "sam3", changed)
    (changed / "config.json").write_text((changed / "config.json").read_text().replace("\n", "\n "))
    with pytest.raises(CheckpointError, match=str(changed)):
        Sam3PreLabeler(config(sha, path=str(changed)), root).load()


def test_config_validation(model_dir):
    root, sha = model_dir
    with pytest.raises(ValidationError, match="backend sam3 needs prelabeler.sam3"):
        ProjectConfig.model_validate({"categories": CATEGORIES, "prelabeler": {"backend": "sam3"}})
    with pytest.raises(ValidationError):
        config(sha, score_threshold=1.5)
    with pytest.raises(ValueError, match="detector 'grounding-dino' is not 'sam3'"):
        Sam3PreLabeler(config(sha, categories=[{**CATEGORIES[0], "detector": "grounding-dino"}]), root)

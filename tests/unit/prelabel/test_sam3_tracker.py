"""SAM 3's box-prompted segmenter (``Sam3TrackerModel``, segmenter kind ``sam3-tracker``) behind
the foundation pre-labeler, on the CPU: a tiny random-weight model written with
``save_pretrained``, loaded back through the sha256-checked path, run on real photos. Random
weights make the masks meaningless, so the tests assert shapes, frames, RLE round trips,
identities, and equality with the library's own processor -> model -> post-processing."""

from __future__ import annotations

import shutil

import pytest
import torch

from labelloop.images.files import load_rgb
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.backends.pipeline import batch_of_images, image_row
from labelloop.prelabel.backends.sam_hf import Sam3TrackerSegmenter
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.prelabel_checks import MASKS, PROMPTS, check_frame, exif_rotated_pair
from support.random_weights import write_grounding_dino, write_sam2, write_sam3_tracker


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"root": root,
            "gd_sha": write_grounding_dino(root / "models" / "gd", PROMPTS.values()),
            "tracker": write_sam3_tracker(root / "models" / "tracker")}


def config(models, path="models/tracker", sha=None) -> ProjectConfig:
    cats = [{"name": n, "detector": "grounding-dino", "prompt": PROMPTS[n], "masks": MASKS[n]} for n in PROMPTS]
    return ProjectConfig.model_validate({"categories": cats, "prelabeler": {
        "backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 4,
        "detector": {"path": "models/gd", "sha256": models["gd_sha"], "shortest_edge": 96, "longest_edge": 160,
                     "box_threshold": 0.3},
        "segmenter": {"kind": "sam3-tracker", "path": path, "sha256": sha or models["tracker"]}}})


def test_sam3_tracker_masks_equal_the_transformers_pipeline(models):
    """Worker resize (uint8) + on-device normalize + box scaling + one decoder call per image +
    post-processing give exactly ``Sam3TrackerProcessor(images, input_boxes)`` ->
    ``Sam3TrackerModel(...)`` -> ``post_process_masks`` masks, at each photo's own size."""
    m = FoundationPreLabeler(config(models), models["root"])
    _, seg = m.load()
    assert isinstance(seg, Sam3TrackerSegmenter) and type(seg.model).__name__ == "Sam3TrackerModel"
    rgbs = [load_rgb(skimage_data() / n) for n in ("coffee.png", "chelsea.png")]  # 600 x 400, 451 x 300
    batch = batch_of_images(rgbs, m.prepare())
    assert batch.seg["pixels"].dtype == torch.uint8 and batch.seg["pixels"].shape == (2, 3, 112, 112)
    ref_pixels = seg.processor(images=rgbs, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(seg.pixel_values(batch.seg), ref_pixels, atol=1e-5, rtol=0)
    emb = seg.encode(batch.seg)
    assert [tuple(t.shape) for t in emb] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 32, 8, 8)]
    boxes = [torch.tensor([[10.0, 20.0, 300.0, 380.0], [0.0, 0.0, 600.0, 400.0]]),
             torch.tensor([[100.0, 50.0, 250.0, 200.0]])]
    for j, (rgb, b) in enumerate(zip(rgbs, boxes)):
        h, w = rgb.height, rgb.width
        ours = seg.masks(image_row(emb, j), b, (112, 112), (h, w))
        assert ours.shape == (len(b), h, w) and ours.dtype == torch.bool
        inputs = seg.processor(images=[rgb], input_boxes=[b.tolist()], return_tensors="pt")
        with torch.inference_mode():
            out = seg.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                            multimask_output=False)
        ref = seg.processor.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][:, 0]
        assert torch.equal(ours, ref)


def test_sam3_tracker_predict_files_frame_rle_and_model_id(models, tmp_path):
    m = FoundationPreLabeler(config(models), models["root"])
    assert m.backend == "grounding-dino+sam3-tracker"
    assert m.model_id.startswith(f"grounding-dino+sam3-tracker@{m.checkpoint_sha256[:12]}-")
    exif_rotated_pair(tmp_path)  # orient6.jpg (EXIF 6, shown 300 x 451) and shown.png
    paths = [tmp_path / "orient6.jpg", skimage_data() / "astronaut.png", tmp_path / "shown.png"]
    results = dict(m.predict_files(paths))
    n_masks = 0
    for i, (h, w) in zip(range(3), [(451, 300), (512, 512), (451, 300)]):
        assert results[i]
        check_frame(results[i], h, w)  # boxes in the EXIF-corrected frame, masks (H, W), RLE round trip
        n_masks += sum(d.mask is not None for d in results[i])
    assert n_masks > 0
    assert results[0] == results[2]  # EXIF-rotated file == its displayed pixels


def test_sam3_tracker_refuses_a_changed_or_foreign_checkpoint(models, tmp_path):
    bad = tmp_path / "models" / "tracker"
    shutil.copytree(models["root"] / "models" / "tracker", bad)
    (bad / "preprocessor_config.json").write_text("{}")
    m = FoundationPreLabeler(config(models, path=str(bad)), models["root"])
    with pytest.raises(CheckpointError, match=rf"segmenter sam3-tracker: expected a directory at {bad} .*sha256 is "):
        m.load()
    sam2 = tmp_path / "sam2"
    sha = write_sam2(sam2)
    m = FoundationPreLabeler(config(models, path=str(sam2), sha=sha), models["root"])
    with pytest.raises(CheckpointError, match=r"holds a 'sam2' model, not a SAM 3 tracker"):
        m.load()

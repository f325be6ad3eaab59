"""SAM-HQ and SAM 2 (transformers) as the segmenter of the foundation pre-labeler, on the CPU:
tiny random-weight ``SamHQModel`` / ``Sam2Model`` written with ``save_pretrained``, loaded back
through the sha256-checked path, run on real photos. Random weights make the masks meaningless,
so the tests assert shapes, frames, formats, identities, and equality with the library's own
processor + model + post-processing pipeline."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch
from pydantic import ValidationError

from labelloop.images.files import ImageError, load_rgb
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.loading import CheckpointError, sha256_path
from labelloop.prelabel.backends.pipeline import batch_of_images, image_row
from labelloop.workspace.config import ProjectConfig
from labelloop.workspace.model_specs import SegmenterSpec
from support.helpers import skimage_data
from support.prelabel_checks import (
    MASKS,
    PROMPTS,
    check_frame,
    check_stored_rle_is_the_segmenter_mask,
    exif_rotated_pair,
)
from support.random_weights import TEST_SAM_ARCH, write_grounding_dino, write_sam, write_sam2, write_sam_hq

KINDS = ("sam-hq", "sam2")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"root": root,
            "gd_sha": write_grounding_dino(root / "models" / "gd", PROMPTS.values()),
            "sam-hq": write_sam_hq(root / "models" / "sam-hq"),
            "sam2": write_sam2(root / "models" / "sam2")}


def config(models, kind, **segmenter) -> ProjectConfig:
    seg = {"kind": kind, "path": f"models/{kind}", "sha256": models[kind]} | segmenter
    cats = [{"name": n, "detector": "grounding-dino", "prompt": PROMPTS[n], "masks": MASKS[n]} for n in PROMPTS]
    return ProjectConfig.model_validate({"categories": cats, "prelabeler": {
        "backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 4,
        "detector": {"path": "models/gd", "sha256": models["gd_sha"], "shortest_edge": 96, "longest_edge": 160,
                     "box_threshold": 0.3},
        "segmenter": seg}})


@pytest.fixture(scope="module", params=KINDS)
def labeler(request, models):
    m = FoundationPreLabeler(config(models, request.param), models["root"])
    m.load()
    return m


@pytest.mark.parametrize("kind", KINDS)
def test_masks_equal_the_transformers_pipeline(models, kind):
    """Worker resize (uint8) + on-device normalize / pad + box scaling + one decoder call per
    image + post-processing give exactly the masks of ``processor(images, input_boxes)`` ->
    ``model(...)`` -> ``processor.post_process_masks``, at each image's original size."""
    m = FoundationPreLabeler(config(models, kind), models["root"])
    _, seg = m.load()
    rgbs = [load_rgb(skimage_data() / n) for n in ("coffee.png", "chelsea.png")]  # 600 x 400, 451 x 300
    batch = batch_of_images(rgbs, m.prepare())
    assert batch.seg["pixels"].dtype == torch.uint8 and batch.seg["pixels"].shape == (2, 3, 256, 256)
    want_in = {"sam-hq": [[171, 256], [170, 256]], "sam2": [[256, 256], [256, 256]]}[kind]
    assert batch.seg["input_sizes"].tolist() == want_in  # longer side 256: round(400 * 256 / 600), round(300 * 256 / 451); SAM 2 square
    ref_pixels = seg.processor(images=rgbs, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(seg.pixel_values(batch.seg), ref_pixels, atol=1e-5, rtol=0)
    emb = seg.encode(batch.seg)
    shapes = [tuple(t.shape) for t in emb]
    assert shapes == {"sam-hq": [(2, 32, 16, 16), (2, 16, 16, 32)],
                      "sam2": [(2, 4, 64, 64), (2, 8, 32, 32), (2, 32, 16, 16)]}[kind]
    boxes = [torch.tensor([[10.0, 20.0, 300.0, 380.0], [0.0, 0.0, 600.0, 400.0], [550.0, 350.0, 600.0, 400.0]]),
             torch.tensor([[100.0, 50.0, 250.0, 200.0]])]
    for j, (rgb, b) in enumerate(zip(rgbs, boxes)):
        (h, w), size_in = (rgb.height, rgb.width), tuple(batch.seg["input_sizes"][j].tolist())
        ours = seg.masks(image_row(emb, j), b, size_in, (h, w))
        assert ours.shape == (len(b), h, w) and ours.dtype == torch.bool
        # the whole image as a box maps onto the whole resized input (pixels of the un-padded input)
        assert seg.input_size((h, w)) == size_in  # the worker's resize, as the decoder assumes it
        assert seg.scale_boxes(torch.tensor([[0.0, 0.0, w, h]]), (h, w)).tolist() == \
            [[0.0, 0.0, float(size_in[1]), float(size_in[0])]]
        inputs = seg.processor(images=[rgb], input_boxes=[b.tolist()], return_tensors="pt")
        with torch.inference_mode():
            out = seg.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"],
                            multimask_output=False)
        extra = [inputs["reshaped_input_sizes"]] if kind == "sam-hq" else []
        ref = seg.processor.post_process_masks(out.pred_masks, inputs["original_sizes"], *extra)[0][:, 0]
        assert torch.equal(ours, ref)
    assert seg.masks(image_row(emb, 0), torch.zeros((0, 4)), want_in[0], (400, 600)).shape == (0, 400, 600)
    assert pickle.loads(pickle.dumps(m.prepare())).seg_prepare(rgbs[1]).shape == (3, *want_in[1])  # for workers


def test_predict_files_with_detector_and_segmenter(labeler, tmp_path):
    kind = labeler.settings_cfg.segmenter.kind
    assert labeler.model_id.startswith(f"grounding-dino+{kind}@{labeler.checkpoint_sha256[:12]}-")
    exif_rotated_pair(tmp_path)  # orient6.jpg (EXIF 6) and shown.png, its displayed pixels
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    # one batch of 4 (the detector pads a batch to its largest image: compare within a batch)
    paths = [tmp_path / "orient6.jpg", bad, skimage_data() / "astronaut.png", tmp_path / "shown.png",
             skimage_data() / "coffee.png"]
    results = list(labeler.predict_files(paths))
    assert [i for i, _ in results] == list(range(5))
    assert isinstance(results[1][1], ImageError) and str(bad) in str(results[1][1])
    n_masks = 0
    for (_, dets), (h, w) in zip([results[0], results[2], results[3], results[4]],
                                 [(451, 300), (512, 512), (451, 300), (400, 600)]):
        assert dets
        check_frame(dets, h, w)
        n_masks += sum(d.mask is not None for d in dets)
    assert n_masks > 0
    assert results[0][1] == results[3][1]  # EXIF-rotated file == its displayed pixels


def test_stored_rle_is_the_segmenter_mask(labeler):
    """The stored RLE is exactly the segmenter's thresholded, original-size mask of each stored box."""
    check_stored_rle_is_the_segmenter_mask(labeler)


def test_checkpoint_errors_name_the_path_and_hash(models, tmp_path):
    shutil.copytree(models["root"] / "models", tmp_path / "models")
    hq = tmp_path / "models" / "sam-hq"
    weights = hq / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        FoundationPreLabeler(config(models, "sam-hq"), tmp_path).load()
    assert f"segmenter sam-hq: expected a directory at {hq} with sha256 {models['sam-hq']}" in str(e.value)
    assert f"but its sha256 is {sha256_path(hq)}" in str(e.value)
    # another model type in the directory (with its right hash): refused before transformers half-loads it
    cfg = config(models, "sam2", path="models/sam-hq", sha256=models["sam-hq"])
    with pytest.raises(CheckpointError, match="holds a 'sam_hq' model, not a SAM 2"):
        FoundationPreLabeler(cfg, models["root"]).load()
    # a weight missing from the file: transformers would initialize it randomly; we refuse
    from safetensors.torch import load_file, save_file

    shutil.rmtree(hq)
    shutil.copytree(models["root"] / "models" / "sam-hq", hq)
    state = load_file(weights)
    del state["mask_decoder.hq_token.weight"]
    save_file(state, weights, metadata={"format": "pt"})
    cfg = config(models, "sam-hq", sha256=sha256_path(hq))
    with pytest.raises(CheckpointError, match=r"lacks 1 weight\(s\) of a SAM-HQ .*mask_decoder.hq_token.weight"):
        FoundationPreLabeler(cfg, tmp_path).load()
    shutil.rmtree(hq)
    with pytest.raises(CheckpointError, match="but nothing is there"):
        FoundationPreLabeler(config(models, "sam-hq"), tmp_path).load()


def test_model_id_covers_the_segmenter_kind_and_settings(models, tmp_path):
    sam_sha = write_sam(tmp_path / "models" / "sam.pth", TEST_SAM_ARCH)
    sam = config(models, "sam-hq")
    sam.prelabeler.segmenter = SegmenterSpec(kind="sam", path=str(tmp_path / "models" / "sam.pth"), sha256=sam_sha,
                                             arch=TEST_SAM_ARCH)
    ids = {FoundationPreLabeler(c, models["root"]).model_id for c in
           [sam, config(models, "sam-hq"), config(models, "sam2"), config(models, "sam2", mask_threshold=0.5),
            config(models, "sam2", sha256=models["sam-hq"])]}
    assert len(ids) == 5
    # the same segmenter at another path, the same id
    moved = config(models, "sam2", path=str(models["root"] / "models" / "sam2"))
    assert FoundationPreLabeler(moved, models["root"]).model_id == FoundationPreLabeler(
        config(models, "sam2"), models["root"]).model_id
    spec = sam.prelabeler.segmenter
    assert spec.settings() == spec.model_dump(exclude={"path", "attention", "compile"})  # kind sam: ids unchanged by the new kinds
    assert "arch" not in config(models, "sam2").prelabeler.segmenter.settings()
    with pytest.raises(ValidationError, match="reads its architecture from the checkpoint directory"):
        config(models, "sam2", arch="vit_b")
    with pytest.raises(ValidationError, match="kind"):
        SegmenterSpec(kind="sam3", path="models/sam3", sha256=models["sam2"])


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast(models, kind):
    """The CUDA default (bf16 autocast) on the CPU: the decoder runs on bf16 embeddings, the
    masks come out at the image's size; weights stay float32."""
    cfg = config(models, kind)
    cfg.prelabeler.dtype = "bfloat16"
    m = FoundationPreLabeler(cfg, models["root"])
    assert m.compute_dtype == "bfloat16" and m.model_id != FoundationPreLabeler(config(models, kind), models["root"]).model_id
    _, seg = m.load()
    rgb = load_rgb(skimage_data() / "coffee.png")
    batch = batch_of_images([rgb], m.prepare())
    emb = seg.encode(batch.seg)
    assert torch.bfloat16 in {t.dtype for t in emb}  # autocast ran the encoder (some outputs stay float32)
    low = seg.decode_logits(image_row(emb, 0), torch.tensor([[10.0, 20.0, 300.0, 380.0]]), (400, 600))
    assert low.shape == (1, 1, 64, 64)
    dets = m.predict([rgb])[0]
    assert any(d.mask for d in dets)
    check_frame(dets, 400, 600)
    assert next(seg.model.parameters()).dtype == torch.float32


def test_sam2_video_directory_is_used_in_image_mode(models, tmp_path):
    """The official SAM 2.1 directories hold ``Sam2VideoModel`` (config.json ``sam2_video``):
    ``Sam2Model`` loads its image part (every image weight present) and segments images."""
    import json

    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor

    image = json.loads((models["root"] / "models" / "sam2" / "config.json").read_text())
    video_config = Sam2VideoConfig(
        vision_config=image["vision_config"], prompt_encoder_config=image["prompt_encoder_config"],
        mask_decoder_config=image["mask_decoder_config"], memory_attention_hidden_size=32,
        memory_encoder_hidden_size=32, memory_fuser_embed_dim=32, mask_downsampler_embed_dim=32,
        memory_encoder_output_channels=16, memory_attention_num_layers=1, memory_fuser_intermediate_dim=64,
        memory_attention_feed_forward_hidden_size=64)
    dest = tmp_path / "models" / "sam2-video"
    Sam2VideoModel(video_config).save_pretrained(dest)
    Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size={"height": 256, "width": 256}),
                       video_processor=Sam2VideoVideoProcessor(size={"height": 256, "width": 256})).save_pretrained(dest)
    assert json.loads((dest / "config.json").read_text())["model_type"] == "sam2_video"
    m = FoundationPreLabeler(config(models, "sam2", path=str(dest), sha256=sha256_path(dest)), models["root"])
    _, seg = m.load()
    assert type(seg.model).__name__ == "Sam2Model"
    dets = m.predict([load_rgb(skimage_data() / "coffee.png")])[0]
    assert any(d.mask for d in dets)
    check_frame(dets, 400, 600)

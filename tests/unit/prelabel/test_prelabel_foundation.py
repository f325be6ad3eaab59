"""Grounding DINO + SAM pre-labeler on the CPU: the real transformers / segment-anything classes
built from small configurations with random weights, saved and loaded back through the
checkpoint path with sha256 checks, run on real photos. Random weights make the boxes
meaningless, so these tests assert shapes, frames, formats, identities and exact conversions."""

from __future__ import annotations

import shutil

import pytest
import torch
from pydantic import ValidationError

from labelloop.geometry.masks import decode_rle
from labelloop.images.files import ImageError, load_rgb
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.loading import CheckpointError, sha256_path
from labelloop.prelabel.protocol import PreLabeler
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.prelabel_checks import (
    MASKS,
    PROMPTS,
    check_frame,
    check_stored_rle_is_the_segmenter_mask,
    exif_rotated_pair,
)
from support.random_weights import TEST_SAM_ARCH, write_grounding_dino, write_sam

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"root": root,
            "gd_sha": write_grounding_dino(root / "models" / "gd", PROMPTS.values()),
            "sam_sha": write_sam(root / "models" / "sam.pth", TEST_SAM_ARCH)}


def config(models, *, masks=MASKS, prompts=PROMPTS, **prelabeler) -> ProjectConfig:
    pl = {"backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 4,
          "detector": {"path": "models/gd", "sha256": models["gd_sha"], "shortest_edge": 96, "longest_edge": 160,
                       "box_threshold": 0.3},
          "segmenter": {"path": "models/sam.pth", "sha256": models["sam_sha"], "arch": TEST_SAM_ARCH.model_dump()}}
    for k, v in prelabeler.items():
        pl[k] = {**pl[k], **v} if isinstance(v, dict) and isinstance(pl.get(k), dict) else v
    cats = [{"name": n, "detector": "grounding-dino", "prompt": prompts[n], "masks": masks[n]} for n in prompts]
    return ProjectConfig.model_validate({"categories": cats, "prelabeler": pl})


@pytest.fixture(scope="module")
def labeler(models):
    m = FoundationPreLabeler(config(models), models["root"])
    m.load()
    return m


def test_real_photos_boxes_and_masks_in_the_image_frame(labeler, tmp_path):
    sk = skimage_data()
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    paths = [sk / n for n in PHOTOS[:2]] + [bad] + [sk / n for n in PHOTOS[2:]]
    assert isinstance(labeler, PreLabeler)
    results = list(labeler.predict_files(paths))
    assert [i for i, _ in results] == list(range(5))
    assert isinstance(results[2][1], ImageError) and str(bad) in str(results[2][1])
    n_masks = 0
    for (i, dets), p in zip(results, paths):
        if p == bad:
            continue
        rgb = load_rgb(p)
        assert dets, f"random weights at box_threshold 0.3 still find boxes in {p.name}"
        check_frame(dets, rgb.height, rgb.width)
        n_masks += sum(d.mask is not None for d in dets)
    assert n_masks > 0


def test_rle_decodes_to_the_model_mask(labeler):
    """The stored RLE is exactly the segmenter's thresholded, original-size mask of each stored box."""
    check_stored_rle_is_the_segmenter_mask(labeler)


def test_exif_rotated_photo_is_labelled_in_displayed_pixels(labeler, tmp_path):
    exif_rotated_pair(tmp_path)  # orient6.jpg (EXIF 6) and shown.png, its displayed pixels
    (_, from_exif), (_, from_png) = list(labeler.predict_files([tmp_path / "orient6.jpg", tmp_path / "shown.png"]))
    check_frame(from_exif, 451, 300)
    assert from_exif == from_png
    assert all(decode_rle(d.mask).shape == (451, 300) for d in from_exif if d.mask)


def test_box_conversion_thresholds_and_per_category_nms(labeler):
    det, _ = labeler.load()
    spans = det.text.spans
    assert [det.processor.tokenizer.decode(det.text.input_ids[0, sp]) for sp in spans] == list(PROMPTS.values())
    t = det.model.config.max_text_len
    logits = torch.full((1, 5, t), -10.0)
    logits[0, 0, spans[1][-1]] = 3.0   # query 0: "cat", p = 0.9526
    logits[0, 1, spans[0][0]] = 0.0    # query 1: "person", p = 0.5
    logits[0, 2, spans[1][0]] = 1.0    # query 2: "cat" again on the same box, lower: suppressed by NMS
    logits[0, 3, spans[0][0]] = 2.0    # query 3: "person" on query 0's box: another class, kept
    # query 4: every token at p = 4.5e-5 -> below the thresholds
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.95, 0.1, 0.2, 0.4], [0.5, 0.5, 0.2, 0.4],
                           [0.5, 0.5, 0.2, 0.4], [0.3, 0.3, 0.1, 0.1]]])
    out = det.postprocess(logits, boxes, [(300, 400)])[0]  # H = 300, W = 400
    got = sorted(zip(out.labels.tolist(), [round(s, 4) for s in out.scores.tolist()],
                     [[round(v, 3) for v in b] for b in out.xyxy.tolist()]))
    assert got == [
        (0, 0.5, [340.0, 0.0, 400.0, 90.0]),     # cx 380 w 80 -> 340..420 clipped to W; y -30..90 clipped
        (0, 0.8808, [160.0, 90.0, 240.0, 210.0]),
        (1, 0.9526, [160.0, 90.0, 240.0, 210.0]),
    ]


def test_model_id_is_weights_and_output_settings_only(models):
    base = FoundationPreLabeler(config(models), models["root"])
    import hashlib

    assert base.checkpoint_sha256 == hashlib.sha256(f"{models['gd_sha']}\n{models['sam_sha']}".encode()).hexdigest()
    assert base.model_id.startswith(f"grounding-dino+sam@{base.checkpoint_sha256[:12]}-")
    same = [config(models, batch_size=1, num_workers=2, chunk_size=7),
            config(models, detector={"path": str(models["root"] / "models" / "gd")})]
    routing = config(models)
    routing.routing.defaults.high = 0.99
    same.append(routing)
    for cfg in same:
        assert FoundationPreLabeler(cfg, models["root"]).model_id == base.model_id
    changed = [config(models, prompts={**PROMPTS, "cat": "a kitten"}),
               config(models, detector={"box_threshold": 0.5}), config(models, detector={"text_threshold": 0.5}),
               config(models, detector={"nms_iou": 0.7}), config(models, detector={"shortest_edge": 64}),
               config(models, segmenter={"mask_threshold": 0.5}), config(models, dtype="bfloat16"),
               config(models, detector={"sha256": "0" * 64}), config(models, masks={**MASKS, "face": True})]
    ids = {FoundationPreLabeler(c, models["root"]).model_id for c in changed}
    assert len(ids) == len(changed) and base.model_id not in ids
    boxes_only = FoundationPreLabeler(config(models, masks={k: False for k in MASKS}), models["root"])
    assert boxes_only.checkpoint_sha256 == models["gd_sha"] and boxes_only.model_id.startswith("grounding-dino@")


def test_config_errors_are_specific(models):
    with pytest.raises(ValidationError, match="needs prelabeler.detector"):
        ProjectConfig.model_validate({"categories": [{"name": "a", "detector": "grounding-dino"}],
                                      "prelabeler": {"backend": "foundation"}})
    with pytest.raises(ValidationError, match="sha256"):
        config(models, detector={"sha256": "not-a-hash"})
    cfg = config(models)
    cfg.categories[0].detector = "opencv-hog-person"
    with pytest.raises(ValueError, match="category 'person': detector 'opencv-hog-person'"):
        FoundationPreLabeler(cfg, models["root"])
    no_sam = config(models)
    no_sam.prelabeler.segmenter = None
    with pytest.raises(ValueError, match=r"\['person', 'cat'\] need masks"):
        FoundationPreLabeler(no_sam, models["root"])
    with pytest.raises(ValueError, match="contain no '.'"):
        FoundationPreLabeler(config(models, prompts={**PROMPTS, "cat": "a cat. a dog"}), models["root"]).load()


def test_checkpoints_round_trip_with_their_sha256(models, tmp_path):
    m = FoundationPreLabeler(config(models), models["root"])
    det, seg = m.load()
    saved = torch.load(models["root"] / "models" / "sam.pth", weights_only=True)
    assert all(torch.equal(v, seg.model.state_dict()[k]) for k, v in saved.items())
    from safetensors.torch import load_file

    det.model.save_pretrained(tmp_path / "again")  # save(load(x)) == x: every weight came back
    gd = load_file(models["root"] / "models" / "gd" / "model.safetensors")
    again = load_file(tmp_path / "again" / "model.safetensors")
    assert gd.keys() == again.keys() and all(torch.equal(v, again[k]) for k, v in gd.items())
    # a damaged copy: the error comes on first use, names the path and the expected hash
    shutil.copytree(models["root"] / "models", tmp_path / "models")
    pth = tmp_path / "models" / "sam.pth"
    data = bytearray(pth.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pth.write_bytes(bytes(data))
    broken = FoundationPreLabeler(config(models), tmp_path)
    with pytest.raises(CheckpointError) as e:
        broken.predict([load_rgb(skimage_data() / "camera.png")])
    assert str(pth) in str(e.value) and models["sam_sha"] in str(e.value) and sha256_path(pth) in str(e.value)
    shutil.rmtree(tmp_path / "models" / "gd")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'models' / 'gd'} with sha256 {models['gd_sha']}"):
        FoundationPreLabeler(config(models), tmp_path).load()


def test_bf16_autocast_runs_on_cpu(models):
    m = FoundationPreLabeler(config(models, dtype="bfloat16"), models["root"])
    assert m.compute_dtype == "bfloat16"
    det, seg = m.load()
    seen = []
    linears = [next(mod for mod in det.model.model.decoder.modules() if isinstance(mod, torch.nn.Linear)),
               seg.model.image_encoder.blocks[0].mlp.lin1, seg.model.mask_decoder.output_upscaling[0]]
    hooks = [mod.register_forward_hook(lambda mod, i, o: seen.append(o.dtype)) for mod in linears]
    try:
        rgb = load_rgb(skimage_data() / "astronaut.png")
        dets = m.predict([rgb])[0]
    finally:
        for h in hooks:
            h.remove()
    assert seen and set(seen) == {torch.bfloat16}
    check_frame(dets, 512, 512)
    assert next(det.model.parameters()).dtype == torch.float32  # weights stay fp32 under autocast


def test_dataloader_workers_give_the_same_predictions(models):
    paths = [skimage_data() / n for n in PHOTOS]
    inline = FoundationPreLabeler(config(models, num_workers=0, batch_size=2), models["root"])
    workers = FoundationPreLabeler(config(models, num_workers=2, batch_size=2), models["root"])
    assert list(inline.predict_files(paths)) == list(workers.predict_files(paths))


def test_owlv2_detector_behind_the_same_protocol(models, tmp_path):
    from support.random_weights import write_owlv2

    sha = write_owlv2(tmp_path / "owl", PROMPTS.values())
    cfg = config(models, detector={"kind": "owlv2", "path": str(tmp_path / "owl"), "sha256": sha, "box_threshold": 0.1})
    for c in cfg.categories:
        c.detector = "owlv2"
    m = FoundationPreLabeler(cfg, models["root"])
    assert m.model_id.startswith("owlv2+sam@")
    paths = [skimage_data() / "coffee.png", skimage_data() / "astronaut.png"]
    results = list(m.predict_files(paths))
    for (_, dets), (h, w) in zip(results, [(400, 600), (512, 512)]):
        assert dets
        check_frame(dets, h, w)
    det, _ = m.load()
    # boxes are normalized to the padded square: times max(H, W), then clipped to the image
    logits = torch.full((1, 2, 3), -10.0)
    logits[0, 0, 2] = 2.0  # "face", p = 0.8808
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]]])
    out = det.postprocess(logits, boxes, [(300, 600)])[0]
    assert out.labels.tolist() == [2] and [round(v, 3) for v in out.xyxy[0].tolist()] == [240.0, 240.0, 360.0, 300.0]
    assert round(out.scores.item(), 4) == 0.8808

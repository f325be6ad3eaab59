"""Florence-2 (``detector: {kind: florence-2}``) behind the foundation pre-labeler, on the CPU: a
tiny random-weight ``Florence2ForConditionalGeneration`` with a tokenizer built locally, saved
with ``save_pretrained`` and loaded through the sha256-checked path; prompts and pixels equal the
processor's; the score rule (mean probability of a box's 4 generated location tokens) is checked
against teacher forcing; boxes in the EXIF-corrected image's pixels."""

from __future__ import annotations

import pytest
import torch

from labelloop.images.files import load_rgb
from labelloop.prelabel.backends.florence2 import TASK, Florence2Detector, location_scores
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.backends.pipeline import batch_of_images
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.prelabel_checks import MASKS, PROMPTS, check_frame, exif_rotated_pair
from support.random_weights import write_florence2, write_sam2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"root": root, "florence": write_florence2(root / "models" / "florence", PROMPTS.values()),
            "sam2": write_sam2(root / "models" / "sam2")}


def config(models, path="models/florence", **detector) -> ProjectConfig:
    cats = [{"name": n, "detector": "florence-2", "prompt": PROMPTS[n], "masks": MASKS[n]} for n in PROMPTS]
    return ProjectConfig.model_validate({"categories": cats, "prelabeler": {
        "backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 4,
        "detector": {"kind": "florence-2", "path": path, "sha256": models["florence"], "box_threshold": 0.0,
                     "max_detections": 3, **detector},
        "segmenter": {"kind": "sam2", "path": "models/sam2", "sha256": models["sam2"]}}})


@pytest.fixture(scope="module")
def labeler(models):
    m = FoundationPreLabeler(config(models), models["root"])
    m.load()
    return m


def test_florence_prompts_and_pixels_are_the_processors(labeler):
    det, _ = labeler.load()
    assert isinstance(det, Florence2Detector) and type(det.model).__name__ == "Florence2ForConditionalGeneration"
    rgb = load_rgb(skimage_data() / "coffee.png")
    for c, prompt in enumerate(PROMPTS.values()):
        ref = det.processor(text=[TASK + prompt], images=[rgb], return_tensors="pt")
        assert torch.equal(det.prompts[c], ref["input_ids"])
    batch = batch_of_images([rgb], labeler.prepare())
    torch.testing.assert_close(batch.det["pixel_values"], ref["pixel_values"], atol=1e-6, rtol=0)
    # bin centres, as the processor's dequantize (which truncates to int)
    bins = torch.tensor([[0, 10, 500, 999]])
    ours = (bins + 0.5) * torch.tensor([600, 400, 600, 400]) / 1000
    assert torch.equal(ours.floor().int(), det.processor.post_processor.dequantize(bins, size=(600, 400)))


def test_florence_score_is_mean_location_token_probability_and_greedy_beats_altered(labeler):
    """The generated (greedy) boxes score higher than the same sequence with its location tokens
    altered, scored teacher-forced; teacher forcing the generated sequence gives its scores back."""
    det, _ = labeler.load()
    rgbs = [load_rgb(skimage_data() / n) for n in ("coffee.png", "astronaut.png")]
    pv = batch_of_images(rgbs, labeler.prepare()).det["pixel_values"]
    tokens, logits = det.generate(pv, 0)
    assert tokens.shape[1] == det.max_new_tokens(0) == 3 * (4 + det.prompts[0].shape[1] - 65) + 2
    forced = det.score_sequences(pv, 0, tokens)
    loc_ids = torch.nonzero(det.loc_of >= 0).flatten()
    for i in range(2):
        gen = location_scores(tokens[i], logits[i], det.loc_of)
        assert len(gen.scores) >= 1 and ((gen.scores > 0) & (gen.scores <= 1)).all()
        probs = logits[i].float().softmax(-1)
        first = [t for t in range(tokens.shape[1]) if det.loc_of[tokens[i, t]] >= 0][:4]
        want = float(torch.stack([probs[t, tokens[i, t]] for t in first]).mean())
        assert gen.scores[0] == pytest.approx(want, rel=1e-6)
        torch.testing.assert_close(forced[i].scores, gen.scores, atol=1e-5, rtol=1e-4)
        assert torch.equal(forced[i].bins, gen.bins)
        altered = tokens[i].clone()
        is_loc = det.loc_of[altered] >= 0
        altered[is_loc] = loc_ids[(det.loc_of[altered[is_loc]] + 500) % 1000]  # every location moved half the grid
        worse = det.score_sequences(pv[i:i + 1], 0, altered[None])[0]
        assert len(worse.scores) == len(gen.scores)
        assert (worse.scores < gen.scores).all(), (worse.scores, gen.scores)


def test_florence_predict_files_boxes_in_the_exif_corrected_frame(labeler, tmp_path):
    assert labeler.backend == "florence-2+sam2"
    assert labeler.model_id.startswith(f"florence-2+sam2@{labeler.checkpoint_sha256[:12]}-")
    exif_rotated_pair(tmp_path)
    paths = [tmp_path / "orient6.jpg", skimage_data() / "coffee.png", tmp_path / "shown.png"]
    results = dict(labeler.predict_files(paths))
    for i, (h, w) in zip(range(3), [(451, 300), (400, 600), (451, 300)]):
        assert results[i] and len(results[i]) <= 3
        check_frame(results[i], h, w)  # xyxy inside (H, W), scores in [0, 1], masks (H, W) + RLE round trip
    assert results[0] == results[2]


def test_florence_refuses_a_missing_checkpoint_a_tokenizer_without_location_tokens_and_bad_prompts(models, tmp_path):
    with pytest.raises(CheckpointError, match=rf"detector florence-2: expected a directory at {tmp_path / 'nope'} "
                                              r"with sha256 [0-9a-f]{64}, but nothing is there"):
        FoundationPreLabeler(config(models, path=str(tmp_path / "nope")), models["root"]).load()
    sha = write_florence2(tmp_path / "noloc", PROMPTS.values(), loc_tokens=False)
    cfg = config(models, path=str(tmp_path / "noloc"))
    cfg.prelabeler.detector.sha256 = sha
    with pytest.raises(CheckpointError, match=r"its tokenizer lacks the location tokens <loc_0> .. <loc_999>"):
        FoundationPreLabeler(cfg, models["root"]).load()
    det, _ = FoundationPreLabeler(config(models), models["root"]).load()
    with pytest.raises(ValueError, match="Florence-2 prompts must be non-empty and differ per category"):
        det.encode_prompts(["a cat", "a cat"])

"""Fine-tuning RT-DETRv2 on a release (labelloop.training): a tiny random-weight model really
trains (it overfits four hand-labelled photos to a pycocotools AP >= 0.9, and the promotion gate
promotes it over an untrained model of the same config on 20 test images, not the reverse), a
crash mid-run resumes from the last complete epoch, the class head follows the release's ontology,
the bootstrap's AP equals pycocotools', and bad input is refused by name. ``pytest -k finetune``
selects them all."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from labelloop.models import registry
from labelloop.models.hashing import sha256_path
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.training import card as card_mod
from labelloop.training.data import ReleaseDataError, read_split
from labelloop.training.detector import build_model, check_checkpoint_dir
from labelloop.training.evaluation import (
    EvaluationError,
    coco_ap,
    paired_bootstrap,
    predict,
    resampled_ap,
)
from labelloop.training.loop import DecodedImages, last_checkpoint, make_batch, train_detector
from labelloop.training.promotion import gate
from labelloop.workspace.config import Training
from labelloop.workspace.layout import Workspace
from support.training_release import CATEGORIES, write_release

OVERFIT = {"architecture": "tiny", "image_size": 128, "batch_size": 2, "learning_rate": 2e-3, "max_grad_norm": 0.1,
           "device": "cpu"}


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine more threads contend and run ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def overfit(release, tmp_path_factory):
    """The tiny detector trained for ``EPOCHS`` epochs on the four photos, once per module (the
    slowest part of these tests): ``(split, TrainResult, progress reports)``."""
    split = read_split(release, "train")
    seen: list = []
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as ``one_thread``
    try:
        result = train_detector(split, Training(epochs=EPOCHS, **OVERFIT), tmp_path_factory.mktemp("overfit") / "run",
                                progress=seen.append)
    finally:
        torch.set_num_threads(before)
    return split, result, seen


def test_finetune_tiny_detector_overfits_four_photos(overfit, one_thread):
    split, result, seen = overfit
    assert split.categories == CATEGORIES and len(split.examples) == 4
    assert (result.model_dir / "config.json").is_file() and result.resumed_from is None
    assert [p.global_step for p in seen] == list(range(1, 2 * EPOCHS + 1)) and seen[-1].epoch == EPOCHS
    assert result.losses[-1] < result.losses[0] / 3
    ev = coco_ap(split, predict(result.model_dir, split, 128))
    assert ev.AP50 == pytest.approx(1.0)
    assert ev.AP >= AP_MIN, ev
    assert set(ev.per_class) == set(CATEGORIES) and all(v is not None and v > 0.5 for v in ev.per_class.values())
    # the bootstrap's AP over every image once is pycocotools' stats[0]
    assert resampled_ap(ev, ev.image_ids) == pytest.approx(ev.AP, abs=1e-9)


EPOCHS = 200
AP_MIN = 0.9


def test_finetune_gate_promotes_the_trained_candidate_and_not_an_untrained_one(overfit, tmp_path, one_thread):
    """The gate both ways on real evaluations: 20 test images (mirrored / cropped copies of the
    four photos, :func:`support.training_release.write_release`), the trained candidate against
    an untrained model of the same tiny config (random head, what ``train_detector`` starts from)."""
    _split, result, _seen = overfit
    test = read_split(write_release(tmp_path / "rel", split="test", copies=5), "test")
    assert len(test.examples) == 20 and test.categories == CATEGORIES
    untrained = build_model(CATEGORIES, None, "tiny", seed=Training().seed)
    trained_ev = coco_ap(test, predict(result.model_dir, test, 128))
    untrained_ev = coco_ap(test, predict(untrained, test, 128))
    assert trained_ev.image_ids == untrained_ev.image_ids == list(range(1, 21))
    assert trained_ev.AP >= 0.7 and trained_ev.AP50 >= 0.9, trained_ev  # AP 0.77 on these copies (seed 0)
    assert untrained_ev.AP < 0.1, untrained_ev
    settings = Training(bootstrap_resamples=300)
    yes = gate(trained_ev, untrained_ev, settings)
    assert yes.promote and yes.bootstrap.images == 20 and "20 test images" in yes.reason
    assert yes.bootstrap.difference == pytest.approx(trained_ev.AP - untrained_ev.AP)
    assert settings.promote_margin < yes.bootstrap.low <= yes.bootstrap.difference <= yes.bootstrap.high
    no = gate(untrained_ev, trained_ev, settings)
    assert not no.promote and "kept as a candidate" in no.reason
    assert no.bootstrap.low <= no.bootstrap.high < 0


class Crash(RuntimeError):
    pass


def test_finetune_crash_mid_epoch_resumes_from_the_last_epoch(release, tmp_path, one_thread):
    split = read_split(release, "train")
    settings = Training(epochs=3, **OVERFIT)

    def crash(p):
        if p.epoch == 3 and p.step == 1:
            raise Crash("power cut")

    with pytest.raises(Crash):
        train_detector(split, settings, tmp_path / "run", progress=crash)
    assert last_checkpoint(tmp_path / "run") == (2, tmp_path / "run" / "checkpoints" / "epoch-0002")
    assert not (tmp_path / "run" / "model").exists()  # nothing half-trained to evaluate or promote
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["epoch-0002"]
    resumed = train_detector(split, settings, tmp_path / "run")
    straight = train_detector(split, settings, tmp_path / "straight")
    assert resumed.resumed_from == 2 and straight.resumed_from is None
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4)
    a = build_model(CATEGORIES, resumed.model_dir).state_dict()
    b = build_model(CATEGORIES, straight.model_dir).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_finetune_class_head_is_reinitialised_for_the_release_ontology(tmp_path):
    base = build_model(["person", "cat", "cup", "dog"], None, "tiny", seed=1)
    base.save_pretrained(tmp_path / "base")
    model = build_model(["person", "bicycle"], tmp_path / "base")
    assert model.config.num_labels == 2 and model.config.id2label == {0: "person", 1: "bicycle"}
    assert model.model.decoder.class_embed[0].out_features == 2
    before, after = base.state_dict(), model.state_dict()
    stem = next(k for k in before if "backbone" in k and before[k].dtype.is_floating_point)
    assert torch.equal(before[stem], after[stem])  # the backbone keeps its weights


def test_finetune_card_and_models_row(release, tmp_path, one_thread):
    split = read_split(release, "train")
    result = train_detector(split, Training(epochs=1, **OVERFIT), tmp_path / "ws" / "models" / "c1")
    ws = Workspace.at(tmp_path / "ws")
    ev = coco_ap(split, predict(result.model_dir, split, 128)).as_dict()
    card = card_mod.make_card(name="c1", release="dataset-v1", release_dir=release,
                              hyperparameters=Training(epochs=1, **OVERFIT).model_dump(), model_dir=result.model_dir,
                              checkpoint="models/c1/model", categories=split.categories,
                              metrics={"candidate": {"test": ev}}, losses=result.losses, trained_at=registry.now_utc(),
                              seconds=result.seconds, device=result.device)
    path = card_mod.write_card(tmp_path / "ws" / "models" / "c1", card)
    row = card_mod.register_candidate(ws, card, path)
    assert row["status"] == "candidate" and row["sha256"] == sha256_path(result.model_dir)
    assert row["trained_on_release"] == "dataset-v1" and row["card_path"] == "models/c1/model_card.json"
    assert json.loads(row["metrics_json"])["candidate"]["test"]["images"] == 4
    stored = json.loads(path.read_text())
    assert stored["labels_sha256"] == card_mod.labels_sha256(release) and len(stored["labels_sha256"]) == 64
    assert stored["hyperparameters"]["epochs"] == 1 and stored["family"] == "rt-detrv2"
    assert registry.get_model(ws, "c1") == row
    # lineage of a label this model predicted (labelloop lineage ID)
    assert card_mod.trained_on(ws, row["sha256"]) == \
        f"model c1, trained on dataset-v1 (labels sha256 {stored['labels_sha256'][:12]})"
    assert card_mod.trained_on(ws, "f" * 64) is None and card_mod.trained_on(ws, None) is None


def test_finetune_bad_input_is_refused_by_name(release, tmp_path):
    with pytest.raises(ReleaseDataError, match="no COCO instances file for split 'val'"):
        read_split(release, "val")
    broken = write_release(tmp_path / "broken")
    coco = json.loads((broken / "annotations" / "instances_train.json").read_text())
    coco["annotations"][0]["category_id"] = 99
    (broken / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    with pytest.raises(ReleaseDataError, match="unknown category_id 99"):
        read_split(broken, "train")
    missing = write_release(tmp_path / "missing")
    next((missing / "images" / "train").iterdir()).unlink()
    with pytest.raises(ReleaseDataError, match="is missing"):
        read_split(missing, "train")
    with pytest.raises(CheckpointError, match="no such directory"):
        check_checkpoint_dir(tmp_path / "nope")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "d_fine"}')
    with pytest.raises(CheckpointError, match="model_type 'd_fine'"):
        build_model(CATEGORIES, tmp_path / "other")


def test_finetune_promotion_needs_enough_test_images(release):
    split = read_split(release, "train")
    gt = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
          for a in split.coco["annotations"]]
    perfect, empty = coco_ap(split, gt), coco_ap(split, [])
    assert perfect.AP == pytest.approx(1.0) and empty.AP == 0.0
    with pytest.raises(EvaluationError, match="4 reviewed test image.*at least 20.*review 16 more"):
        paired_bootstrap(perfect, empty, min_images=20)
    boot = paired_bootstrap(perfect, empty, resamples=200, min_images=4)
    assert boot.difference == pytest.approx(1.0) and boot.low == pytest.approx(1.0) and boot.images == 4


def test_finetune_decoded_images_match_make_batch_and_are_decoded_once(release):
    split = read_split(release, "train")
    decoded = DecodedImages(96, "cpu")
    first = decoded.batch(split.examples)
    want = make_batch(split.examples, 96, "cpu")
    assert first[0].shape == (len(split.examples), 3, 96, 96) and first[0].dtype == torch.float32
    assert torch.equal(first[0], want[0])  # uint8 / 255 is what the float32 path computes
    assert all(torch.equal(a[k], b[k]) for a, b in zip(first[1], want[1]) for k in a)
    assert len(decoded._cache) == len(split.examples)
    again = decoded.batch(split.examples[::-1])
    assert torch.equal(again[0], first[0].flip(0))
    small = DecodedImages(96, "cpu", max_bytes=3 * 96 * 96)  # room for one image: the rest decoded per batch
    assert torch.equal(small.batch(split.examples)[0], want[0]) and len(small._cache) == 1

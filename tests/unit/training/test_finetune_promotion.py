"""The fine-tuned detector as a pre-labeler (labelloop.training.backend), the promotion gate both
ways on real pycocotools evaluations of 20 test images, and what promotion changes in the
workspace (labelloop.training.promotion). ``pytest -k finetune`` selects them."""

from __future__ import annotations

import json

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from labelloop.models import registry
from labelloop.models.hashing import sha256_path
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.protocol import PreLabeler
from labelloop.release.diff import view_of_folder
from labelloop.release.summary import audit_markdown
from labelloop.training import card as card_mod
from labelloop.training.backend import RTDetrV2PreLabeler
from labelloop.training.data import read_split
from labelloop.training.detector import load_rgb
from labelloop.training.evaluation import EvaluationError, coco_ap, prelabeler_results
from labelloop.training.loop import train_detector
from labelloop.training.promotion import PromotionError, gate, promote
from labelloop.workspace.config import ConfigError, Training, load_config
from labelloop.workspace.layout import Workspace
from support.helpers import cli
from support.training_release import CATEGORIES, write_release

TINY = {"architecture": "tiny", "image_size": 128, "batch_size": 2, "device": "cpu"}


def write_yaml(root, **prelabeler):
    root.mkdir(parents=True, exist_ok=True)
    body = {"project": "t", "categories": [{"name": c, "detector": "none", "prompt": c} for c in CATEGORIES],
            "routing": {"calibrated_policy": None}, "prelabeler": prelabeler or {"backend": "opencv"}}
    (root / "labelloop.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return Workspace.at(root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rel = write_release(tmp_path_factory.mktemp("release"))
    split = read_split(rel, "train")
    root = tmp_path_factory.mktemp("ws")
    result = train_detector(split, Training(epochs=1, **TINY), root / "models" / "c1")
    return rel, split, root, result.model_dir


def test_finetune_backend_prelabels_through_the_protocol(trained, tmp_path):
    _rel, split, _root, model_dir = trained
    sha = sha256_path(model_dir)
    ws = write_yaml(tmp_path / "ws", backend="rtdetrv2", batch_size=3,
                    rtdetrv2={"path": str(model_dir), "sha256": sha})
    model = RTDetrV2PreLabeler(ws.config(), ws.root)
    assert isinstance(model, PreLabeler)
    assert model.model_id.startswith(f"rtdetrv2@{sha[:12]}-") and model.checkpoint_sha256 == sha
    images = [load_rgb(e.file) for e in split.examples]
    dets = model.predict(images)
    assert len(dets) == 4 and all(0 < len(d) <= 20 * 3 for d in dets)  # at most queries x classes
    assert all([x.score for x in d] == sorted((x.score for x in d), reverse=True) for d in dets)
    for im, per in zip(images, dets):
        for d in per[:5]:
            assert d.category in CATEGORIES and 0 <= d.score <= 1
            assert 0 <= d.bbox[0] <= d.bbox[2] <= im.width and 0 <= d.bbox[1] <= d.bbox[3] <= im.height
    rows = prelabeler_results(model, split)  # the current pre-labeler, measured like a candidate
    assert coco_ap(split, rows).image_ids == [1, 2, 3, 4]
    bad = write_yaml(tmp_path / "bad", backend="rtdetrv2", rtdetrv2={"path": str(model_dir), "sha256": "0" * 64})
    lazy = RTDetrV2PreLabeler(bad.config(), bad.root)
    assert lazy.model_id.startswith("rtdetrv2@000000000000-")  # model_id never reads the checkpoint
    with pytest.raises(CheckpointError, match="0000000000"):
        lazy.predict(images[:1])
    other = write_yaml(tmp_path / "other", backend="rtdetrv2", rtdetrv2={"path": str(model_dir), "sha256": sha})
    cfg = other.config().model_copy(update={"categories": other.config().categories[:2]})
    with pytest.raises(CheckpointError, match=r"classes \['cup'\] are not categories"):
        RTDetrV2PreLabeler(cfg, other.root).predict(images[:1])


def test_finetune_gate_both_ways_on_twenty_test_images(tmp_path):
    test = read_split(write_release(tmp_path / "rel", split="test", copies=5), "test")
    assert len(test.examples) == 20
    truth = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
             for a in test.coco["annotations"]]
    half = [r for r in truth if r["image_id"] % 2]  # finds the objects of half of the images
    good, weak = coco_ap(test, truth), coco_ap(test, half)
    assert good.AP == pytest.approx(1.0) and 0.3 < weak.AP < 0.7
    settings = Training(bootstrap_resamples=300)
    yes = gate(good, weak, settings)
    assert yes.promote and yes.bootstrap.low > 0 and "20 test images" in yes.reason
    no = gate(weak, good, settings)
    assert not no.promote and no.bootstrap.high < 0 and "kept as a candidate" in no.reason
    tie = gate(good, good, settings.model_copy(update={"promote_margin": 0.0}))
    assert not tie.promote and tie.bootstrap.low == 0.0
    with pytest.raises(EvaluationError, match="a promotion needs at least 30"):
        gate(good, weak, settings.model_copy(update={"min_test_images": 30}))


def test_finetune_promote_points_the_config_at_the_model_and_clears_calibration(trained, tmp_path):
    rel, _split, _root, model_dir = trained
    ws = write_yaml(tmp_path / "ws")
    (ws.root / "calibration").mkdir()
    raw = yaml.safe_load(ws.config_path.read_text())
    raw["routing"]["calibrated_policy"] = "calibration/policy-old.json"
    ws.config_path.write_text(yaml.safe_dump(raw))
    card = card_mod.make_card(name="c1", release="dataset-v1", release_dir=rel, hyperparameters={},
                              model_dir=model_dir, checkpoint=str(model_dir), categories=CATEGORIES, metrics={},
                              losses=[], trained_at=registry.now_utc(), seconds=0.0, device="cpu")
    card_mod.register_candidate(ws, card, card_mod.write_card(tmp_path, card))
    sha = card["checkpoint_sha256"]
    line = f"model c1, trained on dataset-v1 (labels sha256 {card['labels_sha256'][:12]})"
    assert registry.trained_on_lines(ws) == {sha: line} and card_mod.trained_on(ws, sha) == line
    # the release's audit summary names the training release of a fine-tuned model's labels
    view = view_of_folder(rel, "dataset-v2")
    rows = [{"label_id": "lb-1", "image_id": "im-1", "file_name": "astronaut.png", "category": "person",
             "origin": "model", "model_id": "rtdetrv2", "checkpoint_sha256": sha, "score": 0.9,
             "label_run_id": "run12345"},
            {"label_id": "lb-2", "image_id": "im-2", "file_name": "coffee.png", "category": "cup",
             "origin": "model", "model_id": "opencv", "checkpoint_sha256": "0" * 64, "score": 0.5}]
    md = audit_markdown(view, {"tag": "dataset-v2", "git_sha": "a" * 40, "content_sha256": "b" * 64}, "note",
                        rows, None, registry.trained_on_lines(ws))
    assert f"Fine-tuned models: {line}." in md
    assert f"| rtdetrv2 run run12345 ({line}) |" in md and "| opencv run  |" in md
    (ws.root / ".git").mkdir(exist_ok=True)
    (ws.root / ".dvc").mkdir(exist_ok=True)
    listed = cli(ws.root, "models", "list", "--json")
    assert json.loads(listed.stdout)["installed"][0]["metrics_json"] == "{}"
    with pytest.raises(PromotionError, match="needs who"):
        promote(ws, "c1", by="", why="x")
    with pytest.raises(PromotionError, match="no model 'nope'"):
        promote(ws, "nope", by="lead", why="x")
    row = promote(ws, "c1", by="lead", why="AP +0.2 on dataset-v1 test", commit=False)
    assert row["status"] == "current" and row["promoted_by"] == "lead" and row["promoted_reason"].startswith("AP")
    cfg = load_config(ws.config_path)
    assert cfg.prelabeler.backend == "rtdetrv2" and cfg.prelabeler.rtdetrv2 is not None
    assert cfg.prelabeler.rtdetrv2.sha256 == sha256_path(model_dir) and cfg.routing.calibrated_policy is None
    assert registry.current_model(ws, "detector")["name"] == "c1"
    assert json.loads(tmp_path.joinpath("model_card.json").read_text())["release"] == "dataset-v1"
    registry.update_model(ws, "c1", metrics_json=json.dumps({"candidate": {"test": {"AP": 0.25, "AP50": 0.5, "images": 20}},
                                                             "current": {"test": {"AP": 0.125, "AP50": 0.25, "images": 20}}}))
    text = cli(ws.root, "models", "list").stdout
    assert "c1" in text and "<- current" in text and "current: detector: c1" in text
    assert "this model: AP 0.250 AP50 0.500 on 20 test images" in text
    assert "then current: AP 0.125 AP50 0.250 on 20 test images" in text
    assert "promoted " in text and "by lead: AP +0.2 on dataset-v1 test" in text


def test_finetune_backend_config_needs_its_spec(tmp_path):
    ws = write_yaml(tmp_path / "ws", backend="rtdetrv2")
    with pytest.raises(ConfigError, match="backend rtdetrv2 needs prelabeler.rtdetrv2"):
        ws.config()

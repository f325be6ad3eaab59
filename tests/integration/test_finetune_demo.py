"""``labelloop train`` and ``labelloop models promote`` on the demo's release (issue #18's "done
when", at test size): a tiny RT-DETRv2 candidate is trained on dataset-v2's train split, recorded
with its card, refused by the gate (the demo's release, dataset-v2, has no reviewed test box; the
message says how many test images are needed and gives both models' AP on the train split), promoted by a person's override, and the next ``labelloop run`` uses
it. ``pytest -k finetune`` selects it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from labelloop.models import registry
from labelloop.workspace.layout import Workspace
from labelloop.workspace.versioning import git
from support.helpers import cli, skimage_data

pytestmark = pytest.mark.e2e


def test_finetune_train_and_promote_on_the_demo_release(tmp_path):
    root = tmp_path / "demo"
    cli(root, "demo")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["training"] = {"architecture": "tiny", "image_size": 64, "epochs": 2, "batch_size": 4, "device": "cpu"}
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = json.loads(cli(root, "train", "--json").stdout)
    name = out["name"]
    assert name.startswith("rtdetrv2-dataset-v2-") and out["release"] == "dataset-v2" and not out["promoted"]
    reason = out["metrics"]["gate"]["reason"]
    assert "the test split has 1 image(s); a promotion needs at least 20" in reason and "19 more" in reason
    cand, cur = out["metrics"]["candidate"]["train"], out["metrics"]["current"]["train"]
    assert cand["images"] == cur["images"] == 9 and "skipped" in out["metrics"]["candidate"]["test"]
    assert (f"train (seen in training: not a gate figure): AP candidate {cand['AP']:.3f} vs current {cur['AP']:.3f}"
            in reason)
    card = json.loads(Path(out["card_path"]).read_text())
    assert card["hyperparameters"]["epochs"] == 2 and len(card["losses"]) == 2 and card["device"] == "cpu"
    ws = Workspace.at(root)
    row = registry.get_model(ws, name)
    assert row is not None and row["status"] == "candidate" and row["trained_on_release"] == "dataset-v2"
    assert row["labels_sha256"] == card["labels_sha256"] and row["sha256"] == card["checkpoint_sha256"]

    again = json.loads(cli(root, "train", "--json").stdout)  # same release: the finished run is reused
    assert again["checkpoint_sha256"] == out["checkpoint_sha256"]

    refused = cli(root, "models", "promote", "nope", "--by", "lead", "--why", "x", ok=False)
    assert refused.exit_code == 1 and "no model 'nope'" in refused.output
    cli(root, "models", "promote", name, "--by", "lead", "--why", "demo override")
    promoted = yaml.safe_load((root / "labelloop.yaml").read_text())
    assert promoted["prelabeler"]["backend"] == "rtdetrv2"
    assert promoted["prelabeler"]["rtdetrv2"] == {"path": row["path"], "sha256": row["sha256"]}
    assert promoted["routing"]["calibrated_policy"] is None
    assert git(root, "log", "-1", "--format=%s").startswith(f"promote {name} to pre-labeler (lead: demo override)")
    assert registry.current_model(ws, "detector")["promoted_reason"] == "demo override"
    from labelloop.review.store import review_store
    from labelloop.workspace import repo

    store = review_store(ws)
    reviewed, humans = set(store.latest_reviews()), store.human_labels()
    late = tmp_path / "late"  # a batch nobody reviewed, besides the demo's reviewed one
    late.mkdir()
    for photo in ("horse.png", "retina.jpg"):
        shutil.copy(skimage_data() / photo, late / photo)
    cli(root, "ingest", str(late), "--batch", "late")
    cli(root, "run")  # the promoted model is the pre-labeler now: the run builds it from labelloop.yaml
    batches = sorted(p.name for p in (root / "tables" / "prelabels").iterdir())
    new_ids = {d.name for b in batches for d in repo.prelabel_dir(ws, b, "x").parent.iterdir()
               if d.name.startswith("rtdetrv2@")}
    assert len(new_ids) == 1
    predicted = set().union(*(repo.done_image_ids(repo.prelabel_dir(ws, b, next(iter(new_ids)))) for b in batches))
    wanted = {r["image_id"] for b in batches for r in repo.images_to_label(ws, b)}
    assert reviewed & wanted and wanted - reviewed  # the demo has reviewed and unreviewed images
    assert predicted == wanted  # unreviewed ones re-predicted, reviewed ones predicted too
    assert review_store(ws).human_labels() == humans  # no human label changed
    # calibrate measures the new model on the reviewed images (the promotion left category thresholds)
    cal = json.loads(cli(root, "calibrate", "--json").stdout)
    assert cal["data"]["predictions"] > 0 and not cal["applied"]

    # the Dagster asset: trains (reuses the finished run), evaluates, and its blocking check fails
    import dagster as dg

    from assets.training import detector_training
    from resources.prelabeler import PreLabelerResource
    from resources.storage import WorkspaceResource

    res = dg.materialize([detector_training], resources={"storage": WorkspaceResource(root=str(root)),
                                                         "prelabeler": PreLabelerResource()}, raise_on_error=False)
    mat = res.asset_materializations_for_node("detector_training")[0]
    assert mat.metadata["model"].value == name and mat.metadata["promoted"].value is False
    (check,) = res.get_asset_check_evaluations()
    assert check.check_name == "candidate_beats_current" and not check.passed
    assert "a promotion needs at least 20" in check.metadata["reason"].value

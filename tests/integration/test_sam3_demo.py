"""``labelloop demo --prelabeler sam3|foundation``: without pulled models, one line naming the
pull command and no workspace made; with models in ``$LABELLOOP_MODELS`` (tiny random-weight SAM 3
written there as ``labelloop models pull`` leaves it), the demo's workspace is configured for them
and its config loads the model through the sha256-checked path."""

from __future__ import annotations

from labelloop.models.use import pulled_prelabeler, write_prelabeler
from labelloop.prelabel.backends.sam3 import Sam3PreLabeler
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from support.helpers import cli
from support.random_weights import write_sam3

DEMO_PROMPTS = ["a person", "a human face", "a cat"]


def test_sam3_demo_without_pulled_models_says_how_to_pull(tmp_path, monkeypatch):
    monkeypatch.delenv("LABELLOOP_MODELS", raising=False)
    res = cli(tmp_path / "demo", "demo", "--prelabeler", "sam3", ok=False)
    assert res.exit_code != 0 and not (tmp_path / "demo").exists()
    assert "--prelabeler sam3: no pulled sam3 ($LABELLOOP_MODELS is not set)" in res.output
    assert "labelloop models pull sam3" in res.output and len(res.output.strip().splitlines()) == 1
    monkeypatch.setenv("LABELLOOP_MODELS", str(tmp_path / "models"))
    res = cli(tmp_path / "demo", "demo", "--prelabeler", "foundation", ok=False)
    assert f"no pulled detector in {tmp_path / 'models'}" in res.output
    assert "labelloop models pull grounding-dino-tiny" in res.output


def test_sam3_demo_uses_the_pulled_model(tmp_path):
    shared = tmp_path / "shared"
    sha = write_sam3(shared / "sam3", DEMO_PROMPTS)
    pre, kind = pulled_prelabeler(shared, "sam3")
    assert pre == {"backend": "sam3", "sam3": {"path": str(shared / "sam3"), "sha256": sha}} and kind == "sam3"
    ws = Workspace.at(tmp_path / "demo")
    init_workspace(ws)
    write_prelabeler(ws, {**pre, "device": "cpu", "num_workers": 0}, kind)
    cfg = ws.config()
    assert {c.detector for c in cfg.categories} == {"sam3"} and cfg.prelabeler.sam3.sha256 == sha
    labeler = Sam3PreLabeler(cfg, ws.root)
    labeler.load()
    assert labeler.model_id.startswith(f"sam3@{sha[:12]}-")


def test_sam3_demo_refuses_models_inside_the_folder_it_replaces(tmp_path, monkeypatch):
    """Models pulled into the old demo folder would be deleted with it: the demo refuses before
    touching anything, naming the models and the folder, and both are left as they were."""
    demo = tmp_path / "demo"
    (demo / ".labelloop").mkdir(parents=True)
    (demo / ".labelloop" / "demo-workspace").write_text("created by `labelloop demo`\n")
    sha = write_sam3(demo / "models" / "sam3", DEMO_PROMPTS)
    monkeypatch.setenv("LABELLOOP_MODELS", str(demo / "models"))
    res = cli(demo, "demo", "--prelabeler", "sam3", ok=False)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert f"lie inside the demo folder {demo}" in res.output and str(demo / "models" / "sam3") in res.output
    assert (demo / "models" / "sam3").is_dir() and (demo / ".labelloop" / "demo-workspace").is_file()
    assert pulled_prelabeler(demo / "models", "sam3")[0]["sam3"]["sha256"] == sha

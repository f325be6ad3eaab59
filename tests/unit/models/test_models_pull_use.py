"""``labelloop models use NAME`` (labelloop.models.use): a pulled model's path and sha256 go into
labelloop.yaml for its role and it becomes current; a changed folder, an unknown name or a
config the change would make invalid are refused with the file left as it was. Real tiny
random-weight models saved with save_pretrained, loaded afterwards through the pre-labeler."""

from __future__ import annotations

import shutil

import pytest
import yaml

from labelloop.models import catalog, registry
from labelloop.models.use import UseError, spec_kind_of, use_model
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.workspace.config import load_config
from labelloop.workspace.layout import Workspace
from support.helpers import cli
from support.random_weights import write_grounding_dino, write_sam2


def _add(ws: Workspace, name: str, sha: str, role: str, family: str) -> None:
    e = catalog.CATALOG[name]
    registry.upsert_model(ws, registry.new_row(name=name, family=family, role=role, kind="pretrained",
                                               path=f"models/{name}", sha256=sha, source=e.repo_id, revision="c" * 40,
                                               licence=e.licence, size_bytes=1))


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("use") / "ws"
    cli(root, "init")
    w = Workspace.at(root)
    prompts = [c.prompt or c.name for c in load_config(w.config_path).categories]
    _add(w, "grounding-dino-tiny", write_grounding_dino(root / "models" / "grounding-dino-tiny", prompts),
         "detector", "grounding-dino")
    _add(w, "sam2.1-hiera-tiny", write_sam2(root / "models" / "sam2.1-hiera-tiny"), "segmenter", "sam2")
    return w


def test_models_pull_use_refuses_a_segmenter_without_a_detector(ws):
    before = ws.config_path.read_text()
    with pytest.raises(UseError, match=r"labelloop.yaml: using 'sam2.1-hiera-tiny' as the segmenter would make "
                                       r"the config invalid: .*detector"):
        use_model(ws, "sam2.1-hiera-tiny")
    assert ws.config_path.read_text() == before and registry.current_model(ws, "segmenter") is None


def test_models_pull_use_writes_detector_and_segmenter(ws):
    res = cli(ws.root, "models", "use", "grounding-dino-tiny")
    assert "grounding-dino-tiny is now the current detector" in res.output
    assert "categories now detected by it: person, face, cat" in res.output
    cli(ws.root, "models", "use", "sam2.1-hiera-tiny")
    cfg = load_config(ws.config_path)
    gd, sam = registry.get_model(ws, "grounding-dino-tiny"), registry.get_model(ws, "sam2.1-hiera-tiny")
    assert cfg.prelabeler.backend == "foundation"
    assert (cfg.prelabeler.detector.kind, cfg.prelabeler.detector.path, cfg.prelabeler.detector.sha256) == \
        ("grounding-dino", "models/grounding-dino-tiny", gd["sha256"])
    assert (cfg.prelabeler.segmenter.kind, cfg.prelabeler.segmenter.sha256) == ("sam2", sam["sha256"])
    assert {c.detector for c in cfg.categories} == {"grounding-dino"}
    assert gd["status"] == sam["status"] == "current" and gd["promoted_reason"] == "labelloop models use"
    raw = yaml.safe_load(ws.config_path.read_text())
    assert raw["routing"]["defaults"] == {"low": 0.3, "high": 0.8}  # the rest of the file is kept
    det, seg = FoundationPreLabeler(cfg, ws.root).load()  # the written paths and hashes load
    assert type(det.model).__name__ == "GroundingDinoForObjectDetection" and type(seg.model).__name__ == "Sam2Model"


def test_models_pull_use_refuses_unknown_and_changed_models(ws, tmp_path):
    before = ws.config_path.read_text()
    res = cli(ws.root, "models", "use", "nope", ok=False)
    assert res.exit_code != 0 and "no model 'nope' in the models table" in res.output
    folder = ws.root / "models" / "grounding-dino-tiny"
    shutil.copytree(folder, tmp_path / "keep")
    (folder / "config.json").write_text("{}")
    try:
        with pytest.raises(UseError, match=rf"{folder} hashes to [0-9a-f]{{64}}, not the recorded"):
            use_model(ws, "grounding-dino-tiny")
    finally:
        shutil.rmtree(folder)
        shutil.copytree(tmp_path / "keep", folder)
    assert ws.config_path.read_text() == before


def test_models_pull_every_catalog_entry_has_a_backend_kind():
    """Every catalog model maps to a spec kind a labelloop backend loads (use needs it)."""
    from labelloop.prelabel.backends.sam_hf import SEGMENTERS
    from labelloop.workspace.model_specs import DetectorSpec, SegmenterSpec

    det_kinds = DetectorSpec.model_fields["kind"].annotation.__args__
    seg_kinds = SegmenterSpec.model_fields["kind"].annotation.__args__
    for e in catalog.CATALOG.values():
        row = registry.new_row(name=e.name, family=e.family, role=e.role, kind="pretrained", path="m", sha256="a" * 64,
                               source=e.repo_id)
        kind = spec_kind_of(row)
        assert kind == e.spec_kind and kind is not None, e.name
        assert kind in {"detector": det_kinds, "segmenter": seg_kinds, "sam3": ("sam3",)}[e.role], e.name
        if e.role == "segmenter" and kind != "sam":
            assert kind in SEGMENTERS


def test_models_pull_use_keeps_mode_and_symlink_and_refuses_a_read_only_config(ws):
    """``labelloop.yaml`` is rewritten in place of its target: a symlink stays a link (the shared
    file is updated), the file keeps its permissions, and a read-only file is refused unchanged."""
    cfg_path = ws.config_path
    shared = ws.root / "shared-labelloop.yaml"
    shutil.move(cfg_path, shared)
    cfg_path.symlink_to(shared.name)
    try:
        shared.chmod(0o444)
        before = shared.read_text()
        with pytest.raises(UseError, match=r"labelloop.yaml: is read-only \(mode 444\)"):
            use_model(ws, "grounding-dino-tiny")
        assert shared.read_text() == before
        shared.chmod(0o640)
        use_model(ws, "grounding-dino-tiny")
        assert cfg_path.is_symlink() and (shared.stat().st_mode & 0o777) == 0o640
        assert load_config(shared).prelabeler.detector.kind == "grounding-dino"
    finally:
        cfg_path.unlink()
        shutil.move(shared, cfg_path)
        cfg_path.chmod(0o644)

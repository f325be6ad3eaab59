"""The models table (labelloop.models.registry): typed rows in, the same rows out; one current
model per role; bad rows refused with the model and the column named."""

from __future__ import annotations

import pytest

from labelloop.models import registry
from labelloop.models.registry import ModelRegistryError
from labelloop.tables.schemas import MODELS
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def ws(tmp_path):
    return Workspace.at(tmp_path / "ws")


def test_rows_round_trip_and_upsert_replaces_by_name(ws):
    assert registry.read_models(ws) == []
    row = registry.new_row(name="grounding-dino-tiny", family="grounding-dino", role="detector", kind="pretrained",
                           path="models/grounding-dino-tiny", sha256=SHA_A, source="IDEA-Research/grounding-dino-tiny",
                           licence="Apache-2.0", size_bytes=689_000_000)
    assert list(row) == MODELS.names and row["status"] == "available" and row["added_at"].endswith("Z")
    assert registry.upsert_model(ws, row) == row
    assert registry.read_models(ws) == [row]
    assert repo.models_path(ws).is_file()
    registry.upsert_model(ws, {**row, "sha256": SHA_B})
    assert [r["sha256"] for r in registry.read_models(ws)] == [SHA_B]
    changed = registry.update_model(ws, "grounding-dino-tiny", metrics_json='{"map50": 0.5}')
    assert changed["sha256"] == SHA_B and registry.get_model(ws, "grounding-dino-tiny") == changed
    assert registry.get_model(ws, "nope") is None


def test_one_current_model_per_role(ws):
    for name, role, sha in (("gd", "detector", SHA_A), ("owl", "detector", SHA_B), ("sam", "segmenter", SHA_C)):
        registry.upsert_model(ws, registry.new_row(name=name, family=name, role=role, kind="pretrained",
                                                   path=f"models/{name}", sha256=sha))
    ft = registry.new_row(name="detector-ft-1", family="grounding-dino", role="detector", kind="candidate",
                          path="models/ft1", sha256=SHA_C, trained_on_release="dataset-v1")
    assert ft["status"] == "candidate"
    registry.upsert_model(ws, ft)
    assert registry.current_model(ws, "detector") is None
    registry.set_current(ws, "gd", by="lead", reason="pulled")
    registry.set_current(ws, "sam")
    registry.set_current(ws, "detector-ft-1", by="lead", reason="mAP50 +4 on dataset-v1 val")
    cur = registry.current_model(ws, "detector")
    assert cur is not None and cur["name"] == "detector-ft-1" and cur["promoted_reason"].startswith("mAP50")
    assert cur["promoted_at"] and cur["promoted_by"] == "lead"
    status = {r["name"]: r["status"] for r in registry.read_models(ws)}
    assert status == {"detector-ft-1": "current", "gd": "available", "owl": "available", "sam": "current"}
    registry.update_model(ws, "owl", status="retired")
    with pytest.raises(ModelRegistryError, match="'owl' is retired"):
        registry.set_current(ws, "owl")


@pytest.mark.parametrize("change,message", [
    ({"kind": "borrowed"}, "kind 'borrowed' is not one of"),
    ({"status": "best"}, "status 'best' is not one of"),
    ({"role": "classifier"}, "role 'classifier' is not one of"),
    ({"sha256": "ABC"}, "sha256 'ABC' is not 64 lowercase hex"),
    ({"path": ""}, r"\['path'\] must be set"),
    ({"status": "candidate"}, "status candidate is for kind candidate"),
])
def test_bad_rows_are_refused_naming_model_and_column(ws, change, message):
    row = registry.new_row(name="m", family="sam", role="segmenter", kind="pretrained", path="p", sha256=SHA_A)
    with pytest.raises(ModelRegistryError, match=message) as err:
        registry.upsert_model(ws, {**row, **change})
    assert "model 'm'" in str(err.value)
    assert registry.read_models(ws) == []  # nothing written


def test_unknown_columns_and_models_are_named(ws):
    with pytest.raises(ModelRegistryError, match=r"no column \['colour'\]"):
        registry.new_row(name="m", family="sam", role="segmenter", kind="pretrained", path="p", sha256=SHA_A, colour=1)
    with pytest.raises(ModelRegistryError, match="no model 'm'"):
        registry.update_model(ws, "m", status="retired")
    with pytest.raises(ModelRegistryError, match="role 'x'"):
        registry.current_model(ws, "x")


def test_models_dir_is_the_workspace_s_or_the_shared_one(ws, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.ENV_MODELS, raising=False)
    assert registry.models_dir(ws) == ws.root / "models"
    monkeypatch.setenv(registry.ENV_MODELS, str(tmp_path / "shared"))
    assert registry.models_dir(ws) == (tmp_path / "shared").resolve()
    assert registry.stored_path(ws, ws.root / "models" / "x") == "models/x"
    assert registry.stored_path(ws, tmp_path / "shared" / "x") == str((tmp_path / "shared" / "x").resolve())

"""``prelabeler.backend: sam3`` through the whole batch job (`labelloop run`): a tiny random-weight
SAM 3 saved under the workspace's models/ with its sha256 in labelloop.yaml; the prelabels table
holds its predictions under a ``sam3@`` model_id, and the Dagster metadata says so."""

from __future__ import annotations

import shutil

import yaml

from labelloop import tables
from labelloop.tables.schemas import PREDICTIONS
from labelloop.workspace.layout import Workspace
from support.helpers import cli, skimage_data
from support.random_weights import write_sam3

CATEGORIES = [{"name": "person", "detector": "sam3", "prompt": "a person", "masks": True},
              {"name": "cup", "detector": "sam3", "prompt": "a cup", "masks": False}]


def test_run_prelabels_a_batch_with_sam3(tmp_path):
    root = tmp_path / "ws"
    cli(root, "init")
    sha = write_sam3(root / "models" / "sam3", [c["prompt"] for c in CATEGORIES])
    cfg_path = root / "labelloop.yaml"
    raw = yaml.safe_load(cfg_path.read_text())
    raw["categories"] = CATEGORIES
    raw["prelabeler"] = {"backend": "sam3", "device": "cpu", "num_workers": 0, "batch_size": 2,
                         "sam3": {"path": "models/sam3", "sha256": sha, "score_threshold": 0.2499}}
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("astronaut.png", "coffee.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    cli(root, "ingest", str(src), "--batch", "b1")
    out = cli(root, "run").output
    ws = Workspace.at(root)
    rows = tables.read_rows(ws.table("prelabels"), PREDICTIONS)
    assert rows, out
    assert {r["model_id"].split("@")[0] for r in rows} == {"sam3"} and {r["checkpoint_sha256"] for r in rows} == {sha}
    assert {r["category"] for r in rows} <= {"person", "cup"}
    assert all(r["mask"] for r in rows if r["category"] == "person")
    assert not any(r["mask"] for r in rows if r["category"] == "cup")

"""A workspace configured with the foundation backend (tiny random-weight Grounding DINO + SAM
written in their real formats) and the bundled photos ingested: the ``models`` fixture and
:func:`workspace`, shared by the resume tests and the changed-file tests."""

from __future__ import annotations

import shutil

import pytest
import yaml

from labelloop.ingest.scan import scan_batch
from labelloop.workspace.layout import Workspace
from support.helpers import cli, skimage_data
from support.random_weights import TEST_SAM_ARCH, write_grounding_dino, write_sam

NAMES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg")


CATEGORIES = [{"name": "person", "detector": "grounding-dino", "prompt": "a person", "masks": True},
              {"name": "cat", "detector": "grounding-dino", "prompt": "a cat", "masks": True},
              {"name": "face", "detector": "grounding-dino", "prompt": "a human face", "masks": False}]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"dir": root,
            "gd_sha": write_grounding_dino(root / "gd", [c["prompt"] for c in CATEGORIES]),
            "sam_sha": write_sam(root / "sam.pth", TEST_SAM_ARCH)}


def workspace(tmp_path, name: str, models, **prelabeler) -> Workspace:
    """A workspace with the real photos ingested as batch b1 and the foundation backend
    configured in its labelloop.yaml (checkpoints copied under <root>/models, relative paths)."""
    src = tmp_path / "photos"
    if not src.is_dir():
        src.mkdir()
        for n in NAMES:
            shutil.copyfile(skimage_data() / n, src / n)
    root = tmp_path / name
    cli(root, "init")
    shutil.copytree(models["dir"], root / "models")
    cfg_path = root / "labelloop.yaml"
    raw = yaml.safe_load(cfg_path.read_text())
    raw["categories"] = CATEGORIES
    raw["prelabeler"] = {
        "backend": "foundation", "device": "cpu", "num_workers": 0, "batch_size": 2, "chunk_size": 2,
        "detector": {"path": "models/gd", "sha256": models["gd_sha"], "shortest_edge": 96, "longest_edge": 160,
                     "box_threshold": 0.3},
        "segmenter": {"path": "models/sam.pth", "sha256": models["sam_sha"], "arch": TEST_SAM_ARCH.model_dump()},
        **prelabeler}
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cli(root, "ingest", str(src), "--batch", "b1")
    ws = Workspace.at(root)
    scan_batch(ws, "b1")
    return ws

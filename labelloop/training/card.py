"""The model card of a fine-tuned candidate: a JSON file beside its checkpoint
(``<run>/model_card.json``, next to ``<run>/model/``) and its row in the models table
(:mod:`labelloop.models.registry`, kind and status ``candidate``).

The card holds (``CARD_VERSION`` 1): ``name``, ``family`` (``rt-detrv2``), ``release`` (the tag it
was trained on, ``dataset-vN``), ``labels_sha256`` (:func:`labels_sha256` of the release it was
trained on), ``git_sha`` (the labelloop code's commit, :func:`code_git_sha`; None outside a git
checkout), ``hyperparameters`` (the ``training:`` section), ``checkpoint`` (workspace-relative
path) and ``checkpoint_sha256`` (:func:`labelloop.models.hashing.sha256_path` of ``model/``),
``categories``, ``metrics`` (``{"candidate": {"val": ..., "test": ...}, "current": {...}}``: the
:meth:`labelloop.training.evaluation.Evaluation.as_dict` of each split), ``losses`` (per epoch),
``trained_at`` (ISO 8601 UTC), ``seconds``, ``device``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from labelloop.models import registry
from labelloop.models.hashing import sha256_path
from labelloop.release.layout import SPLITS, coco_instances
from labelloop.tables.schemas import ModelRow
from labelloop.training.detector import FAMILY
from labelloop.workspace.layout import Workspace

CARD_FILE = "model_card.json"
CARD_VERSION = 1
LICENCE = "Apache-2.0"


def labels_sha256(release_dir: str | os.PathLike) -> str:
    """sha256 of a release's labels: over the COCO instances files of its splits, one line per
    split present, ``"<split>\\0<sha256 of the file's bytes>\\n"`` (the same bytes give the same
    hash; a changed box in any split changes it)."""
    root = Path(release_dir)

    def read(rel: str) -> bytes | None:
        p = root / rel
        return p.read_bytes() if p.is_file() else None

    h = hashlib.sha256()
    for split in SPLITS:
        found = coco_instances(read, split)
        if found is not None:
            h.update(f"{split}\0{hashlib.sha256(found[1]).hexdigest()}\n".encode())
    return h.hexdigest()


def code_git_sha() -> str | None:
    """The commit of the labelloop code that runs (``git rev-parse HEAD`` in its source folder),
    or None when it is not a git checkout (an installed wheel) or git is missing."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def write_card(run_dir: Path, card: dict) -> Path:
    """Write ``card`` (JSON, sorted keys) to ``run_dir/model_card.json`` atomically (temp + rename)."""
    path = run_dir / CARD_FILE
    tmp = run_dir / f".{CARD_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def make_card(*, name: str, release: str, release_dir: Path, hyperparameters: dict, model_dir: Path,
              checkpoint: str, categories: list[str], metrics: dict, losses: list[float], trained_at: str,
              seconds: float, device: str) -> dict[str, Any]:
    """The card's dictionary (module docstring); hashes the checkpoint and the release labels."""
    return {"card_version": CARD_VERSION, "name": name, "family": FAMILY, "release": release,
            "labels_sha256": labels_sha256(release_dir), "git_sha": code_git_sha(),
            "hyperparameters": hyperparameters, "checkpoint": checkpoint, "checkpoint_sha256": sha256_path(model_dir),
            "categories": categories, "metrics": metrics, "losses": losses, "trained_at": trained_at,
            "seconds": seconds, "device": device, "licence": LICENCE}


def register_candidate(ws: Workspace, card: dict, card_path: Path) -> ModelRow:
    """Insert (or replace) the candidate's models-table row from its card: role ``detector``,
    kind and status ``candidate``, ``trained_on_release``, ``labels_sha256``, ``metrics_json``
    (the card's metrics), ``card_path``.

    Raises:
        labelloop.models.registry.ModelRegistryError: the row breaks a table rule.
    """
    row = registry.new_row(
        name=card["name"], family=FAMILY, role="detector", kind="candidate", path=card["checkpoint"],
        sha256=card["checkpoint_sha256"], source=f"labelloop train on {card['release']}", licence=LICENCE,
        size_bytes=None, trained_on_release=card["release"], labels_sha256=card["labels_sha256"],
        metrics_json=json.dumps(card["metrics"], sort_keys=True), card_path=registry.stored_path(ws, card_path),
        added_at=card["trained_at"])
    return registry.upsert_model(ws, row)


def trained_on(ws: Workspace, checkpoint_sha256: str | None) -> str | None:
    """The provenance line of a fine-tuned model's prediction, from the models table:
    ``"model NAME, trained on dataset-vN (labels sha256 <12 hex>)"``; None when no model of the
    table with that checkpoint sha256 was trained here (a pulled or embedded model)."""
    return registry.trained_on_lines(ws).get(checkpoint_sha256) if checkpoint_sha256 else None

"""One training run on a workspace's release: what ``labelloop train`` and the
``detector_training`` asset call (:func:`train_release`).

Steps: read the release in ``release/`` (its tag: the newest ``dataset-vN``; ``release_tag``
must name it: train on an older release after ``labelloop rollback TAG``), fine-tune on its train
split into ``<models dir>/candidates/<name>/`` (:mod:`labelloop.training.loop`; the name is
``rtdetrv2-<tag>-<8 hex of the labels sha256>-<6 hex of the recipe>``, the recipe being the
``training:`` settings that shape the weights (:data:`RECIPE_FIELDS`), so running again on the same
release with the same recipe resumes or reuses the run, and a changed recipe starts a new one), evaluate the candidate and the current pre-labeler on the same reviewed images
of the val and test splits (:mod:`labelloop.training.evaluation`; a split with no
ground-truth box is reported as skipped), write the model card and the models-table row
(:mod:`labelloop.training.card`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop.models.registry import models_dir, now_utc, stored_path
from labelloop.training import card as card_mod
from labelloop.training.data import ReleaseDataError, SplitData, read_split
from labelloop.training.evaluation import Evaluation, EvaluationError, coco_ap, predict, prelabeler_results
from labelloop.training.loop import Progress, resolve_device, train_detector
from labelloop.training.promotion import gate
from labelloop.workspace import versioning
from labelloop.workspace.layout import Workspace

#: the ``training:`` settings that change the trained weights (the run's name hashes them)
RECIPE_FIELDS = ("base_checkpoint", "base_sha256", "architecture", "image_size", "epochs", "batch_size",
                 "learning_rate", "weight_decay", "max_grad_norm", "seed")


def recipe_hash(settings: Any) -> str:
    """6 hex of sha256 over the JSON (sorted keys) of ``settings``' :data:`RECIPE_FIELDS`."""
    recipe = {k: getattr(settings, k, None) for k in RECIPE_FIELDS}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:6]


class TrainingError(ValueError):
    """A training run cannot start: no release, or ``--release`` names another release than ``release/``."""


def release_tag(ws: Workspace, wanted: str | None = None) -> str:
    """The tag of the release in ``release/`` (the newest ``dataset-vN``).

    Raises:
        TrainingError: no release yet, or ``wanted`` is not that tag (the message says to roll back first).
    """
    tags = versioning.release_tags(ws.root)
    if not tags or not (ws.release_dir / "annotations").is_dir():
        raise TrainingError(f"workspace {ws.root}: no release to train on (labelloop release first)")
    latest = tags[-1]["tag"]
    if wanted is not None and wanted != latest:
        known = [t["tag"] for t in tags]
        if wanted not in known:
            raise TrainingError(f"no release {wanted!r} (releases: {known})")
        raise TrainingError(f"release/ holds {latest}, not {wanted}: labelloop rollback {wanted} first")
    return latest


def evaluate_splits(release_dir: Path, predict_split: Callable[[SplitData], list[dict]]) -> dict[str, Any]:
    """``{split: Evaluation | {"skipped": reason}}`` for val and test."""
    out: dict[str, Any] = {}
    for split in ("val", "test"):
        try:
            data = read_split(release_dir, split)
            out[split] = coco_ap(data, predict_split(data))
        except (ReleaseDataError, EvaluationError) as e:
            out[split] = {"skipped": str(e)}
    return out


def test_images(release_dir: Path) -> int:
    """Number of images of the release's test split (0 when it has none or cannot be read)."""
    try:
        return len(read_split(release_dir, "test").coco.get("images", []))
    except ReleaseDataError:
        return 0


def evaluated_figures(candidate: dict[str, Any], current: dict[str, Any]) -> str:
    """``"<split>: AP candidate a vs current b (AP50 c vs d) on n images; ..."`` for each split both
    models were evaluated on (``train`` marked as seen in training), or ``"nothing"``."""
    out = []
    for split in ("test", "val", "train"):
        a, b = candidate.get(split), current.get(split)
        if isinstance(a, Evaluation) and isinstance(b, Evaluation):
            seen = " (seen in training: not a gate figure)" if split == "train" else ""
            out.append(f"{split}{seen}: AP candidate {a.AP:.3f} vs current {b.AP:.3f} "
                       f"(AP50 {a.AP50:.3f} vs {b.AP50:.3f}) on {len(a.image_ids)} images")
    return "; ".join(out) or "nothing"


def _json(evals: dict[str, Any]) -> dict[str, Any]:
    return {k: v.as_dict() if isinstance(v, Evaluation) else v for k, v in evals.items()}


def train_release(ws: Workspace, release: str | None = None, progress: Callable[[Progress], None] | None = None,
                  current: Any = None) -> dict[str, Any]:
    """Train, evaluate and register a candidate on the workspace's release (module docstring).

    Args:
        ws: the workspace.
        release: the tag to train on (default: the release in ``release/``).
        progress: called after every training step (:class:`labelloop.training.loop.Progress`).
        current: the current pre-labeler (a :class:`labelloop.prelabel.protocol.PreLabeler`) to
            evaluate beside the candidate, or None to skip it.

    Returns:
        the model card (:mod:`labelloop.training.card`) plus ``"row"`` (the models-table row)
        and ``"card_path"``; ``card["metrics"]["gate"]`` is the promotion gate's decision
        (:func:`labelloop.training.promotion.gate` on the test split: ``promote``, ``reason``
        with the figures, ``bootstrap``), or a refusal saying why (too few test images, no
        current pre-labeler). Promotion itself is the caller's step (:func:`labelloop.training.promotion.promote`).

    Raises:
        TrainingError, ReleaseDataError, CheckpointError: see the modules named above.
    """
    cfg = ws.config()
    settings = cfg.training
    tag = release_tag(ws, release)
    train = read_split(ws.release_dir, "train")
    name = f"rtdetrv2-{tag}-{card_mod.labels_sha256(ws.release_dir)[:8]}-{recipe_hash(settings)}"
    run_dir = models_dir(ws) / "candidates" / name
    base = None
    if settings.base_checkpoint:
        from labelloop.prelabel.backends.loading import resolve_path, verify_checkpoint

        base = resolve_path(settings.base_checkpoint, ws.root)
        if settings.base_sha256:
            verify_checkpoint(base, settings.base_sha256, "training.base_checkpoint", kind="dir")
    result = train_detector(train, settings, run_dir, base=base, progress=progress)
    device = resolve_device(settings.device)

    def candidate(split: SplitData) -> list[dict]:
        return predict(result.model_dir, split, settings.image_size, settings.batch_size, device,
                       settings.score_threshold, settings.max_detections)

    cand = evaluate_splits(ws.release_dir, candidate)
    metrics: dict[str, Any] = {"candidate": _json(cand)}
    decision: dict[str, Any] = {"promote": False, "reason": "no current pre-labeler was evaluated"}
    if current is not None:
        cur = evaluate_splits(ws.release_dir, lambda s: prelabeler_results(current, s))
        metrics["current"] = _json(cur)
        metrics["current_model_id"] = getattr(current, "model_id", None)
        if not isinstance(cand["test"], Evaluation) or not isinstance(cur["test"], Evaluation):
            # nothing to gate on: the figures on the train split (seen in training) stand beside the refusal
            try:
                cand["train"] = coco_ap(train, candidate(train))
                cur["train"] = coco_ap(train, prelabeler_results(current, train))
            except EvaluationError as e:
                cand["train"] = cur["train"] = {"skipped": str(e)}
            metrics["candidate"], metrics["current"] = _json(cand), _json(cur)
        figures = evaluated_figures(cand, cur)
        if isinstance(cand["test"], Evaluation) and isinstance(cur["test"], Evaluation):
            try:
                decision = gate(cand["test"], cur["test"], settings).as_dict()
            except EvaluationError as e:
                decision = {"promote": False, "reason": f"refused: {e}; evaluated: {figures}"}
        else:
            n = test_images(ws.release_dir)
            why = next(v["skipped"] for v in (cand["test"], cur["test"]) if isinstance(v, dict))
            decision = {"promote": False, "reason": (
                f"refused: no reviewed test image with a box to evaluate on (the test split has {n} image(s); "
                f"a promotion needs at least {settings.min_test_images}, training.min_test_images: "
                f"{max(settings.min_test_images - n, 0)} more) ({why}); evaluated: {figures}")}
    metrics["gate"] = decision
    card = card_mod.make_card(
        name=name, release=tag, release_dir=ws.release_dir, hyperparameters=settings.model_dump(),
        model_dir=result.model_dir, checkpoint=stored_path(ws, result.model_dir), categories=train.categories,
        metrics=metrics, losses=result.losses, trained_at=now_utc(), seconds=result.seconds, device=result.device)
    path = card_mod.write_card(run_dir, card)
    row = card_mod.register_candidate(ws, card, path)
    return {**card, "row": row, "card_path": str(path)}

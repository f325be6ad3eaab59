"""Promoting a candidate: the gate (:func:`gate`), and what promotion changes (:func:`promote`).

The gate: on the release's reviewed test images, the paired bootstrap 95% interval of
AP(candidate) - AP(current) (:func:`labelloop.training.evaluation.paired_bootstrap`,
``training.bootstrap_resamples``, seed ``training.seed``) must lie above
``training.promote_margin`` (its lower bound ``>`` the margin); with fewer than
``training.min_test_images`` test images it refuses and says how many are needed.

Promotion (:func:`promote`, by the gate or by a person with ``labelloop models promote NAME --by
--why``): the model becomes its role's ``current`` row in the models table (who, why, when
recorded), ``labelloop.yaml`` gets ``prelabeler.backend: rtdetrv2`` and ``prelabeler.rtdetrv2``
(path, sha256), and ``routing.calibrated_policy`` is cleared: a calibrated policy is fitted to one
model's scores, so the new model starts from the category thresholds until ``labelloop calibrate``
refits it. The edited ``labelloop.yaml`` is committed to the workspace's git repository.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from labelloop.models import registry
from labelloop.tables.schemas import ModelRow
from labelloop.training.evaluation import BootstrapResult, Evaluation, paired_bootstrap
from labelloop.workspace import versioning as V
from labelloop.workspace.config import Training
from labelloop.workspace.layout import Workspace


class PromotionError(ValueError):
    """A model cannot be promoted: unknown, not an RT-DETRv2 candidate, or a missing reason."""


@dataclass(frozen=True)
class GateDecision:
    """``promote`` or not, the one-line ``reason`` with the figures, and the ``bootstrap``."""

    promote: bool
    reason: str
    bootstrap: BootstrapResult

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {"promote": self.promote, "reason": self.reason, "bootstrap": self.bootstrap.as_dict()}


def gate(candidate: Evaluation, current: Evaluation, settings: Training) -> GateDecision:
    """The promotion gate on the test split (module docstring).

    Raises:
        labelloop.training.evaluation.EvaluationError: too few test images (the message says how
            many are needed), or the two models were evaluated on different images.
    """
    boot = paired_bootstrap(candidate, current, settings.bootstrap_resamples, settings.seed, settings.min_test_images)
    figures = (f"AP candidate {candidate.AP:.3f} vs current {current.AP:.3f}: difference {boot.difference:+.3f}, "
               f"95% interval [{boot.low:+.3f}, {boot.high:+.3f}] over {boot.images} test images")
    if boot.low > settings.promote_margin:
        return GateDecision(True, f"{figures}: lower bound above the margin {settings.promote_margin}", boot)
    return GateDecision(False, f"{figures}: lower bound not above the margin {settings.promote_margin}; "
                               "kept as a candidate", boot)


def point_config_at(ws: Workspace, row: ModelRow) -> None:
    """Edit ``labelloop.yaml``: ``prelabeler.backend: rtdetrv2``, ``prelabeler.rtdetrv2`` = the
    row's path and sha256, ``routing.calibrated_policy`` null (PyYAML rewrite: comments are not kept)."""
    raw = yaml.safe_load(ws.config_path.read_text(encoding="utf-8")) or {}
    pre = raw.setdefault("prelabeler", {}) or {}
    raw["prelabeler"] = pre
    pre["backend"] = "rtdetrv2"
    pre["rtdetrv2"] = {"path": row["path"], "sha256": row["sha256"]}
    routing = raw.setdefault("routing", {}) or {}
    raw["routing"] = routing
    routing["calibrated_policy"] = None
    ws.config_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


def promote(ws: Workspace, name: str, by: str, why: str, commit: bool = True) -> ModelRow:
    """Make candidate ``name`` the current detector (module docstring); returns its row.

    Raises:
        PromotionError: no such model, not an ``rt-detrv2`` model, or an empty ``by`` / ``why``.
        labelloop.workspace.config.ConfigError: the edited labelloop.yaml does not validate
            (the old file is restored first).
    """
    from labelloop.training.detector import FAMILY

    row = registry.get_model(ws, name)
    if row is None:
        raise PromotionError(f"models table: no model {name!r}")
    if row["family"] != FAMILY:
        raise PromotionError(f"model {name!r} is {row['family']!r}; only {FAMILY} candidates are promoted here")
    if not by.strip() or not why.strip():
        raise PromotionError(f"promoting {name!r} needs who (--by) and why (--why)")
    with ws.lock():
        before = ws.config_path.read_text(encoding="utf-8")
        point_config_at(ws, row)
        try:
            ws.config()
        except Exception:
            ws.config_path.write_text(before, encoding="utf-8")
            raise
        current = registry.set_current(ws, name, by=by, reason=why)
        if commit and (ws.root / ".git").exists():
            V.git(ws.root, "add", "--", "labelloop.yaml")
            V.git(ws.root, "commit", "-q", "-m", f"promote {name} to pre-labeler ({by}: {why})", check=False)
    return current

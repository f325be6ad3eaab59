"""The QA gates, declared once: their names, whether they block a release, and the setting that
holds each threshold. The QA library builds every gate result through :func:`gate_result`, and the
``qa_report`` asset declares one asset check per entry of :data:`GATES`, so a gate added here is a
check in Dagster with no second list to keep in step (``tests/unit/qa/test_gates.py``).

A gate's status is ``pass``, ``fail``, ``warn`` (the interval straddles the threshold: the reason
names the sample size that would decide) or ``not_measured`` (nothing to measure, e.g. no gold
set); only a ``fail`` of a blocking gate stops a release (the interval rule: docs/design.md,
"QA gates").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gate:
    """One QA gate: ``name`` (the asset check's name), ``blocking`` (a fail stops the release),
    ``threshold_key`` (the ``labelloop.yaml`` setting with its threshold, None when fixed) and a
    one-line ``description``."""

    name: str
    blocking: bool
    threshold_key: str | None
    description: str


#: Every QA gate, in report order.
GATES: tuple[Gate, ...] = (
    Gate("schema_valid", True, None,
         "every label lies inside its image with a positive area and names a known category"),
    Gate("release_error_rate", True, "qa.audit_error_target",
         "the share of the release's images with wrong labels (auto-accepted by model audit, reviewed by "
         "reviewer-vs-gold errors; stratified, MOVER-Wilson 95% interval) is below the target"),
    Gate("gold_mean_iou", True, "qa.gold_mean_iou",
         "each reviewer's mean IoU against the gold set (bootstrap 95% interval) reaches the threshold"),
    Gate("gold_class_accuracy", True, "qa.gold_class_accuracy",
         "each reviewer's class accuracy on gold objects (Wilson 95% interval) reaches the threshold"),
    Gate("inter_annotator_kappa", True, "qa.kappa_min",
         "Cohen's kappa between reviewers of double-reviewed images (bootstrap 95% interval) reaches the minimum"),
    Gate("guidelines_agreement", False, "qa.kappa_guidelines",
         "kappa at or above the level where reviewers read the labeling guidelines alike (warns only)"),
)
BY_NAME = {g.name: g for g in GATES}


def gate_result(name: str, status: str, value: Any, threshold: Any, reason: str,
                images: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A gate's result as QA reports carry it: ``{"name", "blocking", "status", "value",
    "threshold", "reason", "images", ...extra}`` with ``blocking`` from the declaration.

    Raises:
        KeyError: ``name`` is not a declared gate.
    """
    return {"name": name, "blocking": BY_NAME[name].blocking, "status": status, "value": value,
            "threshold": threshold, "reason": reason, "images": list(images or []), **extra}


def failed_gates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's blocking gates whose status is ``fail`` (what stops a release)."""
    return [g for g in report["gates"] if g["blocking"] and g["status"] == "fail"]

"""Reprocessing plan: which per-batch assets to re-run for which batches, grouped into runs.

A batch is stale from its first out-of-date stage (:func:`labelloop.batch.stale_stage`): a new
model id (checkpoint or inference settings) makes ``prelabels`` stale for its unreviewed images,
a new routing policy makes ``review_queue`` stale (re-routed from the stored predictions, no
model run). Runs re-materialize that stage and the ones after it, for up to ``max_per_run``
batches that are adjacent in the partition order (a run covers a contiguous partition range, so
it never touches a batch that is not stale). No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH_STAGES = ("raw_images", "prelabels", "review_queue", "review_export")


@dataclass(frozen=True)
class PlannedRun:
    """One run: ``assets`` (the stage and those after it, in graph order) over ``batches``
    (adjacent in the partition order; ``batches[0]``..``batches[-1]`` is the run's range)."""

    stage: str
    batches: tuple[str, ...]

    @property
    def assets(self) -> tuple[str, ...]:
        return BATCH_STAGES[BATCH_STAGES.index(self.stage):]


def plan_runs(order: list[str], stale: dict[str, str], max_per_run: int) -> list[PlannedRun]:
    """Group stale batches into runs.

    Args:
        order: every batch, in partition order (the dynamic partitions' insertion order).
        stale: ``batch -> first stale stage`` (one of BATCH_STAGES) for the stale batches only.
        max_per_run: the backfill policy's ``max_partitions_per_run`` (>= 1).

    Returns:
        Runs, each of one stage over at most ``max_per_run`` batches that are adjacent in
        ``order`` and share that stage, in partition order.

    Raises:
        ValueError: ``max_per_run`` < 1, an unknown stage, or a stale batch missing from ``order``.
    """
    if max_per_run < 1:
        raise ValueError(f"max_per_run must be >= 1, got {max_per_run}")
    bad = {b: s for b, s in stale.items() if s not in BATCH_STAGES}
    if bad:
        raise ValueError(f"unknown stage for {bad}: expected one of {', '.join(BATCH_STAGES)}")
    missing = set(stale) - set(order)
    if missing:
        raise ValueError(f"stale batches not in the partition order: {sorted(missing)}")
    runs: list[PlannedRun] = []
    group: list[str] = []
    stage = None
    for b in order + [None]:
        s = stale.get(b) if b is not None else None
        if group and (s != stage or len(group) == max_per_run):
            runs.append(PlannedRun(stage, tuple(group)))
            group = []
        if s is not None:
            group.append(b)
            stage = s
    return runs

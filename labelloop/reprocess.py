"""Reprocessing: which per-batch assets are stale for which batches, and the runs that redo them.

A batch is stale from its first out-of-date stage (:func:`stale_stage`): a new
model id (checkpoint or inference settings) makes ``prelabels`` stale for its unreviewed images,
a new routing policy makes ``review_queue`` stale (re-routed from the stored predictions, no
model run). Runs re-materialize that stage and the ones after it, for up to ``max_per_run``
batches that are adjacent in the partition order (a run covers a contiguous partition range, so
it never touches a batch that is not stale). No Dagster here.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelloop import tables
from labelloop.ingest.files import list_image_files, relative_name, stored_name
from labelloop.routing.active_learning import al_policy_id
from labelloop.tables.schemas import IMAGES, REVIEW_QUEUE
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace

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
    stage: str | None = None
    for b in order + [None]:
        s = stale.get(b) if b is not None else None
        if group and (s != stage or len(group) == max_per_run):
            assert stage is not None  # set with the group's first batch
            runs.append(PlannedRun(stage, tuple(group)))
            group = []
        if s is not None:
            assert b is not None  # s is a batch's stage
            group.append(b)
            stage = s
    return runs


def predicts_reviewed(ws: Workspace) -> bool:
    """Whether the pre-labeler also predicts reviewed images: True for a promoted fine-tuned
    detector (``prelabeler.backend: rtdetrv2``, set only by
    :func:`labelloop.training.promotion.promote`), so its predictions on the human-labeled images
    are a prediction set of their own (``tables/prelabels/<batch>/<model_id>/``) that QA's
    model-vs-human figures and ``labelloop calibrate`` measure; the human labels still win."""
    return ws.config().prelabeler.backend == "rtdetrv2"


def stale_stage(ws: Workspace, batch: str, model_id: str,
                reviewed: set[str] | frozenset = frozenset(), predict_reviewed: bool = False) -> tuple[str, str] | None:
    """``(first asset to re-run, why)`` when ``batch``'s per-batch tables are missing or stale,
    or None when they are current. The asset is ``raw_images`` (not materialized, or the inbox
    files changed), ``prelabels`` (predictions of ``model_id`` missing for an image that is not in
    ``reviewed``), ``review_queue`` (an unreviewed image routed with another routing or
    active-learning policy, or the queue is older than the predictions) or ``review_export``
    (older than the queue). Reviewed images never make a batch stale: their labels are human;
    with ``predict_reviewed`` (:func:`predicts_reviewed`) a reviewed image without predictions of
    ``model_id`` makes ``prelabels`` stale (its human labels are left as they are)."""
    ip = repo.images_path(ws, batch)
    if not ip.is_file():
        return "raw_images", "raw_images not materialized"
    folder = ws.batch_dir(batch)
    on_disk = {stored_name(relative_name(f, folder)) for f in list_image_files(folder)} if folder.is_dir() else set()
    if on_disk != {r["source_path"] for r in tables.read_rows(ip, IMAGES)}:
        return "raw_images", "inbox files changed"
    wanted = {r["image_id"] for r in repo.images_to_label(ws, batch)}
    if wanted - (set() if predict_reviewed else set(reviewed)) - repo.done_image_ids(repo.prelabel_dir(ws, batch, model_id)):
        return "prelabels", f"predictions of {model_id} missing"
    qp = repo.queue_path(ws, batch)
    if not qp.is_file():
        return "review_queue", "review_queue not materialized"
    queue = tables.read_rows(qp, REVIEW_QUEUE)
    open_rows = [q for q in queue if q["image_id"] not in reviewed]
    if {q["image_id"] for q in queue} != wanted or any(q["policy_id"] != ws.config().policy_id() for q in open_rows):
        return "review_queue", "routing policy or images changed"
    if any(q.get("al_policy_id") != al_policy_id(ws.config()) for q in open_rows):
        return "review_queue", "active-learning or double-review settings changed"
    parts = list(repo.prelabel_dir(ws, batch, model_id).glob("part-*.parquet"))
    if parts and max(_mtime_ns(p) for p in parts) > _mtime_ns(qp):
        return "review_queue", "predictions newer than the review queue"
    ep = repo.exported_path(ws, batch)
    if not ep.is_file() or _mtime_ns(ep) < _mtime_ns(qp) - 10**9:
        return "review_export", "review_export older than the review queue"
    return None


def _mtime_ns(path) -> int:
    """Modification time in ns: the file's mtime, or an object's Last-Modified (1 s resolution)."""
    st = path.stat()
    ns = getattr(st, "st_mtime_ns", None)
    return int(ns) if ns is not None else int(st.st_mtime * 1e9)

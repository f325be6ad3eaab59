"""Reprocessing: a new model id re-predicts only unreviewed images, a new routing policy re-routes
without a pre-label step, and the reprocess schedule requests only stale batches, grouped by the
per-batch assets' backfill policy (many batches per run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from labelloop import reprocess as R
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from labelloop.workspace.repo import read_labels
from pipelines.partitions import MAX_BATCHES_PER_RUN
from support.helpers import cli, ls_fixtures, skimage_data

FX = ls_fixtures()
# batch "fixture": the three photos a real Label Studio review covers (all reviewed) + grace_hopper (not)
PHOTOS = {"fixture": ["astronaut.png", "chelsea.png", "coffee.png", "grace_hopper.jpg"],
          "f1": ["motorcycle_left.png"], "f2": ["rocket.jpg"], "f3": ["hubble_deep_field.jpg"]}
ORDER = list(PHOTOS)


# ---- the plan alone ---------------------------------------------------------------------------
def test_plan_groups_adjacent_batches_of_one_stage_up_to_the_limit():
    order = ["a", "b", "c", "d", "e", "f", "g"]
    stale = {"a": "prelabels", "b": "prelabels", "c": "prelabels", "e": "prelabels", "f": "review_queue",
             "g": "review_queue"}
    runs = R.plan_runs(order, stale, 2)
    assert [(r.stage, r.batches) for r in runs] == [
        ("prelabels", ("a", "b")), ("prelabels", ("c",)), ("prelabels", ("e",)), ("review_queue", ("f", "g"))]
    assert runs[-1].assets == ("review_queue", "review_export")
    assert R.plan_runs(order, {}, 2) == []
    assert [r.batches for r in R.plan_runs(order, {b: "raw_images" for b in order}, 8)] == [tuple(order)]


@pytest.mark.parametrize("args, match", [((["a"], {"a": "prelabels"}, 0), "max_per_run"),
                                         ((["a"], {"a": "labels"}, 2), "unknown stage"),
                                         ((["a"], {"z": "prelabels"}, 2), "not in the partition order")])
def test_plan_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        R.plan_runs(*args)


# ---- a real workspace ---------------------------------------------------------------------------
@pytest.fixture
def ws(tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.delenv("LABELLOOP_EXECUTOR", raising=False)
    monkeypatch.delenv("LABELLOOP_ENV", raising=False)
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    root = tmp_path / "ws"
    cli(root, "init")
    for b, files in PHOTOS.items():
        src = tmp_path / "src" / b
        src.mkdir(parents=True)
        for f in files:
            shutil.copyfile((mpl if f == "grace_hopper.jpg" else skimage_data()) / f, src / f)
        cli(root, "ingest", str(src), "--batch", b)
    cli(root, "run")
    cli(root, "register-export", str(FX / "import_tasks.json"), "--source", "label-studio/project-1")
    cli(root, "import-review", str(FX / "export_json.json"))
    w = Workspace.at(root)
    assert len(review_store(w).latest_reviews()) == 3
    return w


def _edit_config(ws: Workspace, old: str, new: str) -> None:
    text = ws.config_path.read_text()
    assert old in text
    ws.config_path.write_text(text.replace(old, new, 1))


def _evaluate(ws: Workspace):
    """The schedule's tick, evaluated against the workspace's instance."""
    from pipelines.reprocess import reprocess_schedule
    from pipelines.runner import get_instance
    from resources.prelabeler import PreLabelerResource
    from resources.storage import WorkspaceResource

    instance = get_instance(ws)
    with dg.build_schedule_context(instance=instance, resources={
            "storage": WorkspaceResource(root=str(ws.root)), "prelabeler": PreLabelerResource()}) as ctx:
        return instance, reprocess_schedule(ctx)


def _batches(req: dg.RunRequest) -> list[str]:
    if req.partition_key:
        return [req.partition_key]
    start, end = req.tags["dagster/asset_partition_range_start"], req.tags["dagster/asset_partition_range_end"]
    return ORDER[ORDER.index(start):ORDER.index(end) + 1]


def _launch(ws: Workspace, instance, requests) -> list:
    from pipelines.runner import execute

    outs = []
    for req in requests:
        out = execute(ws, "batch_job", instance, partition_keys=_batches(req),
                      asset_selection=[k.to_user_string() for k in req.asset_selection], tags=req.tags)
        assert out.success, out.failures
        outs.append(out)
    return outs


def _resolve_tick(instance, run_id: str):
    """reprocess_resolve_sensor's answer to the successful run ``run_id``."""
    from pipelines.reprocess import reprocess_resolve_sensor

    (event,) = [e.dagster_event for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)]
    with dg.build_run_status_sensor_context(sensor_name="reprocess_resolve_sensor", dagster_event=event,
                                            dagster_instance=instance,
                                            dagster_run=instance.get_run_by_id(run_id)) as ctx:
        return reprocess_resolve_sensor(ctx)


def _resolve_after(ws: Workspace, instance, outs) -> None:
    """Each finished reprocess run -> the sensor's RunRequest -> that resolve_job run, no CLI."""
    from pipelines.runner import execute

    for out in outs:
        req = _resolve_tick(instance, out.run_id)
        assert isinstance(req, dg.RunRequest) and req.run_key == f"resolve-after-{out.run_id}"
        assert req.tags["labelloop/after-reprocess"] == out.run_id
        resolved = execute(ws, "resolve_job", instance, tags=req.tags)
        assert resolved.success, resolved.failures


def _model_id(ws: Workspace) -> str:
    from resources.prelabeler import PreLabelerResource

    return PreLabelerResource().get(ws.config()).model_id


def _human_rows(ws: Workspace) -> list[dict]:
    labels, resolved = read_labels(ws)
    return sorted([r for r in labels if r["origin"] == "human"], key=lambda r: r["label_id"]), \
        sorted([r for r in resolved if r["resolution"] == "reviewed"], key=lambda r: r["image_id"])


def test_new_model_repredicts_only_unreviewed_images_in_multi_batch_runs(ws, monkeypatch):
    instance, tick = _evaluate(ws)
    assert isinstance(tick, dg.SkipReason)  # everything current
    reviewed = set(review_store(ws).latest_reviews())
    humans_before = _human_rows(ws)
    old_model = _model_id(ws)
    _edit_config(ws, "max_side: 800", "max_side: 640")  # an inference setting: a new model id
    new_model = _model_id(ws)
    assert new_model != old_model

    import pipelines.reprocess

    monkeypatch.setattr(pipelines.reprocess, "MAX_BATCHES_PER_RUN", 3)
    _, requests = _evaluate(ws)
    assert [(_batches(r), [k.to_user_string() for k in r.asset_selection]) for r in requests] == [
        (["fixture", "f1", "f2"], ["prelabels", "review_queue", "review_export"]),
        (["f3"], ["prelabels", "review_queue", "review_export"])]
    monkeypatch.setattr(pipelines.reprocess, "MAX_BATCHES_PER_RUN", MAX_BATCHES_PER_RUN)
    _, requests = _evaluate(ws)
    assert [_batches(r) for r in requests] == [ORDER]  # one run for all four batches

    outs = _launch(ws, instance, requests)
    assert outs[0].metadata["prelabels"]["images_skipped_reviewed"] == 3
    # the new model predicted every unreviewed image and none of the reviewed ones
    done = set()
    for b in ORDER:
        done |= repo.done_image_ids(repo.prelabel_dir(ws, b, new_model))
    wanted = {r["image_id"] for b in ORDER for r in repo.images_to_label(ws, b)}
    assert done == wanted - reviewed and len(reviewed) == 3
    _resolve_after(ws, instance, outs)  # the sensor's resolve_job run, no CLI
    assert _human_rows(ws) == humans_before  # reviewed labels unchanged
    labels, _ = read_labels(ws)
    assert {r["model_id"] for r in labels if r["origin"] == "model"} <= {new_model}
    _, tick = _evaluate(ws)
    assert isinstance(tick, dg.SkipReason)


def test_new_routing_policy_reroutes_without_a_prelabel_run(ws):
    model = _model_id(ws)
    reviewed = set(review_store(ws).latest_reviews())
    parts = {p: p.stat().st_mtime_ns for b in ORDER for p in repo.prelabel_dir(ws, b, model).glob("part-*.parquet")}
    old_policy = ws.config().policy_id()
    queue_before = {q["image_id"]: q for q in repo.all_queue(ws)}
    _edit_config(ws, "defaults: {low: 0.3, high: 0.8}", "defaults: {low: 0.2, high: 0.5}")
    new_policy = ws.config().policy_id()
    assert new_policy != old_policy

    instance, requests = _evaluate(ws)
    assert [(_batches(r), [k.to_user_string() for k in r.asset_selection]) for r in requests] == [
        (ORDER, ["review_queue", "review_export"])]
    (out,) = _launch(ws, instance, requests)
    assert "prelabels" not in out.metadata and "raw_images" not in out.metadata
    run = instance.get_run_by_id(out.run_id)
    assert run.asset_selection == {dg.AssetKey("review_queue"), dg.AssetKey("review_export")}
    assert {p: p.stat().st_mtime_ns for p in parts} == parts  # no prediction file rewritten
    queue = {q["image_id"]: q for q in repo.all_queue(ws)}
    assert set(queue) == set(queue_before)
    for iid, q in queue.items():
        if iid in reviewed:
            assert q == queue_before[iid]  # the route it was reviewed under
        else:
            assert q["policy_id"] == new_policy
    # the runs that processed new batches (the fixture's `labelloop run`) do not trigger the sensor
    plain = [r for r in instance.get_runs() if r.job_name == "batch_job" and "labelloop/reprocess" not in r.tags]
    assert plain and isinstance(_resolve_tick(instance, plain[0].run_id), dg.SkipReason)
    _, before = read_labels(ws)
    _resolve_after(ws, instance, [out])
    _, resolved = read_labels(ws)  # auto-accepted labels now follow the new routes
    unreviewed = set(queue) - reviewed
    new_routes = {r["image_id"]: r["route"] for r in resolved if r["image_id"] in unreviewed}
    assert new_routes == {i: queue[i]["route"] for i in new_routes}
    assert new_routes != {r["image_id"]: r["route"] for r in before if r["image_id"] in unreviewed}
    _, tick = _evaluate(ws)
    assert isinstance(tick, dg.SkipReason)


def test_per_batch_assets_carry_the_backfill_policy():
    from pipelines.definitions import build_definitions

    defs = build_definitions()
    for key in ("raw_images", "prelabels", "review_queue", "review_export"):
        policy = defs.resolve_assets_def(key).backfill_policy
        assert policy.max_partitions_per_run == MAX_BATCHES_PER_RUN, key
    assert defs.resolve_schedule_def("reprocess_schedule").job_name == "batch_job"

"""Distributed execution on dagster-celery: two real Celery workers (queue ``gpu`` and queue
``cpu``) on the Redis broker at 127.0.0.1:6379, a Dagster instance on PostgreSQL
(127.0.0.1:5432), a three-batch materialization in one run (the backfill policy's partition
range) whose steps run on the workers; the tables equal those of the in-process run."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from labelloop.workspace.init import PG_ENV
from pipelines.environments import CELERY_BACKEND_VAR, CELERY_BROKER_VAR, CELERY_CONFIG, EXECUTOR_VAR
from support.celery_helpers import (
    BATCHES,
    ROOT,
    Workers,
    celery_servers,
    celery_workspace,
    prepare_instance,
    table_rows,
)
from support.helpers import cli, skimage_data

pytestmark = pytest.mark.celery


@pytest.fixture(scope="session")
def celery_workers(tmp_path_factory):
    """Two workers started once per session (``dagster-celery worker start``, pool solo): one on
    queue gpu, one on queue cpu; yields the environment that runs need; stops both at the end."""
    with celery_servers(tmp_path_factory, "celery") as srv:
        token = srv.token
        workers = Workers(srv.home, srv.env, ROOT / "deploy" / "celery" / "celery.yaml")
        try:
            prepare_instance(srv.home, srv.env)
            for q in ("gpu", "cpu"):
                workers.start(f"{q}-{token}", [q], "--pool", "solo")
            workers.wait_ready([f"gpu-{token}", f"cpu-{token}"])
            yield {"env": srv.env_vars, "host": workers.host, "token": token}
        finally:
            workers.stop_all()


def _run(root: Path):
    from labelloop.workspace.layout import Workspace
    from pipelines.runner import execute, get_instance

    ws = Workspace.at(root)
    instance = get_instance(ws)
    batch = execute(ws, "batch_job", instance, partition_keys=list(BATCHES))  # one run, three batches
    assert batch.success, batch.failures
    resolve = execute(ws, "resolve_job", instance)
    assert resolve.success, resolve.failures
    return instance, batch.run_id, resolve.run_id


def test_celery_workers_run_the_batches_like_in_process(tmp_path, monkeypatch, celery_workers):
    # the worker settings file and the executor agree (broker, backend, default queue)
    assert yaml.safe_load((ROOT / "deploy" / "celery" / "celery.yaml").read_text())["execution"]["config"] == CELERY_CONFIG

    for k in (PG_ENV, EXECUTOR_VAR):
        monkeypatch.delenv(k, raising=False)
    local = celery_workspace(tmp_path, "local")
    _run(local)

    for k, v in celery_workers["env"].items():
        monkeypatch.setenv(k, v)
    dist = celery_workspace(tmp_path, "celery")
    assert "postgres" in (dist / ".dagster" / "dagster.yaml").read_text()
    instance, batch_run, resolve_run = _run(dist)

    from dagster import DagsterEventType

    host, token = celery_workers["host"], celery_workers["token"]
    submitted, ran_on = {}, {}
    for run_id in (batch_run, resolve_run):
        for rec in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            ev = rec.dagster_event
            msg = rec.user_message
            if msg.startswith("Submitting celery task for step"):
                submitted[ev.step_key] = msg.rsplit('queue "', 1)[1].rstrip('".')
            worker = ev.engine_event_data.metadata.get("Celery worker")  # the worker's own event
            if worker is not None:
                ran_on[ev.step_key] = worker.value
    assert submitted == {"raw_images": "cpu", "prelabels": "gpu", "review_queue": "cpu", "review_export": "cpu",
                         "human_labels": "cpu", "labels": "cpu"}
    assert ran_on == {s: f"{q}-{token}@{host}" for s, q in submitted.items()}
    # one run materialized all three batches (a partition range), not one run per batch
    mats = instance.fetch_materializations(
        __import__("dagster").AssetKey("prelabels"), limit=10).records
    assert sorted(m.partition_key for m in mats) == ["b1", "b2", "b3"] and {m.run_id for m in mats} == {batch_run}

    for name in ("raw_images", "prelabels", "review_queue", "labels"):
        a, b = table_rows(local, name), table_rows(dist, name)
        assert a == b and a, name  # labels: grace_hopper's auto-accepted face
    assert len(table_rows(dist, "raw_images")) == 5 and table_rows(dist, "prelabels")


def test_an_unreachable_broker_fails_the_run_with_the_reason(tmp_path, monkeypatch):
    """No broker at the URL: the run fails (in seconds, not a hang) naming the connection error,
    and no table is written."""
    for k, v in {EXECUTOR_VAR: "celery", CELERY_BROKER_VAR: "redis://127.0.0.1:1/0",
                 CELERY_BACKEND_VAR: "redis://127.0.0.1:1/0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(PG_ENV, raising=False)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copyfile(skimage_data() / "coffee.png", src / "coffee.png")
    root = tmp_path / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b")
    started = time.monotonic()
    out = cli(root, "run", ok=False)
    assert out.exit_code == 1 and time.monotonic() - started < 120
    assert "batch b: Encountered error during celery task submission.: Error 111 connecting to 127.0.0.1:1" in out.output
    assert not (root / "tables" / "raw_images").exists() or not list((root / "tables" / "raw_images").iterdir())

"""A Celery worker lost in the middle of a step: the step's message is acked only when
the step returns (pipelines/environments.py, CELERY_CONFIG), so the run finishes on another
worker instead of waiting forever.

- The pool child running ``raw_images`` on a prefork CPU worker is SIGKILLed (the kernel's OOM
  killer picks the child); the worker re-sends the task (task_retry_on_worker_lost) and the step
  runs again.
- The whole worker is SIGKILLed mid-step (OOM-killed, or its node lost): the cpu worker
  (prefork) in ``raw_images``, then the gpu worker (``--pool solo``) in ``prelabels``; a
  replacement worker on each queue (what Kubernetes or systemd starts) gets the step back from
  Redis once it is older than the visibility timeout. Without task_acks_late the prefork worker
  acks on receipt and the run waits forever. (A solo worker's ack only reaches Redis after the
  task, so it was redelivered even before, after the 1 h default visibility timeout.)

The workers use deploy/celery/celery.yaml's settings with a 15 s visibility timeout (6 h in
production) and a 1 s sweep, so the test does not wait hours.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipelines.environments import CELERY_CONFIG
from support.celery_helpers import (
    BATCHES,
    ROOT,
    Workers,
    celery_servers,
    celery_workspace,
    child_pids,
    prepare_instance,
    table_rows,
)
from support.helpers import cli

pytestmark = pytest.mark.celery

VISIBILITY_S = 15
RUN_LIMIT_S = 240  # the run must end within this; a lost message would make it wait forever
RUN_SCRIPT = """\
import json, sys
from labelloop.workspace.layout import Workspace
from pipelines.runner import execute, get_instance
ws = Workspace.at(sys.argv[1])
out = execute(ws, "batch_job", get_instance(ws), partition_keys=sys.argv[2].split(","))
print("RESULT " + json.dumps({"success": out.success, "run_id": out.run_id, "failures": out.failures}))
"""


@pytest.fixture(scope="module")
def loss_workers(tmp_path_factory):
    """A gpu worker (pool solo) and a cpu worker (prefork, one child) with CELERY_CONFIG's
    settings but a 15 s visibility timeout; yields the Workers, the environment and the token."""
    with celery_servers(tmp_path_factory, "loss") as srv:
        token, home = srv.token, srv.home
        cfg = copy.deepcopy(CELERY_CONFIG)
        cfg["config_source"]["broker_transport_options"].update(
            visibility_timeout=VISIBILITY_S, unacked_restore_interval=1, unacked_restore_throttle=1)
        (home / "celery-loss.yaml").write_text(yaml.safe_dump({"execution": {"config": cfg}}))
        workers = Workers(home, srv.env, home / "celery-loss.yaml")
        try:
            prepare_instance(home, srv.env)
            workers.start(f"gpu-{token}", ["gpu"], "--pool", "solo")
            workers.start(f"cpu-{token}", ["cpu"], "--pool", "prefork", "--concurrency", "1")
            workers.wait_ready([f"gpu-{token}", f"cpu-{token}"])
            yield {"workers": workers, "env": srv.env_vars, "token": token}
        finally:
            workers.stop_all()


def _launch(root, env_vars) -> subprocess.Popen:
    """``batch_job`` over every batch in one run, orchestrated by a separate process (as
    ``labelloop run`` does), so a hung run can be stopped."""
    return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(root), ",".join(BATCHES)],
                            env={**os.environ, **env_vars, "PYTHONPATH": str(ROOT)}, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _step_events(instance, step: str, known_runs: set[str]):
    """The new run's id and its events of ``step``: [(kind, Celery worker or None)], oldest first
    (kind: "worker" for dagster-celery's "Executing steps ... in celery worker", else the
    Dagster event type)."""
    runs = [r for r in instance.get_runs(limit=5) if r.run_id not in known_runs]
    if not runs:
        return None, []
    out = []
    for rec in instance.all_logs(runs[0].run_id):
        ev = rec.dagster_event
        if ev is None or ev.step_key != step:
            continue
        worker = None
        if ev.event_type_value == "ENGINE_EVENT":
            worker = ev.engine_event_data.metadata.get("Celery worker")
            if worker is None:
                continue
            out.append(("worker", worker.value))
        else:
            out.append((ev.event_type_value, None))
    return runs[0].run_id, out


def _kill_during(step, instance, known_runs, proc, kill, deadline_s=RUN_LIMIT_S):
    """Wait until ``step`` has started on a worker (its STEP_START after the worker's event),
    call ``kill(worker)``; returns (worker, time of the kill)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        _, evs = _step_events(instance, step, known_runs)
        workers = [w for k, w in evs if k == "worker"]
        if workers and evs[-1][0] == "STEP_START":
            kill(workers[-1])
            return workers[-1], time.monotonic()
        assert not any(k == "STEP_SUCCESS" for k, _ in evs), f"{step} finished before it could be killed: {evs}"
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    raise AssertionError(f"{step} never started on a worker")


def _finish(proc) -> dict:
    try:
        out, _ = proc.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the run hung after the worker was killed (> {RUN_LIMIT_S} s):\n{out[-3000:]}")
    line = [x for x in out.splitlines() if x.startswith("RESULT ")]
    assert line, out[-3000:]
    return json.loads(line[-1][len("RESULT "):])


def _slow_photo(folder) -> None:
    """A 6000 x 6000 RGB noise PNG (about 110 MB, over labelloop.images.files.IN_MEMORY_BYTES): its
    full decode takes a second or more, so raw_images and prelabels on batch b1 run long enough
    to be killed mid-step however fast the five photos are."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(0).integers(0, 256, (6000, 6000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "slow.png", compress_level=1)


def _setup(tmp_path, monkeypatch, loss_workers, name):
    for k, v in loss_workers["env"].items():
        monkeypatch.setenv(k, v)
    root = celery_workspace(tmp_path, name)
    slow = tmp_path / "slow"
    if not slow.exists():
        _slow_photo(slow)
    cli(root, "ingest", str(slow), "--batch", "b1")
    from labelloop.workspace.layout import Workspace
    from pipelines.runner import get_instance

    instance = get_instance(Workspace.at(root))
    return root, instance, {r.run_id for r in instance.get_runs()}


def test_a_pool_child_killed_mid_step_is_retried(tmp_path, monkeypatch, loss_workers):
    workers, token = loss_workers["workers"], loss_workers["token"]
    root, instance, known = _setup(tmp_path, monkeypatch, loss_workers, "ws-child")
    cpu = f"cpu-{token}"
    started = time.monotonic()
    proc = _launch(root, loss_workers["env"])

    def kill_child(_worker):
        celery = child_pids(workers.procs[cpu].pid)  # dagster-celery -> celery worker -> pool child
        kids = [k for c in celery for k in child_pids(c)]
        assert len(kids) == 1, (celery, kids)
        os.kill(kids[0], signal.SIGKILL)

    victim, killed_at = _kill_during("raw_images", instance, known, proc, kill_child)
    result = _finish(proc)
    done = time.monotonic()
    assert result["success"], result["failures"]
    _, evs = _step_events(instance, "raw_images", known)
    assert [w for k, w in evs if k == "worker"] == [workers.node(cpu)] * 2, evs
    assert [k for k, _ in evs].count("STEP_SUCCESS") == 1, evs
    assert workers.procs[cpu].poll() is None  # the worker itself lived on
    assert len(table_rows(root, "raw_images")) == 6
    print(f"\npool child loss: run {done - started:.1f} s, kill -> run end {done - killed_at:.1f} s")


def test_workers_killed_mid_step_hand_the_steps_to_their_replacements(tmp_path, monkeypatch, loss_workers):
    """One run, two losses: the whole cpu worker (prefork) while raw_images runs on it, then the
    whole gpu worker (solo) while prelabels runs on it; a replacement of each is started."""
    workers, token = loss_workers["workers"], loss_workers["token"]
    root, instance, known = _setup(tmp_path, monkeypatch, loss_workers, "ws-worker")
    started = time.monotonic()
    proc = _launch(root, loss_workers["env"])
    kills = {}
    for step, name, pool in (("raw_images", "cpu", ["--pool", "prefork", "--concurrency", "1"]),
                             ("prelabels", "gpu", ["--pool", "solo"])):
        old, new = f"{name}-{token}", f"{name}2-{token}"
        victim, kills[step] = _kill_during(step, instance, known, proc, lambda w, old=old: workers.kill(old))
        assert victim == workers.node(old)
        workers.start(new, [name], *pool)  # the replacement pod / restarted service
    result = _finish(proc)
    done = time.monotonic()
    assert result["success"], result["failures"]
    for step, name in (("raw_images", "cpu"), ("prelabels", "gpu")):
        run_id, evs = _step_events(instance, step, known)
        assert run_id == result["run_id"]
        assert [w for k, w in evs if k == "worker"] == [workers.node(f"{name}-{token}"),
                                                        workers.node(f"{name}2-{token}")], evs
        kinds = [k for k, _ in evs]
        assert kinds.count("STEP_START") == 2 and kinds.count("STEP_SUCCESS") == 1, evs  # killed, re-run
    assert len(table_rows(root, "raw_images")) == 6 and table_rows(root, "prelabels")
    print(f"\nworker loss: run {done - started:.1f} s; kill of the gpu worker -> run end "
          f"{done - kills['prelabels']:.1f} s (visibility timeout {VISIBILITY_S} s)")

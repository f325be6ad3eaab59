"""Invariant 3: a crash at any point loses nothing already committed; re-running completes the
work without duplicates. Pre-labels are written per chunk; a crash mid-batch keeps the
finished chunks and the re-run computes only the missing images."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
from labelloop.prelabel.stage import prelabel_batch
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from support.helpers import cli, skimage_data

NAMES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg")


class Crash(RuntimeError):
    pass


def test_prelabels_resume_after_a_crash(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for n in NAMES:
        shutil.copyfile(skimage_data() / n, src / n)
    root = tmp_path / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b1")
    ws = Workspace.at(root)
    scan_batch(ws, "b1")
    model = OpenCVPreLabeler(ws.config())
    real_predict = model.predict
    calls = []

    def crashing(images):  # the real detector, until the 5th image: then the process "dies"
        calls.append(1)
        if len(calls) == 5:
            raise Crash("killed")
        return real_predict(images)

    model.predict = crashing
    with pytest.raises(Crash):
        prelabel_batch(ws, "b1", model, run_id="r1", chunk_size=2)
    folder = repo.prelabel_dir(ws, "b1", model.model_id)
    assert len(list(folder.glob("part-*.parquet"))) == 2  # two finished chunks of 2 images kept
    assert not list(folder.glob(".tmp-*"))
    model.predict = real_predict
    s = prelabel_batch(ws, "b1", model, run_id="r2", chunk_size=2)
    assert (s["images_cached"], s["images_predicted"]) == (4, 2)
    preds = repo.batch_predictions(ws, "b1", model.model_id)
    assert not [k for k, n in Counter(p["prediction_id"] for p in preds).items() if n > 1]
    fresh = tmp_path / "fresh"
    cli(fresh, "init")
    cli(fresh, "ingest", str(src), "--batch", "b1")
    wf = Workspace.at(fresh)
    scan_batch(wf, "b1")
    prelabel_batch(wf, "b1", OpenCVPreLabeler(wf.config()), run_id="r", chunk_size=200)
    key = lambda p: (p["prediction_id"], p["category"], tuple(p["bbox"]), p["score"])  # noqa: E731
    assert sorted(map(key, preds)) == sorted(map(key, repo.batch_predictions(wf, "b1", model.model_id)))
    # the CLI then finds nothing stale for that model and completes the rest of the batch
    out = cli(root, "run")
    assert "batch b1 [ran: review_queue not materialized]" in out.output


def test_a_killed_run_does_not_hang_the_workspace(tmp_path):
    """kill -9 while pre-labels hold the `gpu` pool slot: the next `run` marks the dead run
    failed, frees its slot and completes (Dagster alone would keep the slot forever)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import dagster as dg

    src = tmp_path / "photos"
    src.mkdir()
    for i, n in enumerate(NAMES * 3):  # 18 files, 6 distinct photos resaved so their bytes differ
        from PIL import Image

        Image.open(skimage_data() / n).convert("RGB").save(src / f"{i:02d}.png", optimize=bool(i % 2))
    root = tmp_path / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "k1")
    os.environ["DAGSTER_HOME"] = str(root / ".dagster")
    proc = subprocess.Popen([str(__import__("pathlib").Path(sys.executable).with_name("labelloop")), "-w", str(root), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    instance = dg.DagsterInstance.from_config(str(root / ".dagster"))
    deadline = time.time() + 120
    while time.time() < deadline:
        if instance.event_log_storage.get_concurrency_info("gpu").claimed_slots:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the prelabels step never claimed the gpu slot")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots  # leaked by the kill
    out = cli(root, "run")
    assert "batch k1 [ran:" in out.output
    assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    statuses = [r.status for r in instance.get_runs()]
    assert dg.DagsterRunStatus.FAILURE in statuses and dg.DagsterRunStatus.STARTED not in statuses

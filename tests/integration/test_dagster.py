"""The code location: loads, validates with Dagster's own CLI, and serves through a real
webserver on loopback against a workspace's instance (assets and runs via GraphQL)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from pipelines.definitions import build_definitions
from pipelines.runner import get_instance
from support.helpers import REPO_ROOT, cli, skimage_data

ASSETS = {"raw_images", "prelabels", "review_queue", "review_export", "human_labels", "labels", "qa_report",
          "dataset_release", "lineage", "detector_training"}
REPO = REPO_ROOT


def test_definitions_load_with_the_asset_graph(tmp_path):
    defs = build_definitions(str(tmp_path))
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    assert {c.name for c in graph.asset_check_keys} == {"schema_valid", "release_error_rate", "gold_mean_iou",
                                                       "gold_class_accuracy", "inter_annotator_kappa",
                                                       "guidelines_agreement", "labels_traced",
                                                       "candidate_beats_current"}
    for job in ("batch_job", "resolve_job", "release_job", "rollback_job", "push_job"):
        defs.resolve_job_def(job)
    prelabels = graph.get(dg.AssetKey("prelabels")).assets_def
    assert prelabels.op.pool == "gpu"
    assert graph.get(dg.AssetKey("detector_training")).assets_def.op.pool == "gpu"


def test_dagster_definitions_validate(tmp_path):
    env = dict(os.environ, LABELLOOP_WORKSPACE=str(tmp_path), DAGSTER_HOME=str(tmp_path))
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(exe), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_pool_is_at_least_one(tmp_path):
    cli(tmp_path / "ws", "init")
    from labelloop.workspace.layout import Workspace

    instance = get_instance(Workspace.at(tmp_path / "ws"))
    assert instance.event_log_storage.get_concurrency_info("gpu").slot_count >= 1
    assert "default_limit: 1" in (tmp_path / "ws" / ".dagster" / "dagster.yaml").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.webserver
def test_webserver_shows_the_assets_and_the_runs(tmp_path):
    root = tmp_path / "ws"
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("astronaut.png", "coffee.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b1")
    cli(root, "run")
    port = _free_port()
    env = dict(os.environ, LABELLOOP_WORKSPACE=str(root), DAGSTER_HOME=str(root / ".dagster"))
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen([str(exe), "-h", "127.0.0.1", "-p", str(port), "-m", "pipelines.definitions"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not answer within 180 s")

        def gql(query: str) -> dict:
            r = requests.post(f"{url}/graphql", json={"query": query}, timeout=60)
            r.raise_for_status()
            return r.json()["data"]

        nodes = gql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        assert {n["assetKey"]["path"][-1] for n in nodes} == ASSETS
        runs = gql("{ runsOrError { ... on Runs { results { runId jobName status } } } }")["runsOrError"]["results"]
        assert {(r["jobName"], r["status"]) for r in runs} == {("batch_job", "SUCCESS"), ("resolve_job", "SUCCESS")}
        parts = gql('{ partitionSetsOrError(repositorySelector: {repositoryName: "__repository__", '
                    'repositoryLocationName: "pipelines.definitions"}, pipelineName: "batch_job") '
                    '{ ... on PartitionSets { results { partitionsOrError { ... on Partitions { results { name } } } } } } }')
        names = [p["name"] for s in parts["partitionSetsOrError"]["results"] for p in s["partitionsOrError"]["results"]]
        assert names == ["b1"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

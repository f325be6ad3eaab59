"""Dagster's instance on PostgreSQL (dagster-postgres): the loop's runs, event logs and
partitions stored in a real server on 127.0.0.1:5432 (started on this machine and CI's)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from labelloop.workspace.init import PG_ENV
from support.helpers import cli, skimage_data

pytestmark = pytest.mark.postgres


def _psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAc", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def pg_url():
    name = f"labelloop_test_{uuid.uuid4().hex[:8]}"
    _psql(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", name
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_the_loop_on_a_postgres_instance(tmp_path, monkeypatch, pg_url):
    url, db = pg_url
    monkeypatch.setenv(PG_ENV, url)
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("astronaut.png", "coffee.png", "chelsea.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    root = tmp_path / "ws"
    cli(root, "init")
    yaml_text = (root / ".dagster" / "dagster.yaml").read_text()
    assert f"env: {PG_ENV}" in yaml_text and url not in yaml_text  # the secret stays in the environment
    cli(root, "ingest", str(src), "--batch", "pg-1")
    cli(root, "run")
    assert not list((root / ".dagster").rglob("*.db"))  # nothing went to SQLite
    jobs = _psql("SELECT pipeline_name, status FROM runs ORDER BY create_timestamp", db).splitlines()
    assert jobs == ["batch_job|SUCCESS", "resolve_job|SUCCESS"]
    assert _psql("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'batches'", db) == "pg-1"
    mats = _psql("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'", db)
    assert int(mats) == 6  # 4 per-batch assets + human_labels + labels
    assert int(_psql("SELECT count(*) FROM concurrency_slots WHERE concurrency_key = 'gpu'", db)) >= 1

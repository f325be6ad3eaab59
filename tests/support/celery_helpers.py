"""Real dagster-celery workers for the ``celery`` tests: a Redis database of this session's own,
a PostgreSQL database for the Dagster instance, and workers started, waited for and stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest

from support.helpers import cli, skimage_data

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS = "redis://127.0.0.1:6379"
CLAIM_KEY = "labelloop:celery-test-session"
START_ALLOWANCE_S = 300  # a loaded 2-core machine takes minutes to start two workers


def claim_redis_db() -> int:
    """A Redis database (1-15) no other test session is using, claimed with a key that expires
    after 2 h, so two sessions on one machine never take each other's tasks off the queues."""
    import redis

    for n in range(1, 16):
        if redis.Redis.from_url(f"{REDIS}/{n}").set(CLAIM_KEY, os.getpid(), nx=True, ex=7200):
            return n
    pytest.fail("no free Redis database (1-15) for the Celery broker: every one is claimed")


def psql(sql: str) -> None:
    """Run one SQL statement as ``postgres`` on the server at 127.0.0.1:5432."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-tAc", sql],
                   check=True, capture_output=True, text=True)


def child_pids(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (read from /proc/<n>/stat; Linux only)."""
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4: ppid
                kids.append(int(d.name))
    return kids


class Workers:
    """dagster-celery workers of one test session, all with the same environment ``env``,
    DAGSTER_HOME ``home`` and worker settings file ``config_yaml``."""

    def __init__(self, home: Path, env: dict, config_yaml: Path):
        self.home, self.env, self.config_yaml = home, env, config_yaml
        self.host = socket.gethostname()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def node(self, name: str) -> str:
        """Celery's node name of worker ``name`` (``name@host``)."""
        return f"{name}@{self.host}"

    def start(self, name: str, queues: list[str], *celery_args: str) -> None:
        """Start worker ``name`` on ``queues`` (``dagster-celery worker start``, its own process
        group); ``celery_args`` go to ``celery worker`` (e.g. ``--pool solo``)."""
        self.logs[name] = self.home / f"worker-{name}.log"
        q_args = [a for q in queues for a in ("-q", q)]
        self.procs[name] = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(self.config_yaml),
             *q_args, "-n", name, "--", *celery_args], env=self.env, cwd=str(self.home),
            stdout=self.logs[name].open("w"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, names: list[str], timeout: float = START_ALLOWANCE_S) -> None:
        """Wait until each worker's log says ``<node> ready.``; RuntimeError with the logs if one
        exits or ``timeout`` seconds pass. (Not ``app.control.ping``: a ping leaves a kombu Redis
        channel with a pending BRPOP in this process, and kombu's after-fork cleanup then blocks
        every process this session forks later on that socket.)"""
        deadline = time.monotonic() + timeout
        while True:
            up = {n for n in names if f"{self.node(n)} ready." in self.logs[n].read_text(errors="replace")}
            if up == set(names):
                return
            dead = [n for n in names if self.procs[n].poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"celery workers not up ({sorted(up)} of {names}); logs: "
                                   + "\n".join(self.logs[n].read_text()[-2000:] for n in names))
            time.sleep(1)

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` and everything in its process group (the worker lost)."""
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait()

    def stop_all(self) -> None:
        """SIGTERM every worker still running (SIGKILL after 30 s)."""
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def prepare_instance(home: Path, env: dict) -> None:
    """Write ``home``/dagster.yaml (PostgreSQL) and create the instance's tables once, before the
    workers: two workers starting on an empty database both run Dagster's schema migration and
    one of them fails and retries."""
    from labelloop.workspace.init import DAGSTER_YAML_POSTGRES

    (home / "dagster.yaml").write_text(DAGSTER_YAML_POSTGRES)
    subprocess.run([sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().get_runs(limit=1)"],
                   env=env, cwd=str(home), check=True, capture_output=True, timeout=300)


@contextlib.contextmanager
def celery_servers(tmp_path_factory, name: str):
    """This session's own Redis database (broker and results) and PostgreSQL database (the
    Dagster instance), and a DAGSTER_HOME; yields ``token``, ``home``, ``env_vars`` (what a run
    needs: instance URL, broker, backend, executor) and ``env`` (a worker's whole environment).
    Afterwards drops the database, empties the Redis database and resets kombu's connection pools
    (no broker connection of the executor survives into later forks). Stop the workers first."""
    import redis

    from labelloop.workspace.init import PG_ENV
    from pipelines.environments import CELERY_BACKEND_VAR, CELERY_BROKER_VAR, EXECUTOR_VAR

    token = uuid.uuid4().hex[:8]
    redis_url = f"{REDIS}/{claim_redis_db()}"
    db = f"labelloop_{name}_{token}"
    psql(f"CREATE DATABASE {db}")
    home = tmp_path_factory.mktemp(f"{name}-home")
    env_vars = {PG_ENV: f"postgresql+psycopg2://postgres@127.0.0.1:5432/{db}", CELERY_BROKER_VAR: redis_url,
                CELERY_BACKEND_VAR: redis_url, EXECUTOR_VAR: "celery"}
    redis.Redis.from_url(redis_url).delete("gpu", "cpu")  # no leftover tasks of an earlier session
    env = {**os.environ, **env_vars, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        yield SimpleNamespace(token=token, home=home, env_vars=env_vars, env=env)
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        redis.Redis.from_url(redis_url).flushdb()  # the claim key, queues and results of this session
        import kombu.pools

        kombu.pools.reset()


BATCHES = {"b1": ["astronaut.png", "coffee.png"], "b2": ["chelsea.png", "grace_hopper.jpg"], "b3": ["motorcycle_left.png"]}


VOLATILE = {"run_id", "exported_at", "exported_to"}  # differ between any two runs


def table_rows(root: Path, name: str) -> list[dict]:
    folder = root / "tables" / name
    rows = []
    for p in sorted(folder.rglob("*.parquet")):
        rows += pq.read_table(p).to_pylist()
    for r in rows:
        for k in VOLATILE & set(r):
            r.pop(k)
    return sorted(rows, key=repr)


def celery_workspace(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    cli(root, "init")
    # the template names the project (the folder's name): both workspaces get the same guidelines,
    # so their review queues' guidelines_sha256 must agree too
    (root / "guidelines.md").write_text("# Labeling guidelines\n\nBox every person, face and cat.\n", encoding="utf-8")
    import matplotlib

    sk = skimage_data()
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    for b, files in BATCHES.items():
        src = tmp_path / "src" / b
        if not src.exists():
            src.mkdir(parents=True)
            for f in files:
                shutil.copyfile((mpl if f == "grace_hopper.jpg" else sk) / f, src / f)
        cli(root, "ingest", str(src), "--batch", b)
    return root

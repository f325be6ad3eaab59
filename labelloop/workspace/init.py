"""``labelloop init``: make a directory a workspace (git + DVC repository, config, folders)."""

from __future__ import annotations

import json
import os
from importlib import resources

from labelloop.workspace import versioning
from labelloop.workspace.config import load_config
from labelloop.workspace.guidelines import write_template
from labelloop.workspace.layout import Workspace

GITIGNORE = ["/inbox/", "/tables/", "/review_inbox/", "/review_out/", "/.dagster/", "/.labelloop/", "/.release-old-*"]

# Dagster instance settings shared by the CLI, sensors and `dagster dev` (DAGSTER_HOME).
# Pools without an explicit limit get 1, so the `gpu` pool never blocks a CPU-only machine;
# `labelloop` sets the gpu pool to the GPU count (at least 1) on every start.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
"""


# Production instance storage: runs, event logs and schedules in PostgreSQL (dagster-postgres).
# The URL is read from the environment at instance load, never written into the file.
PG_ENV = "LABELLOOP_DAGSTER_PG_URL"
DAGSTER_YAML_POSTGRES = DAGSTER_YAML + f"""\
storage:
  postgres:
    postgres_url:
      env: {PG_ENV}
"""


def dagster_yaml() -> str:
    """The instance settings for a new workspace: PostgreSQL storage when
    ``$LABELLOOP_DAGSTER_PG_URL`` is set (``postgresql+psycopg2://user:password@host:port/db``; SQLAlchemy 2.1 reads a bare
    ``postgresql://`` as psycopg 3, which dagster-postgres does not install), else
    SQLite files under DAGSTER_HOME."""
    return DAGSTER_YAML_POSTGRES if os.environ.get(PG_ENV) else DAGSTER_YAML


def package_text(name: str) -> str:
    """Text of a file shipped in ``labelloop/data`` (works from any install)."""
    return resources.files("labelloop.data").joinpath(name).read_text(encoding="utf-8")


def init_workspace(ws: Workspace, config_text: str | None = None) -> Workspace:
    """Create (or complete) the workspace at ``ws.root``; idempotent, never overwrites an
    existing labelloop.yaml, guidelines.md (the labeling guidelines template,
    :func:`labelloop.workspace.guidelines.template`) or dvc.yaml.

    Raises:
        labelloop.workspace.config.ConfigError: an existing labelloop.yaml is invalid.
        labelloop.workspace.versioning.VersioningError: git or DVC failed.
    """
    ws.root.mkdir(parents=True, exist_ok=True)
    if not ws.config_path.exists():
        text = config_text or package_text("labelloop.yaml").replace("project: demo", f"project: {json.dumps(ws.root.name)}", 1)
        ws.config_path.write_text(text, encoding="utf-8")
    write_template(ws.root, load_config(ws.config_path))  # guidelines.md, never overwritten
    for d in (ws.inbox, ws.review_inbox, ws.review_out, ws.tables, ws.state, ws.dagster_home):
        d.mkdir(parents=True, exist_ok=True)
    dy = ws.dagster_home / "dagster.yaml"
    if not dy.exists():
        dy.write_text(dagster_yaml(), encoding="utf-8")
    versioning.init_repo(ws.root, package_text("dvc.yaml"), ws.dvc_remote, GITIGNORE)
    return ws

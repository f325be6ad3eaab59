"""The LABELLOOP_ENV switch (pipelines/environments.py): clear errors for unknown values and
missing production variables, the local defaults unchanged, and .env.example naming every
variable the code reads."""

from __future__ import annotations

import re

import pytest

from support.helpers import REPO_ROOT

ROOT = REPO_ROOT
PRODUCTION = {"LABELLOOP_ENV": "production", "LABELLOOP_EXECUTOR": "k8s",
              "LABELLOOP_DAGSTER_PG_URL": "postgresql+psycopg2://dagster:secret@pg:5432/dagster",
              "LABEL_STUDIO_URL": "http://label-studio:8080", "LABEL_STUDIO_API_KEY": "token",
              "LABELLOOP_DVC_REMOTE": "s3://datasets/labelloop", "LABELLOOP_STORE_URL": "s3://bucket/ws"}


def test_production_without_its_variables_is_a_clear_error(monkeypatch):
    from pipelines.environments import EnvConfigError, get_env

    with pytest.raises(EnvConfigError, match="needs LABELLOOP_DAGSTER_PG_URL, LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, "
                                             "LABELLOOP_DVC_REMOTE.*LABELLOOP_CELERY_BROKER_URL, "
                                             "LABELLOOP_CELERY_BACKEND_URL"):
        get_env({"LABELLOOP_ENV": "production"})
    with pytest.raises(EnvConfigError, match=r"LABELLOOP_ENV='staging': expected one of local, production"):
        get_env({"LABELLOOP_ENV": "staging"})
    with pytest.raises(EnvConfigError, match=r"LABELLOOP_EXECUTOR='dask'"):
        get_env({"LABELLOOP_EXECUTOR": "dask"})
    assert get_env({}).executor == "in_process" and get_env({**PRODUCTION}).executor == "k8s"


def test_local_keeps_the_embedded_defaults(tmp_path, monkeypatch):
    for k in ("LABELLOOP_ENV", "LABELLOOP_EXECUTOR", "LABEL_STUDIO_URL"):
        monkeypatch.delenv(k, raising=False)
    from pipelines.definitions import build_definitions

    defs = build_definitions(str(tmp_path))
    assert defs.resolve_job_def("batch_job").executor_def.name == "multi_or_in_process_executor"
    assert type(defs.resources["review_tool"]).__name__ == "LabelStudioFilesResource"
    assert defs.resources["storage"].root == str(tmp_path.resolve())


def test_env_example_lists_every_variable_the_code_reads():
    names = set()
    for folder in ("labelloop", "pipelines", "resources", "assets"):
        for p in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"[\"'](LABELLOOP_[A-Z][A-Z_]*[A-Z]|LABEL_STUDIO_[A-Z_]*[A-Z])[\"']", p.read_text()))
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert names and names <= listed, sorted(names - listed)
    text = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(text):  # each variable has a comment above it
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            assert any(text[j].startswith("#") for j in range(max(0, i - 2), i)), line


@pytest.mark.parametrize("change, match", [
    ({"LABEL_STUDIO_API_KEY": "   "}, "needs LABEL_STUDIO_API_KEY"),  # was accepted: blank is not set
    ({"LABELLOOP_DAGSTER_PG_URL": "", "LABELLOOP_DVC_REMOTE": "\t"}, "needs LABELLOOP_DAGSTER_PG_URL, LABELLOOP_DVC_REMOTE"),
    ({"LABELLOOP_STORE_URL": "s3://"}, "LABELLOOP_ENV=production: store URL 's3://': no bucket"),
    ({"LABELLOOP_STORE_URL": "http://minio:9000/bucket"}, "expected s3://bucket"),
])
def test_partial_or_blank_production_variables_are_a_clear_error(change, match):
    from pipelines.environments import EnvConfigError, get_env

    with pytest.raises(EnvConfigError, match=re.escape(match)):
        get_env({**PRODUCTION, **change})

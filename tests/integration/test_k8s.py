"""The Kubernetes deployment without a cluster: LABELLOOP_ENV=production with
LABELLOOP_EXECUTOR=k8s loads the definitions with dagster-k8s's k8s_job_executor; the model step's
op tags become a GPU limit and node selector in the step's Job (built by dagster-k8s itself);
the Helm values and the Dockerfile start the code location the definitions name."""

from __future__ import annotations

import pytest
import yaml

from support.helpers import REPO_ROOT

ROOT = REPO_ROOT
PRODUCTION = {"LABELLOOP_ENV": "production", "LABELLOOP_EXECUTOR": "k8s",
              "LABELLOOP_DAGSTER_PG_URL": "postgresql+psycopg2://dagster:secret@pg:5432/dagster",
              "LABEL_STUDIO_URL": "http://label-studio:8080", "LABEL_STUDIO_API_KEY": "token",
              "LABELLOOP_DVC_REMOTE": "s3://datasets/labelloop", "LABELLOOP_STORE_URL": "s3://bucket/ws"}


@pytest.fixture
def defs(tmp_path, monkeypatch):
    for k, v in PRODUCTION.items():
        monkeypatch.setenv(k, v)
    from pipelines.definitions import build_definitions

    return build_definitions(str(tmp_path))


def test_every_job_runs_on_the_k8s_job_executor(defs):
    from dagster._config import validate_config
    from dagster_k8s import k8s_job_executor

    from pipelines.environments import K8S_CONFIG

    for name in ("batch_job", "resolve_job", "release_job"):
        assert defs.resolve_job_def(name).executor_def.name == "k8s", name
    checked = validate_config(k8s_job_executor.config_schema.config_type, K8S_CONFIG)
    assert checked.success, checked.errors
    # production resources: the live Label Studio server, secrets through EnvVar
    review = defs.resources["review_tool"]
    assert type(review).__name__ == "LabelStudioServerResource"
    assert review.api_key == __import__("dagster").EnvVar("LABEL_STUDIO_API_KEY")


def test_the_model_step_requests_a_gpu_and_the_others_do_not(defs):
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    def step_job(asset: str):
        tags = {k: v if isinstance(v, str) else __import__("json").dumps(v)
                for k, v in defs.resolve_assets_def(asset).op.tags.items()}
        return construct_dagster_k8s_job(
            DagsterK8sJobConfig(job_image="registry.example.com/labelloop:0.1.0",
                                dagster_home="/opt/dagster/dagster_home", instance_config_map="dagster-instance"),
            ["dagster", "api", "execute_step"], f"dagster-step-{asset}",
            user_defined_k8s_config=get_user_defined_k8s_config(tags)), tags

    job, tags = step_job("prelabels")
    pod = job.spec.template.spec
    assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}  # a Kubernetes quantity
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert tags["dagster-celery/queue"] == "gpu"
    for asset in ("raw_images", "review_queue", "review_export", "labels"):
        job, tags = step_job(asset)
        res = job.spec.template.spec.containers[0].resources
        assert not (res and res.limits and "nvidia.com/gpu" in res.limits), asset
        assert "dagster-celery/queue" not in tags  # the executor's default queue, cpu


def test_helm_values_and_dockerfile_start_this_code_location():
    values = yaml.safe_load((ROOT / "deploy" / "k8s" / "values.yaml").read_text())
    (dep,) = values["dagster-user-deployments"]["deployments"]
    assert dep["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
    env = {e["name"]: e.get("value") for e in dep["env"]}
    assert env["LABELLOOP_ENV"] == "production" and env["LABELLOOP_EXECUTOR"] == "k8s"
    assert not {"LABEL_STUDIO_API_KEY", "LABELLOOP_DAGSTER_PG_URL"} & set(env)  # secrets come from a Secret
    assert dep["envSecrets"] == [{"name": "labelloop-secrets"}]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    assert ".[production,gpu]" in docker and "pipelines.definitions" in docker

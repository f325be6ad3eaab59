"""The Dagster code location `pipelines.definitions` (dagster dev -m pipelines.definitions).

The workspace is LABELLOOP_WORKSPACE (else the current directory); the environment
(LABELLOOP_ENV=local|production, pipelines.environments) picks the resources and the executor.
Importing this module builds nothing: Dagster calls :func:`defs` when it loads the code location.
"""

import os

import dagster as dg

import assets.ingest
import assets.labels
import assets.lineage
import assets.prelabels
import assets.qa
import assets.release
import assets.review
import assets.training
from labelloop.workspace.layout import ENV_WORKSPACE, Workspace
from pipelines.environments import executor_for, get_env, review_tool_for
from pipelines.environments import resources_for as env_resources
from pipelines.jobs import batch_job, release_job, resolve_job, review_push_job, rollback_job
from pipelines.release_jobs import push_job
from pipelines.reprocess import reprocess_resolve_sensor, reprocess_schedule
from pipelines.s3_sensors import s3_inbox_sensor
from pipelines.sensors import inbox_sensor, label_studio_sensor, review_inbox_sensor

ASSET_MODULES = [assets.ingest, assets.prelabels, assets.review, assets.labels, assets.qa, assets.release,
                 assets.lineage, assets.training]


def resources_for(root: str | None = None) -> dict:
    """Resources of the current environment (LABELLOOP_ENV) for the workspace at ``root``."""
    return env_resources(str(Workspace.at(root or os.environ.get(ENV_WORKSPACE)).root), get_env())


def review_tool_resource():
    """The review tool of the current environment (see pipelines.environments.review_tool_for)."""
    return review_tool_for(get_env())


def build_definitions(root: str | None = None) -> dg.Definitions:
    """Definitions for the workspace at ``root`` (default: LABELLOOP_WORKSPACE or cwd), with the
    resources and executor of LABELLOOP_ENV / LABELLOOP_EXECUTOR."""
    env = get_env()
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[batch_job, resolve_job, release_job, rollback_job, review_push_job, push_job],
        schedules=[reprocess_schedule],
        sensors=[inbox_sensor, s3_inbox_sensor, review_inbox_sensor, label_studio_sensor, reprocess_resolve_sensor],
        resources=env_resources(str(Workspace.at(root or os.environ.get(ENV_WORKSPACE)).root), env),
        executor=executor_for(env),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location's definitions (``dagster dev -m pipelines.definitions``)."""
    return build_definitions()


def reconstruct_job(root: str, job_name: str) -> dg.JobDefinition:
    """``job_name`` of the definitions for ``root``, rebuilt in another process (Celery worker,
    step pod); the target of ``dg.build_reconstructable_job``. The environment comes from that
    process's variables."""
    return build_definitions(root).resolve_job_def(job_name)


def reconstructable_job(root: str, job_name: str):
    """A ReconstructableJob that workers rebuild with :func:`reconstruct_job`."""
    return dg.build_reconstructable_job("pipelines.definitions", "reconstruct_job",
                                        reconstructable_args=(str(root), job_name))

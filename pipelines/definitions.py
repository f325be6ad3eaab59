"""The Dagster code location `pipelines.definitions` (dagster dev -m pipelines.definitions).

The workspace is LABELLOOP_WORKSPACE (else the current directory); per-environment wiring
picks the resources once, here.
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
from labelloop.workspace import ENV_WORKSPACE, Workspace
from pipelines.jobs import batch_job, release_job, resolve_job, review_push_job, rollback_job
from pipelines.release_jobs import push_job
from pipelines.s3_sensors import s3_inbox_sensor
from pipelines.sensors import inbox_sensor, label_studio_sensor, review_inbox_sensor
from resources import DvcRepoResource, LabelStudioFilesResource, LabelStudioServerResource, PreLabelerResource
from resources.storage import storage_resource_from_env

ASSET_MODULES = [assets.ingest, assets.prelabels, assets.review, assets.labels, assets.qa, assets.release,
                 assets.lineage]


def resources_for(root: str | None = None) -> dict:
    """Resources of the embedded defaults for the workspace at ``root``."""
    root = str(Workspace.at(root or os.environ.get(ENV_WORKSPACE)).root)
    return {
        "storage": storage_resource_from_env(root),  # S3 when LABELLOOP_STORE_URL is set (dg.EnvVar)
        "prelabeler": PreLabelerResource(),
        "dvc": DvcRepoResource.from_env(),  # remotes from LABELLOOP_DVC_REMOTE etc. (dg.EnvVar)
        "review_tool": review_tool_resource(),
    }


def review_tool_resource() -> LabelStudioFilesResource:
    """The live Label Studio server when LABEL_STUDIO_URL is set (URL and token read at launch
    through dg.EnvVar; optional: LABEL_STUDIO_PROJECT_TITLE, LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT
    (the server's own setting) and LABEL_STUDIO_WORKSPACE_PATH), else Label Studio through files."""
    if not os.environ.get("LABEL_STUDIO_URL"):
        return LabelStudioFilesResource()
    return LabelStudioServerResource(
        url=dg.EnvVar("LABEL_STUDIO_URL"), api_key=dg.EnvVar("LABEL_STUDIO_API_KEY"),
        project_title=os.environ.get("LABEL_STUDIO_PROJECT_TITLE", ""),
        document_root=os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", ""),
        workspace_path=os.environ.get("LABEL_STUDIO_WORKSPACE_PATH", ""),
    )


def build_definitions(root: str | None = None) -> dg.Definitions:
    """Definitions for the workspace at ``root`` (default: LABELLOOP_WORKSPACE or cwd)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[batch_job, resolve_job, release_job, rollback_job, review_push_job, push_job],
        sensors=[inbox_sensor, s3_inbox_sensor, review_inbox_sensor, label_studio_sensor],
        resources=resources_for(root),
    )


defs = build_definitions()

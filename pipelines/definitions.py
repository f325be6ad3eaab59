"""The Dagster code location `pipelines.definitions` (dagster dev -m pipelines.definitions).

The workspace is LABELLOOP_WORKSPACE (else the current directory); per-environment wiring
picks the resources once, here.
"""

import os

import dagster as dg

import assets.ingest
import assets.labels
import assets.prelabels
import assets.qa
import assets.release
import assets.review
from labelloop.workspace import ENV_WORKSPACE, Workspace
from pipelines.jobs import batch_job, release_job, resolve_job, rollback_job
from pipelines.sensors import inbox_sensor, review_inbox_sensor
from resources import DvcRepoResource, LabelStudioFilesResource, PreLabelerResource, WorkspaceResource

ASSET_MODULES = [assets.ingest, assets.prelabels, assets.review, assets.labels, assets.qa, assets.release]


def resources_for(root: str | None = None) -> dict:
    """Resources of the embedded defaults for the workspace at ``root``."""
    root = str(Workspace.at(root or os.environ.get(ENV_WORKSPACE)).root)
    return {
        "storage": WorkspaceResource(root=root),
        "prelabeler": PreLabelerResource(),
        "dvc": DvcRepoResource(),
        "review_tool": LabelStudioFilesResource(),
    }


def build_definitions(root: str | None = None) -> dg.Definitions:
    """Definitions for the workspace at ``root`` (default: LABELLOOP_WORKSPACE or cwd)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[batch_job, resolve_job, release_job, rollback_job],
        sensors=[inbox_sensor, review_inbox_sensor],
        resources=resources_for(root),
    )


defs = build_definitions()

"""Jobs: per-batch processing, review resolution, release (with its QA gate), rollback."""

import dagster as dg

from labelloop.workspace import versioning
from resources.storage import WorkspaceResource

BATCH_ASSETS = ["raw_images", "prelabels", "review_queue", "review_export"]

batch_job = dg.define_asset_job("batch_job", selection=BATCH_ASSETS,
                                description="Ingest check, pre-labels, routing and review export of one batch.")
resolve_job = dg.define_asset_job("resolve_job", selection=["human_labels", "labels"],
                                  description="Import reviews from the review inbox and resolve labels.")
review_push_job = dg.define_asset_job(
    "review_push_job", selection=["review_export"],
    description="Write one batch's review tasks and, with a live Label Studio server, push them into its project.")
release_job = dg.define_asset_job(
    "release_job", selection=dg.AssetSelection.assets("labels", "qa_report", "dataset_release", "lineage"),
    description="Resolve labels, run QA with its blocking checks, release if no blocking check failed, "
                "and write the release's per-label lineage.")


class RollbackConfig(dg.Config):
    """Which release to restore into release/."""

    tag: str


@dg.op(pool="dvc")
def rollback_release(context: dg.OpExecutionContext, config: RollbackConfig, storage: WorkspaceResource) -> dict:
    """Restore release/ to a `dataset-vN` tag byte for byte (DVC checkout); later tags and
    human labels are untouched."""
    ws = storage.workspace()
    with ws.lock():
        info = versioning.rollback(ws.root, config.tag)
    context.log.info(f"release/ restored to {info['tag']} (dvc md5 {info['dvc_md5']})")
    context.add_output_metadata({"tag": info["tag"], "git_sha": info["git_sha"], "dvc_md5": info["dvc_md5"] or ""})
    # the asset's history in the UI shows the rollback as what release/ now holds
    context.log_event(dg.AssetMaterialization(
        asset_key="dataset_release", description=f"rolled back to {info['tag']}",
        metadata={"status": "rolled_back", "tag": info["tag"], "git_sha": info["git_sha"],
                  "dvc_md5": info["dvc_md5"] or ""}))
    return info


@dg.job(description="Roll release/ back to a tag; recorded as a run.")
def rollback_job():
    rollback_release()

"""dataset_release: COCO + YOLO release, DVC commit and `dataset-vN` tag."""

import dagster as dg

from labelloop import project as P
from resources.dvc import DvcRepoResource
from resources.storage import WorkspaceResource


@dg.asset(deps=["qa_report"], group_name="release", kinds={"python", "dvc"}, pool="dvc")
def dataset_release(context: dg.AssetExecutionContext, storage: WorkspaceResource,
                    dvc: DvcRepoResource) -> dg.MaterializeResult:
    """The released dataset: EXIF-applied images, COCO JSON, YOLO TXT, provenance table, in
    release/ recorded by DVC and tagged dataset-vN. Refuses to write unless the QA report of
    these same labels passed or only warned."""
    ws = storage.workspace()
    try:
        s = P.release(ws, push=dvc.push)
    except P.ReleaseBlocked as exc:
        raise dg.Failure(description=f"release blocked: {exc}", allow_retries=False) from None
    if s["status"] == "unchanged":
        context.log.info(f"release would equal {s['tag']}: no new tag"
                         + (f"; release/ restored to {s['tag']}" if s["restored"] else ""))
        return dg.MaterializeResult(metadata={"status": "unchanged", "tag": s["tag"], "restored": s["restored"]})
    for w in s["warnings"]:
        context.log.warning(w)
    c = s["counts"]
    return dg.MaterializeResult(
        metadata={"status": "released", "tag": s["tag"], "git_sha": s["git_sha"], "dvc_md5": s["dvc_md5"] or "",
                  "images": c["images"], "labels": c["labels"], "negatives": c["negatives"],
                  "per_class": dg.MetadataValue.json(c["per_class"]),
                  "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in s["warnings"]) or "none"),
                  "path": dg.MetadataValue.path(str(ws.release_dir))},
        data_version=dg.DataVersion(s["content_sha256"]),
    )

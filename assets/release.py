"""dataset_release: COCO + YOLO release, DVC commit and `dataset-vN` tag."""

import dagster as dg
from pydantic import Field

from labelloop.release.check import ReleaseInvalid
from labelloop.release.cut import ReleaseBlocked, cut_release
from labelloop.release.splits import format_balance
from resources.dvc import DvcRepoResource
from resources.storage import WorkspaceResource


class ReleaseConfig(dg.Config):
    """Options of one release run."""

    resplit: bool = Field(False, description="assign every near-duplicate group's split anew (stored splits "
                                             "are otherwise kept forever)")


@dg.asset(deps=["qa_report"], group_name="release", kinds={"python", "dvc"}, pool="dvc")
def dataset_release(context: dg.AssetExecutionContext, config: ReleaseConfig, storage: WorkspaceResource,
                    dvc: DvcRepoResource) -> dg.MaterializeResult:
    """The released dataset: EXIF-applied images, COCO JSON, YOLO TXT, provenance tables, in
    release/ recorded by DVC and tagged dataset-vN (the tag message is the release note, with
    what changed since the last release and who caused it). Every file is re-read and checked
    before release/ is replaced. Refuses to write unless the QA report of these same labels
    passed or only warned."""
    ws = storage.workspace()
    try:
        s = cut_release(ws, push=dvc.push, resplit=config.resplit, run_id=context.run_id, settings=dvc.settings())
    except ReleaseBlocked as exc:
        raise dg.Failure(description=f"release blocked: {exc}", allow_retries=False) from None
    except ReleaseInvalid as exc:
        raise dg.Failure(description=str(exc), metadata={"problems": dg.MetadataValue.json(exc.problems[:200])},
                         allow_retries=False) from None
    if s["status"] == "unchanged":
        context.log.info(f"release would equal {s['tag']}: no new tag"
                         + (f"; release/ restored to {s['tag']}" if s["restored"] else ""))
        return dg.MaterializeResult(metadata={"status": "unchanged", "tag": s["tag"], "restored": s["restored"]})
    for w in s["warnings"]:
        context.log.warning(w)
    c = s["counts"]
    d = s["diff"]
    changes = {"images_added": len(d["images"]["added"]), "images_removed": len(d["images"]["removed"]),
               **{f"labels_{k}": len(v) for k, v in d["labels"].items()}} if d else {}
    return dg.MaterializeResult(
        metadata={"status": "released", "tag": s["tag"], "git_sha": s["git_sha"], "dvc_md5": s["dvc_md5"] or "",
                  "images": c["images"], "labels": c["labels"], "negatives": c["negatives"],
                  "per_class": dg.MetadataValue.json(c["per_class"]),
                  "changes": dg.MetadataValue.json(changes),
                  "split_balance": dg.MetadataValue.md("\n".join(f"- {x}" for x in format_balance(s["split_balance"]))),
                  "max_split_drift": s["split_balance"]["max_abs_drift"],
                  "pushed_to": (s["pushed"] or {}).get("dvc_url") or "",
                  "push_error": s["push_error"] or "",
                  "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in s["warnings"]) or "none"),
                  "path": dg.MetadataValue.path(str(ws.release_dir))},
        data_version=dg.DataVersion(s["content_sha256"]),
    )

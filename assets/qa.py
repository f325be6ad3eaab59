"""qa_report with its blocking asset checks (schema validity, audited error rate)."""

import dagster as dg

from labelloop import project as P
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource

GATES = ("schema_valid", "audited_error_rate")


@dg.asset(deps=["labels"], group_name="qa", kinds={"python", "html"},
          check_specs=[dg.AssetCheckSpec(name, asset="qa_report", blocking=True) for name in GATES])
def qa_report(context: dg.AssetExecutionContext, storage: WorkspaceResource, prelabeler: PreLabelerResource):
    """Pre-label precision / recall / IoU against reviewers, the QA sample's audited error rate
    with its Wilson interval, counts by route and class; JSON + HTML. Its checks gate releases:
    a failed blocking check (ERROR) stops dataset_release; a straddling interval warns."""
    ws = storage.workspace()
    report = P.qa(ws, prelabeler.get(ws.config()).model_id)
    _, html = P.qa_paths(ws)
    o = report["prelabel_vs_human"]["overall"]["iou@0.5"]
    yield dg.MaterializeResult(metadata={
        "labels_sha256": report["labels_sha256"], "policy_id": report["policy_id"],
        "report": dg.MetadataValue.path(str(html)),
        "prelabel_precision@0.5": o["precision"] if o["precision"] is not None else -1.0,
        "prelabel_recall@0.5": o["recall"] if o["recall"] is not None else -1.0,
        "audited_images": report["audit"]["n_audited"],
    })
    for g in report["gates"]:
        yield dg.AssetCheckResult(
            check_name=g["name"], asset_key="qa_report", passed=g["status"] != "fail" and g["status"] != "warn",
            severity=dg.AssetCheckSeverity.ERROR if g["status"] == "fail" else dg.AssetCheckSeverity.WARN,
            metadata={"status": g["status"], "reason": g["reason"], "value": str(g["value"]),
                      "threshold": str(g["threshold"]), "images": dg.MetadataValue.json(list(g.get("images") or [])[:50]),
                      "labels_sha256": report["labels_sha256"]},
        )

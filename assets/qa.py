"""qa_report with its asset checks: the QA gates that stop dataset_release.

One asset check per gate of :data:`labelloop.qa.gates.GATES` (blocking ones are blocking checks:
a failure is an ERROR check result and stops dataset_release). A gate whose interval straddles
its threshold is a WARN result naming the sample size needed; ``not_measured`` (nothing to
measure, e.g. no gold set) passes with that description.
"""

import dagster as dg

from labelloop.qa.gates import GATES
from labelloop.qa.run import run_qa
from labelloop.workspace import repo
from resources.prelabeler import PreLabelerResource
from resources.storage import WorkspaceResource


def _num(v) -> float:
    """Metadata floats: -1.0 stands for an undefined figure (the report says why)."""
    return float(v) if v is not None else -1.0


@dg.asset(deps=["labels"], group_name="qa", kinds={"python", "html"},
          check_specs=[dg.AssetCheckSpec(g.name, asset="qa_report", blocking=g.blocking, description=g.description)
                       for g in GATES])
def qa_report(context: dg.AssetExecutionContext, storage: WorkspaceResource, prelabeler: PreLabelerResource):
    """How good the labels are, per release and per batch: reviewers vs the gold set, Cohen's
    kappa between reviewers, the QA sample's audited error rate (Wilson interval), model vs
    human COCO AP, cleanlab label-error suspects (sent to review), label statistics and drift,
    cost; JSON + HTML (linked below). Its checks gate releases."""
    ws = storage.workspace()
    report = run_qa(ws, prelabeler.get(ws.config()).model_id)
    _, html = repo.qa_paths(ws)
    o = report["prelabel_vs_human"]["overall"]["iou@0.5"]
    box = report["model_vs_human"]["bbox"]
    le = report.get("label_errors") or {}
    yield dg.MaterializeResult(metadata={
        "labels_sha256": report["labels_sha256"], "policy_id": report["policy_id"],
        "report": dg.MetadataValue.path(str(html)),
        "batch_reports": dg.MetadataValue.json({b: str(ws.locate(p)) for b, p in report["batch_reports"].items()}),
        "gates": dg.MetadataValue.md("\n".join(
            f"- **{g['name']}** {g['status']}: {g['reason']}" for g in report["gates"])),
        "prelabel_precision@0.5": _num(o["precision"]), "prelabel_recall@0.5": _num(o["recall"]),
        "model_AP": _num(box["AP"]), "model_AP50": _num(box["AP50"]), "model_AP75": _num(box["AP75"]),
        "audited_images": report["audit"]["n_audited"],
        "gold_images": report["gold"]["gold_images"],
        "double_reviewed_images": report["agreement"]["double_reviewed_images"],
        "label_suspects_open": le.get("open", 0),
        "cost_saving": _num(report["cost"]["saving"]),
    })
    for g in report["gates"]:
        status = g["status"]
        yield dg.AssetCheckResult(
            check_name=g["name"], asset_key="qa_report", passed=status in ("pass", "not_measured"),
            severity=dg.AssetCheckSeverity.ERROR if status == "fail" and g["blocking"] else dg.AssetCheckSeverity.WARN,
            description=f"{status}: {g['reason']}"[:2000],
            metadata={"status": status, "reason": g["reason"], "value": str(g["value"]),
                      "threshold": str(g["threshold"]), "images": dg.MetadataValue.json(list(g.get("images") or [])[:50]),
                      "labels_sha256": report["labels_sha256"]},
        )

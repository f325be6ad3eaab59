"""lineage: one provenance row per label of the release, with an audit summary (Markdown, HTML)."""

import json

import dagster as dg

from labelloop.models import registry
from labelloop.release import lineage as L
from labelloop.workspace import versioning as V
from resources.storage import WorkspaceResource


def _current_tag(ws) -> str | None:
    """The tag whose content is in release/ (after a rollback: the restored one), else the latest."""
    tags = V.release_tags(ws.root)
    try:
        here = json.loads((ws.release_dir / "manifest.json").read_text(encoding="utf-8"))["content_sha256"]
    except (OSError, ValueError, KeyError):
        here = None
    match = [t["tag"] for t in tags if t["content_sha256"] and t["content_sha256"] == here]
    return match[-1] if match else (tags[-1]["tag"] if tags else None)


@dg.asset(deps=["dataset_release"], group_name="release", kinds={"python", "parquet", "html"},
          check_specs=[dg.AssetCheckSpec("labels_traced", asset="lineage",
                                         description="every released label answers: image bytes, model and "
                                                     "checkpoint or reviewer, thresholds, release")])
def lineage(context: dg.AssetExecutionContext, storage: WorkspaceResource):
    """Per-label provenance of the release in release/ (and of any earlier release without it):
    image sha256, source uri, EXIF orientation applied, model id, checkpoint sha256, prompt and
    thresholds, review task, annotator, action and time, routing decision and reason, QA sample
    membership, the Dagster runs, release tag and git sha. tables/lineage/<tag>/ holds
    lineage.parquet, summary.md and summary.html."""
    ws = storage.workspace()
    tag = _current_tag(ws)
    if tag is None:
        raise dg.Failure(description="no release yet: materialize dataset_release first", allow_retries=False)
    trained_on = registry.trained_on_lines(ws)  # a fine-tuned model's labels name its training release
    for t in V.release_tags(ws.root):
        if t["tag"] != tag and not (L.lineage_dir(ws.root, t["tag"], ws.tables) / "lineage.parquet").is_file():
            L.materialize(ws.root, t["tag"], ws.release_dir, ws.tables, trained_on)
            context.log.info(f"lineage of {t['tag']} written (it had none)")
    s = L.materialize(ws.root, tag, ws.release_dir, ws.tables, trained_on)
    yield dg.MaterializeResult(metadata={
        "tag": tag, "git_sha": s["git_sha"], "release_run_id": s["run_id"] or "", "dagster/row_count": s["rows"],
        "by_origin": dg.MetadataValue.json(s["by_origin"]),
        "table": dg.MetadataValue.path(s["paths"]["parquet"]),
        "summary": dg.MetadataValue.path(s["paths"]["html"]),
    })
    yield dg.AssetCheckResult(
        check_name="labels_traced", asset_key="lineage", passed=not s["untraced"],
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"untraced": len(s["untraced"]), "examples": dg.MetadataValue.json(s["untraced"][:20]),
                  "reason": "every label traced" if not s["untraced"] else f"{len(s['untraced'])} labels lack provenance"},
    )

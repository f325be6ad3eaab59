"""The audit summary of a release, in Markdown (and HTML rendered from it with markdown-it-py,
CommonMark plus GFM tables, raw HTML disabled so no label text can inject markup).

For people who do not read Parquet: the release's identity (tag, git commit, content hash,
Dagster run, the labeling guidelines' sha256), its release note, who made the labels (reviewers and models with checkpoints),
routing thresholds and QA sample, split balance with drift, what changed since the previous
release with the causes, and one table row per label.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from html import escape
from typing import Mapping, Sequence

from markdown_it import MarkdownIt

from labelloop.release.diff import summary_lines
from labelloop.release.splits import SPLITS
from labelloop.tables.schemas import LineageRow
from labelloop.workspace.guidelines import short

MAX_LABEL_ROWS = 2000  # per-label rows in the summary (all of them are in lineage.parquet)


def _cell(v) -> str:
    text = "" if v is None else str(v)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return out + [""]


def audit_markdown(view, info: dict, note: str, rows: Sequence[LineageRow], previous: dict | None,
                   trained_on: Mapping[str, str] | None = None) -> str:
    """Markdown audit summary of one release.

    Args:
        view: :class:`labelloop.release.diff.ReleaseView` of the release.
        info: its tag record (:func:`labelloop.workspace.versioning.release_tags` entry).
        note: the tag message (release note).
        rows: LINEAGE rows of its labels.
        previous: :func:`labelloop.release.diff.diff_releases` from the release before, or None.
        trained_on: ``{checkpoint sha256: "model NAME, trained on dataset-vN (labels sha256 ...)"}``
            (:func:`labelloop.models.registry.trained_on_lines`): a fine-tuned model's labels say
            which release trained it, in the who-made-the-labels table and each label's row.
    """
    trained_on = trained_on or {}
    counts = view.manifest.get("counts", {})
    tag = info["tag"]
    lines = [f"# Release {tag}: audit summary", ""]
    lines += _table(["", ""], [
        ["git commit", info["git_sha"]], ["content sha256", info["content_sha256"]],
        ["Dagster run", info.get("run_id") or "not cut by a Dagster run"],
        ["images", f"{len(view.images)} ({counts.get('negatives', '?')} without labels)"],
        ["labels", len(view.labels)], ["YOLO layout", view.manifest.get("yolo_task", "detect")],
        ["guidelines sha256", view.manifest.get("guidelines_sha256") or "not recorded"],
    ])
    lines += ["## Release note", "", "```", note.strip(), "```", ""]
    who: dict[tuple, Counter] = defaultdict(Counter)
    images_by: dict[tuple, set] = defaultdict(set)
    for r in rows:
        key = ("reviewer", r.get("annotator"), r.get("review_source")) if r.get("origin") == "human" \
            else ("model", r.get("model_id"), (r.get("checkpoint_sha256") or "")[:12])
        who[key]["labels"] += 1
        images_by[key].add(r.get("image_id"))
    lines += ["## Who made the labels", ""]
    lines += _table(["origin", "reviewer / model", "review source / checkpoint sha256", "labels", "images"],
                    [[k[0], k[1], k[2], c["labels"], len(images_by[k])] for k, c in sorted(who.items(), key=str)])
    fine_tuned = sorted({trained_on[s] for r in rows if r.get("origin") != "human"
                         and (s := r.get("checkpoint_sha256") or "") in trained_on})
    if fine_tuned:
        lines += ["Fine-tuned models: " + "; ".join(fine_tuned) + ".", ""]
    routes = Counter(i.get("route") for i in view.images)
    lines += ["## Routing and QA sample", ""]
    lines += _table(["route", "images"], [[k, v] for k, v in sorted(routes.items(), key=str)])
    thr = sorted({(r["category"], r.get("threshold_low"), r.get("threshold_high"), r.get("policy_id")) for r in rows},
                 key=str)
    lines += _table(["class", "low", "high", "routing policy"], [list(t) for t in thr])
    qa = sorted(i.get("file_name") or "" for i in view.images if i.get("qa_sample"))
    lines += [f"QA sample (auto-accepted images also reviewed): {', '.join(qa) if qa else 'none'}", ""]
    bal = view.manifest.get("split_balance")
    if bal:
        lines += ["## Split balance (objects per split; drift = share - target)", ""]
        body = []
        for name, e in [("images", bal["images"])] + sorted(bal["classes"].items()):
            body.append([name, e["total"]] + [e["per_split"].get(s, 0) for s in SPLITS]
                        + ["/".join(f"{e['drift'][s]:+.2f}" if e["drift"][s] is not None else "-" for s in SPLITS)])
        lines += _table(["", "total", *SPLITS, "drift train/val/test"], body)
    lines += ["## Changes since the previous release", ""]
    lines += ([f"    {x}" for x in summary_lines(previous)] if previous else ["First release."]) + [""]
    ordered = sorted(rows, key=lambda r: (r.get("file_name") or "", r["label_id"]))
    lines += ["## Labels", ""]
    if len(ordered) > MAX_LABEL_ROWS:
        lines += [f"The first {MAX_LABEL_ROWS} of {len(ordered)} labels, by file; every label is in "
                  "lineage.parquet beside this file and answers `labelloop lineage ID --release TAG`.", ""]
    body = []
    for r in ordered[:MAX_LABEL_ROWS]:
        by = (f"{r.get('annotator')} ({r.get('review_source')} task {r.get('review_task_id')}, "
              f"guidelines {short(r.get('guidelines_sha256'))}, import run {(r.get('import_run_id') or '-')[:8]})") \
            if r.get("origin") == "human" else f"{r.get('model_id')} run {(r.get('label_run_id') or '')[:8]}" + \
            (f" ({trained_on[ck]})" if (ck := r.get("checkpoint_sha256") or "") in trained_on else "")
        when = r.get("reviewed_at") if r.get("origin") == "human" else \
            (f"score {r['score']:.2f}" if r.get("score") is not None else "")
        body.append([r["label_id"], r.get("coco_annotation_id"), r.get("file_name"), r.get("category"), r.get("origin"),
                     by, r.get("action"), when, r.get("route"), "yes" if r.get("qa_sample") else ""])
    lines += _table(["label_id", "COCO id", "file", "class", "origin", "by", "action", "time / score", "route",
                     "QA sample"], body)
    return "\n".join(lines)


def markdown_to_html(md: str, title: str) -> str:
    """A standalone HTML page of ``md`` (markdown-it-py, tables on, raw HTML off)."""

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(md)
    style = ("body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #bbb;padding:.2em .5em;font-size:90%}pre{background:#f4f4f4;padding:.5em}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")

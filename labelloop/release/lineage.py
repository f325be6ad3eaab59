"""Per-label provenance: what an auditor asks of every label of a release (design invariant 5).

Each row (:data:`labelloop.tables.schemas.RELEASE_LINEAGE`) answers: which image bytes (image_id =
sha256 of the file, its source uri and path, the EXIF orientation applied to the released copy),
which model and checkpoint with which prompt and score and in which Dagster run (model labels),
which reviewer, review tool task, action and time, the labeling guidelines the reviewer worked
under (``guidelines_sha256``) and the Dagster run of the review import that
stored it (human labels), which routing decision, reason
and thresholds (policy id and the low / high scores of the label's class), whether the image was
in the QA sample, and where the label sits in the release (split, file, COCO ids).

``release/lineage.parquet`` holds these rows inside the release, so it is versioned with it and
byte-deterministic. The ``lineage`` asset (:func:`materialize`) adds what only exists once the
release is committed: the tag, its git sha, the Dagster run that cut it and the content hash,
and writes ``tables/lineage/<tag>/lineage.parquet`` with a Markdown and an HTML audit summary
for people who do not read Parquet.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from labelloop import tables
from labelloop.release.diff import diff_releases, view_of_folder, view_of_rev
from labelloop.release.summary import audit_markdown, markdown_to_html
from labelloop.store import is_remote
from labelloop.tables.schemas import LINEAGE, LabelRow, LineageRow, ReleaseLineageRow
from labelloop.workspace import versioning as V

#: Lineage columns that must be filled, per label origin.
REQUIRED = {
    "all": ("image_id", "source_uri", "policy_id", "route", "release_tag", "git_sha"),
    "model": ("model_id", "checkpoint_sha256", "prediction_id", "prompt", "threshold_low", "threshold_high",
              "label_run_id"),
    "human": ("annotator", "review_id", "review_task_id", "reviewed_at", "action", "import_run_id"),
}


def release_lineage_rows(labels: Sequence[LabelRow], images: Mapping[str, Mapping[str, Any]], ann_ids: dict[str, int],
                         inputs) -> list[ReleaseLineageRow]:
    """RELEASE_LINEAGE rows of ``labels`` (LABELS rows), in the given order.

    ``images``: image_id -> RELEASE_IMAGES-shaped row (``file_name``, ``split``,
    ``coco_image_id`` may be None for labels not in a release); ``ann_ids``: label_id -> COCO
    annotation id; ``inputs``: :class:`labelloop.release.build.ReleaseInputs` (reviews, human labels,
    predictions, thresholds, policy_id).
    """
    out: list[ReleaseLineageRow] = []
    for lab in labels:
        img = images.get(lab["image_id"], {})
        pred = inputs.predictions.get(lab.get("prediction_id") or "", {})
        review = inputs.reviews.get(lab.get("review_id") or "", {})
        human = inputs.human_labels.get((lab.get("annotation_id"), lab.get("review_id")), {})
        low, high = inputs.thresholds.get(lab["category"], (None, None)) \
            if lab.get("policy_id") and lab.get("policy_id") == inputs.policy_id else (None, None)
        model = lab.get("origin") == "model"
        orientation = img.get("exif_orientation")
        out.append({
            "label_id": lab["label_id"], "coco_annotation_id": ann_ids.get(lab["label_id"]),
            "image_id": lab["image_id"], "coco_image_id": img.get("coco_image_id"), "file_name": img.get("file_name"),
            "split": img.get("split"), "category": lab["category"], "origin": lab.get("origin"),
            "action": lab.get("action"), "source_uri": img.get("uri"), "source_path": img.get("source_path"),
            "origin_path": img.get("origin_path"), "batch": img.get("batch"), "exif_orientation": orientation,
            "exif_transposed": orientation is not None and orientation not in (0, 1),
            "model_id": lab.get("model_id"), "checkpoint_sha256": lab.get("checkpoint_sha256"),
            "prediction_id": lab.get("prediction_id"), "prompt": pred.get("prompt") if model else None,
            "score": lab.get("score"), "label_run_id": pred.get("run_id") if model else None,
            "threshold_low": low, "threshold_high": high, "policy_id": lab.get("policy_id"),
            "review_id": lab.get("review_id"), "review_source": review.get("source"),
            "review_task_id": review.get("task_id"), "tool_annotation_id": review.get("tool_annotation_id"),
            "annotator": lab.get("annotator"), "reviewed_at": lab.get("reviewed_at"),
            "import_sha256": human.get("import_sha256"), "import_run_id": human.get("import_run_id"),
            "route": lab.get("route"), "route_reason": lab.get("route_reason"),
            "qa_sample": lab.get("route") == "qa_sample", "iscrowd": bool(lab.get("iscrowd")),
            "guidelines_sha256": human.get("guidelines_sha256") if not model else None,
        })
    return out


def trace_problems(rows: Sequence[ReleaseLineageRow]) -> list[str]:
    """Labels that cannot answer the lineage questions: ``"<label_id>: lacks a, b"`` for each row
    missing a field of :data:`REQUIRED` (``all`` plus ``model`` or ``human`` by origin)."""
    out = []
    for r in rows:
        need = REQUIRED["all"] + REQUIRED.get(r.get("origin") or "", ("origin",))
        missing = [k for k in need if r.get(k) in (None, "")]
        if missing:
            out.append(f"{r.get('label_id')}: lacks {', '.join(missing)}")
    return out


def lineage_dir(root: Path, tag: str, tables_dir=None) -> Path:
    """``tables/lineage/<tag>/`` of the workspace at ``root`` (``tables_dir``: the workspace's
    tables folder or S3 prefix, :attr:`labelloop.workspace.layout.Workspace.tables`; default
    ``root/tables``)."""
    return (Path(root) / "tables" if tables_dir is None else tables_dir) / "lineage" / tag


def _atomic_text(path: Path, text: str) -> None:
    if is_remote(path):  # one PUT: atomic on an object store
        path.write_text(text, encoding="utf-8")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def release_view(root: Path, tag: str, release_dir: Path | None = None):
    """The :class:`labelloop.release.diff.ReleaseView` of ``tag``: read from ``release_dir`` when it holds
    that very content (no DVC call), else through ``dvc.api`` at the tag."""

    info = next((t for t in V.release_tags(root) if t["tag"] == tag), None)
    if info is None:
        known = ", ".join(t["tag"] for t in V.release_tags(root)) or "none"
        raise KeyError(f"unknown release tag {tag!r} (releases: {known})")
    if release_dir is not None and (release_dir / "manifest.json").is_file():
        try:
            here = json.loads((release_dir / "manifest.json").read_text(encoding="utf-8")).get("content_sha256")
        except ValueError:
            here = None
        if here and here == info["content_sha256"]:
            return view_of_folder(release_dir, tag), info
    return view_of_rev(root, tag), info


def materialize(root: Path, tag: str, release_dir: Path | None = None, tables_dir=None,
                trained_on: Mapping[str, str] | None = None) -> dict:
    """Write the lineage of release ``tag``: ``tables/lineage/<tag>/lineage.parquet`` (LINEAGE),
    ``summary.md`` and ``summary.html`` (under ``tables_dir``, see :func:`lineage_dir`);
    ``trained_on`` (:func:`labelloop.models.registry.trained_on_lines`) names the release that
    trained each fine-tuned model whose labels the summary lists.

    Returns ``{"tag", "git_sha", "run_id", "rows", "untraced": [...], "by_origin", "paths"}``
    (``untraced``: :func:`trace_problems`).

    Raises:
        KeyError: an unknown tag. labelloop.workspace.versioning.VersioningError: its data is unreachable.
    """

    view, info = release_view(root, tag, release_dir)
    extra = {"release_tag": tag, "git_sha": info["git_sha"], "release_run_id": info.get("run_id"),
             "content_sha256": info["content_sha256"]}
    # a release made before lineage.parquet: the label's own four columns (the writer fills null)
    rows = [cast(LineageRow, {
        **view.lineage.get(lab["label_id"], {"label_id": lab["label_id"], "image_id": lab["image_id"],
                                             "category": lab["category"], "origin": lab.get("origin")}),
        **extra}) for lab in view.labels]
    out = lineage_dir(root, tag, tables_dir)
    tables.write_rows(rows, LINEAGE, out / "lineage.parquet")
    previous = _previous(root, tag)
    md = audit_markdown(view, info, V.tag_message(root, tag), rows, previous, trained_on)
    _atomic_text(out / "summary.md", md)
    _atomic_text(out / "summary.html", markdown_to_html(md, title=f"labelloop release {tag}"))
    return {"tag": tag, "git_sha": info["git_sha"], "run_id": info.get("run_id"), "rows": len(rows),
            "untraced": trace_problems(rows), "by_origin": dict(Counter(r.get("origin") for r in rows)),
            "paths": {k: str(out / f) for k, f in (("parquet", "lineage.parquet"), ("markdown", "summary.md"),
                                                    ("html", "summary.html"))}}


def _previous(root: Path, tag: str):
    """The diff from the release before ``tag`` (None for the first release)."""

    tags = [t["tag"] for t in V.release_tags(root)]
    i = tags.index(tag)
    if i == 0:
        return None
    return diff_releases(view_of_rev(root, tags[i - 1]), view_of_rev(root, tag))


def find_in_release(view, ident: str) -> tuple[dict, list[dict]]:
    """The image of a release matching ``ident`` and its lineage rows.

    ``ident``: a label_id, an image_id (or a unique prefix of >= 8 hex), a source path or file
    name, or a released file name (``images/train/ab12.jpg`` or ``ab12.jpg``).

    Raises:
        KeyError: nothing matches, or several images do (the message lists them).
    """
    images = {i["image_id"]: i for i in view.images}
    labels = {lab["label_id"]: lab for lab in view.labels}
    if ident in labels:
        hits = {labels[ident]["image_id"]}
    else:
        low = ident.lower()
        hits = {i for i in images if len(ident) >= 8 and i.startswith(low)}
        for i, r in images.items():
            names = {r.get("source_path"), r.get("file_name")}
            names |= {Path(n).name for n in list(names) if n}
            if ident in names:
                hits.add(i)
    if not hits:
        raise KeyError(f"no image, label or file of release {view.name} matches {ident!r}")
    if len(hits) > 1:
        raise KeyError(f"{ident!r} matches {len(hits)} images of {view.name}: "
                       f"{', '.join(sorted(h[:12] for h in hits))}; use an image_id")
    iid = hits.pop()
    rows = []
    for lab in sorted((lab for lab in view.labels if lab["image_id"] == iid), key=lambda d: d["label_id"]):
        base = {k: v for k, v in lab.items() if k not in ("mask", "bbox")}  # releases without lineage.parquet
        rows.append({**base, **view.lineage.get(lab["label_id"], {}), "bbox_xyxy": list(lab["bbox"])})
    return images[iid], rows


def lineage_at_release(root: Path, ident: str, tag: str, release_dir: Path | None = None) -> dict:
    """``labelloop lineage ID --release TAG``: ``{"release": {...}, "image": {...}, "labels": [...]}``;
    ``release`` holds ``tag``, ``git_sha``, ``run_id``, ``content_sha256`` and ``guidelines_sha256``
    (the guidelines the release was cut under, None for a release made before it was recorded).

    Raises:
        KeyError: unknown tag or nothing / several images matching ``ident``.
    """
    view, info = release_view(root, tag, release_dir)
    image, rows = find_in_release(view, ident)
    release = {"tag": tag, "git_sha": info["git_sha"], "run_id": info.get("run_id"),
               "content_sha256": info["content_sha256"], "guidelines_sha256": view.manifest.get("guidelines_sha256")}
    return {"release": release, "image": image,
            "labels": [{**r, "release_tag": tag, "git_sha": info["git_sha"], "release_run_id": info.get("run_id")}
                       for r in rows]}

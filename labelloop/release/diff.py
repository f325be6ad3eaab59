"""What changed between two releases, and who caused each change.

A release is read as a :class:`ReleaseView` (its ``labels.parquet``, ``images.parquet``,
``lineage.parquet`` and ``manifest.json``), from a folder or from a git revision through
``dvc.api`` (no checkout). :func:`diff_releases` pairs the labels of two releases:

1. the same ``label_id`` in both;
2. else the same identity (:func:`labelloop.release.ids.identity`: a reviewer's accepted or
   corrected box continues the model label it came from);
3. whatever is left is *added* (only in the newer) or *removed* (only in the older).

A pair whose class differs is *relabeled*; one whose box (xyxy, 0.01 px), mask or keypoints
differ is *moved*; otherwise it is unchanged (``confirmed`` when a reviewer now vouches for a
model label). Each change names its cause: the reviewer (annotator, review source, task id,
time) or the model (model_id and the Dagster run of its prelabels step) behind the newer label,
or, for a removal, whatever resolved the image in the newer release (or that the image left it).
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

import pyarrow.parquet as pq

from labelloop.release import layout
from labelloop.release.ids import identity
from labelloop.tables.schemas import LABELS, RELEASE_IMAGES, RELEASE_LINEAGE, LabelRow, ReleaseLineageRow
from labelloop.workspace.versioning import read_release_file

BOX_TOL = 0.01  # px


@dataclass
class ReleaseView:
    """The tables of one release. ``name``: its tag (or a folder name)."""

    name: str
    labels: list[LabelRow]
    images: list[dict]
    lineage: dict[str, ReleaseLineageRow] = field(default_factory=dict)  # label_id -> RELEASE_LINEAGE row
    manifest: dict = field(default_factory=dict)


def _rows(data: bytes | None, schema) -> list[dict]:
    if data is None:
        return []
    t = pq.read_table(io.BytesIO(data))
    cols = {n: (t.column(n).to_pylist() if n in t.column_names else [None] * len(t)) for n in schema.names}
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())] if len(t) else []


def _images_from_coco(read) -> list[dict]:
    """Images of a release made before release/images.parquet existed (its COCO files)."""
    out = []
    for split in layout.SPLITS:
        found = layout.coco_instances(read, split)
        if found is None:
            continue
        for im in json.loads(found[1])["images"]:
            out.append({"image_id": im.get("sha256"), "coco_image_id": im["id"],
                        "file_name": layout.image_file(split, im["file_name"]),
                        "split": split, "width": im["width"], "height": im["height"],
                        "source_path": im.get("source_path")})
    return out


def view_from(read, name: str) -> ReleaseView:
    """A :class:`ReleaseView` from ``read(relpath) -> bytes | None`` (a path inside release/)."""
    labels = cast(list[LabelRow], _rows(read("labels.parquet"), LABELS))
    images = _rows(read("images.parquet"), RELEASE_IMAGES) or _images_from_coco(read)
    lineage = {r["label_id"]: r for r in cast(list[ReleaseLineageRow], _rows(read("lineage.parquet"), RELEASE_LINEAGE))}
    manifest = read("manifest.json")
    return ReleaseView(name, labels, images, lineage, json.loads(manifest) if manifest else {})


def view_of_folder(folder: str | Path, name: str | None = None) -> ReleaseView:
    """The release written in ``folder`` (e.g. ``release/`` or a staging folder)."""
    folder = Path(folder)

    def read(rel: str) -> bytes | None:
        p = folder / rel
        return p.read_bytes() if p.is_file() else None

    return view_from(read, name or folder.name)


def view_of_rev(root: str | Path, rev: str) -> ReleaseView:
    """The release at git revision ``rev`` (a tag) of the workspace ``root``, read with
    ``dvc.api`` from the cache or the default remote, without checking anything out.

    Raises:
        labelloop.workspace.versioning.VersioningError: ``rev`` has no release or its data is unreachable.
    """

    return view_from(lambda rel: read_release_file(root, rel, rev, missing_ok=True), rev)


# ---- pairing ------------------------------------------------------------------------------
def _moved(a: LabelRow, b: LabelRow) -> bool:
    if any(abs(float(x) - float(y)) > BOX_TOL for x, y in zip(a["bbox"], b["bbox"])):
        return True
    return (a.get("mask") or None) != (b.get("mask") or None) or (a.get("keypoints") or None) != (b.get("keypoints") or None)


def cause_of_label(label: LabelRow, lineage: ReleaseLineageRow | None) -> dict:
    """Who made ``label`` (a LABELS row; ``lineage``: its RELEASE_LINEAGE row when known);
    ``run_id``: the Dagster run of its pre-labels (model) or of the review import that stored it
    (reviewer), None when unknown."""
    lin: Mapping[str, Any] = lineage or {}
    if label.get("origin") == "human":
        return {"kind": "reviewer", "annotator": label.get("annotator"), "review_id": label.get("review_id"),
                "source": lin.get("review_source"), "task_id": lin.get("review_task_id"),
                "at": label.get("reviewed_at"), "run_id": lin.get("import_run_id")}
    return {"kind": "model", "model_id": label.get("model_id"), "run_id": lin.get("label_run_id"),
            "checkpoint_sha256": label.get("checkpoint_sha256")}


def cause_of_image(image: dict | None, labels: Sequence[LabelRow], lineage: Mapping[str, Mapping[str, Any]]) -> dict:
    """What resolved ``image`` (a RELEASE_IMAGES row) in its release; ``labels``: its labels."""
    if image is None:
        return {"kind": "image_removed"}
    if image.get("resolution") == "reviewed":
        runs = sorted({lineage.get(lab["label_id"], {}).get("import_run_id") or "" for lab in labels} - {""})
        return {"kind": "reviewer", "annotator": image.get("annotator"), "review_id": image.get("review_id"),
                "source": image.get("review_source"), "task_id": image.get("review_task_id"),
                "at": image.get("reviewed_at"), "run_id": runs[0] if runs else None}
    runs = sorted({lineage.get(lab["label_id"], {}).get("label_run_id") or "" for lab in labels} - {""})
    return {"kind": "model", "model_id": image.get("model_id"), "run_id": runs[0] if runs else None}


def format_cause(c: dict) -> str:
    """``reviewer ls-user-3 (label-studio/project-7 task 12, 2026-11-20T10:00:01Z)`` or
    ``model <model_id> (run 4997e619)`` or ``image left the release``."""
    if c["kind"] == "reviewer":
        where = ", ".join(str(x) for x in (c.get("source"), f"task {c['task_id']}" if c.get("task_id") else None,
                                           c.get("at")) if x)
        return f"reviewer {c.get('annotator') or '?'}" + (f" ({where})" if where else "")
    if c["kind"] == "model":
        return f"model {c.get('model_id') or '?'}" + (f" (run {c['run_id'][:8]})" if c.get("run_id") else "")
    return "image left the release"


def _who(c: dict) -> str:
    if c["kind"] == "reviewer":
        return f"reviewer {c.get('annotator') or '?'}"
    if c["kind"] == "model":
        return f"model {c.get('model_id') or '?'}" + (f" run {c['run_id'][:8]}" if c.get("run_id") else "")
    return "image left the release"


def diff_releases(a: ReleaseView, b: ReleaseView) -> dict:
    """Changes from release ``a`` (older) to ``b`` (newer).

    The value returned:

        ``{"from", "to", "images": {"added": [...], "removed": [...]}, "labels": {"added",
        "removed", "moved", "relabeled", "confirmed": [...]}, "unchanged": int, "per_class":
        {category: {"added", "removed", "moved", "relabeled", "confirmed"}}, "by_cause":
        {who: {"images": n, "labels": n}}, "guidelines": {"from", "to", "changed"}}``. ``guidelines``:
        the sha256 of the labeling guidelines each release was cut under (its manifest's
        ``guidelines_sha256``: 64 hex digits, ``"none"`` without guidelines.md, None for a release made
        before it was recorded); ``changed`` is True only when both are recorded and differ. Image entries are ``{"image_id", "file_name",
        "cause"}``; label entries ``{"label_id", "image_id", "category", "bbox", "cause", ...}``
        (moved/relabeled/confirmed add ``"from_label_id"``, ``"from_bbox"``, ``"from_category"``).
    """
    a_img = {i["image_id"]: i for i in a.images}
    b_img = {i["image_id"]: i for i in b.images}
    b_by_image: dict[str, list[LabelRow]] = defaultdict(list)
    for lab in b.labels:
        b_by_image[lab["image_id"]].append(lab)
    out: dict[str, Any] = {"from": a.name, "to": b.name, "images": {"added": [], "removed": []},
                           "labels": {k: [] for k in ("added", "removed", "moved", "relabeled", "confirmed")},
                           "unchanged": 0}
    for iid in sorted(set(b_img) - set(a_img)):
        out["images"]["added"].append({"image_id": iid, "file_name": b_img[iid].get("file_name"),
                                       "cause": cause_of_image(b_img[iid], b_by_image[iid], b.lineage)})
    for iid in sorted(set(a_img) - set(b_img)):
        out["images"]["removed"].append({"image_id": iid, "file_name": a_img[iid].get("file_name"),
                                         "cause": {"kind": "image_removed"}})
    a_left = {lab["label_id"]: lab for lab in a.labels}
    pairs = []
    unmatched_b = []
    for lab in sorted(b.labels, key=lambda d: d["label_id"]):
        if lab["label_id"] in a_left:
            pairs.append((a_left.pop(lab["label_id"]), lab))
        else:
            unmatched_b.append(lab)
    by_identity = {identity(lab): lab for lab in a_left.values()}
    added = []
    for lab in unmatched_b:
        old = by_identity.pop(identity(lab), None)
        if old is not None and old["image_id"] == lab["image_id"]:
            a_left.pop(old["label_id"], None)
            pairs.append((old, lab))
        else:
            added.append(lab)

    def entry(lab: LabelRow, cause: dict, old: LabelRow | None = None) -> dict:
        e = {"label_id": lab["label_id"], "image_id": lab["image_id"], "category": lab["category"],
             "bbox": list(lab["bbox"]), "origin": lab.get("origin"), "cause": cause}
        if old is not None:
            e.update(from_label_id=old["label_id"], from_bbox=list(old["bbox"]), from_category=old["category"])
        return e

    for old, new in pairs:
        kind = "relabeled" if old["category"] != new["category"] else "moved" if _moved(old, new) else None
        if kind is None and old.get("origin") == "model" and new.get("origin") == "human":
            kind = "confirmed"
        if kind is None:
            out["unchanged"] += 1
            continue
        out["labels"][kind].append(entry(new, cause_of_label(new, b.lineage.get(new["label_id"])), old))
    for lab in added:
        out["labels"]["added"].append(entry(lab, cause_of_label(lab, b.lineage.get(lab["label_id"]))))
    for lab in sorted(a_left.values(), key=lambda d: d["label_id"]):
        iid = lab["image_id"]
        out["labels"]["removed"].append(entry(lab, cause_of_image(b_img.get(iid), b_by_image[iid], b.lineage)))
    per_class: dict[str, Counter] = defaultdict(Counter)
    by_cause: dict[str, Counter] = defaultdict(Counter)
    for kind, items in out["labels"].items():
        for e in items:
            per_class[e["category"]][kind] += 1
            by_cause[_who(e["cause"])]["labels"] += 1
    for e in out["images"]["added"] + out["images"]["removed"]:
        by_cause[_who(e["cause"])]["images"] += 1
    kinds = ("added", "removed", "moved", "relabeled", "confirmed")
    out["per_class"] = {c: {k: per_class[c][k] for k in kinds} for c in sorted(per_class)}
    out["by_cause"] = {w: {"images": c["images"], "labels": c["labels"]} for w, c in sorted(by_cause.items())}
    old_g, new_g = a.manifest.get("guidelines_sha256"), b.manifest.get("guidelines_sha256")
    out["guidelines"] = {"from": old_g, "to": new_g, "changed": bool(old_g and new_g and old_g != new_g)}
    return out


def guidelines_line(d: dict) -> str | None:
    """The diff's guidelines line: ``guidelines changed: <old sha256> -> <new sha256>``,
    ``guidelines unchanged: <sha256>``, or that a release did not record them; None for a diff made
    without the ``guidelines`` entry."""
    g = d.get("guidelines")
    if g is None:
        return None
    if g["changed"]:
        return f"guidelines changed: {g['from']} -> {g['to']}"
    if g["from"] and g["from"] == g["to"]:
        return f"guidelines unchanged: {g['to']}"
    return (f"guidelines: {d['from']} {g['from'] or 'not recorded'}, "
            f"{d['to']} {g['to'] or 'not recorded'}")


def summary_lines(d: dict) -> list[str]:
    """The release-note form of a diff: totals, per class, and who caused the changes."""
    lab = d["labels"]
    lines = [f"changes since {d['from']}: images +{len(d['images']['added'])} -{len(d['images']['removed'])}; "
             f"labels +{len(lab['added'])} -{len(lab['removed'])}, {len(lab['moved'])} moved, "
             f"{len(lab['relabeled'])} relabeled, {len(lab['confirmed'])} confirmed, {d['unchanged']} unchanged"]
    for c, k in d["per_class"].items():
        parts = [f"+{k['added']}", f"-{k['removed']}"] + [f"{k[x]} {x}" for x in ("moved", "relabeled", "confirmed") if k[x]]
        lines.append(f"  {c}: " + ", ".join(parts))
    for who, n in d["by_cause"].items():
        lines.append(f"  by {who}: {n['images']} images, {n['labels']} labels")
    g = guidelines_line(d)
    return lines + ([g] if g else [])


def format_diff(d: dict) -> str:
    """Full text of ``labelloop diff``: the summary, then one line per change with its cause
    (boxes as ``[x0, y0, x1, y1]`` pixels, 1 decimal; the first change line says so)."""
    lines = summary_lines(d)
    if any(d["labels"][k] for k in ("added", "removed", "moved", "relabeled", "confirmed")):
        lines.append("boxes: [x0, y0, x1, y1] in pixels of the released image (xyxy)")

    def box(b):
        return "[" + ", ".join(f"{v:.1f}" for v in b) + "]"

    for e in d["images"]["added"]:
        lines.append(f"image added   {e['image_id'][:12]} {e['file_name']}  by {format_cause(e['cause'])}")
    for e in d["images"]["removed"]:
        lines.append(f"image removed {e['image_id'][:12]} {e['file_name']}")
    for kind in ("added", "removed", "moved", "relabeled", "confirmed"):
        for e in d["labels"][kind]:
            extra = ""
            if kind == "moved":
                extra = f" from {box(e['from_bbox'])}"
            elif kind == "relabeled":
                extra = f" from {e['from_category']}"
            lines.append(f"label {kind:<9} {e['label_id']} {e['category']} {box(e['bbox'])}{extra} on "
                         f"{e['image_id'][:12]}  by {format_cause(e['cause'])}")
    return "\n".join(lines)

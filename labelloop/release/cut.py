"""Cutting a release from a workspace: the QA gates first (:func:`cut_release`, the
``dataset_release`` asset), then plan (splits, ids), build, validate, compare, commit + tag with
the release note, registries, push (:func:`cut_checked`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from typing import cast

from labelloop import tables
from labelloop.qa.gates import failed_gates
from labelloop.release.build import ReleaseInputs, build_release, plan_release, swap_in
from labelloop.release.check import validate_release
from labelloop.release.diff import diff_releases, summary_lines, view_of_folder, view_of_rev
from labelloop.release.ids import CocoIds, identity
from labelloop.release.splits import format_balance, save_assignments
from labelloop.review.resolve import resolve_tags
from labelloop.review.store import review_store
from labelloop.store import failure_point
from labelloop.tables.schemas import (
    RELEASE_IMAGES,
    RELEASE_LINEAGE,
    LabelRow,
    ReleaseImageRow,
    ReleaseLineageRow,
    ResolvedImageRow,
    SplitAssignmentRow,
)
from labelloop.workspace import recovery, repo
from labelloop.workspace import remotes as R
from labelloop.workspace import versioning as V
from labelloop.workspace.guidelines import NO_GUIDELINES, guidelines_sha256
from labelloop.workspace.layout import Workspace


class ReleaseBlocked(RuntimeError):
    """A blocking QA gate failed, or the QA report does not describe the current labels."""


def cut_release(ws: Workspace, push: bool = True, resplit: bool = False, run_id: str | None = None,
                settings: R.RemoteSettings | None = None) -> dict:
    """The ``dataset_release`` asset: cut a release from the current labels if QA allows it (the files, checks, commit, tag and
    push: :func:`cut_checked`).

    ``resplit``: assign every near-duplicate group's split anew; ``run_id``: the Dagster run,
    written in the tag; ``settings``: :class:`labelloop.workspace.remotes.RemoteSettings` to apply first.

    Returns ``{"status": "released", "tag", "git_sha", "dvc_md5", "counts", "diff", ...}`` or
    ``{"status": "unchanged", "tag": <latest>}`` when the files would equal the last release's.

    Raises:
        ReleaseBlocked: no QA report for these labels, or a blocking gate failed (message names
            the gate, its measured value and threshold).
        labelloop.release.check.ReleaseInvalid: a written file failed validation.
    """
    report = repo.read_qa(ws)
    current = repo.labels_sha256(ws)
    if report is None or report.get("labels_sha256") != current:
        raise ReleaseBlocked("the QA report does not describe the current labels: materialize qa_report first")
    if failed_gates(report):
        raise ReleaseBlocked("; ".join(
            f"QA gate {g['name']} failed: {g['reason']} (value {g['value']}, threshold {g['threshold']}"
            + (f"; images {', '.join(str(i)[:12] for i in g['images'][:10])}" if g.get("images") else "") + ")"
            for g in failed_gates(report)))
    labels, resolved = repo.read_labels(ws)
    if not resolved:
        raise ReleaseBlocked("nothing to release: no image is resolved yet (auto-accepted or reviewed)")
    return cut_checked(ws, report, labels, resolved, push=push, resplit=resplit, run_id=run_id, settings=settings)


def gather_inputs(ws: Workspace, labels: list[LabelRow], resolved: list[ResolvedImageRow],
                  model_id: str | None = None) -> ReleaseInputs:
    """The :class:`~labelloop.release.build.ReleaseInputs` of the workspace's current labels.
    ``model_id``: the model whose tag pre-labels the auto-accepted images carry
    (:func:`labelloop.review.resolve.resolve_tags`; None: only the reviewers' tags)."""
    cfg = ws.config()
    store = review_store(ws)
    tags: dict[str, list[str]] = {}
    if cfg.tag_categories:
        model_preds = (repo.current_predictions(ws, model_id)
                       if model_id and cfg.prelabeler.backend != "opencv" else [])
        tags = resolve_tags(resolved, store.current_tags(), model_preds, cfg)
    return ReleaseInputs(
        images=repo.all_images(ws), resolved=resolved, labels=labels, categories=cfg.category_names,
        ratios=cfg.release.ratios(), yolo_task=cfg.release.yolo_task, shard_mb=cfg.release.shard_mb,
        mask_categories=[c.name for c in cfg.categories if c.masks],
        tag_categories=cfg.tag_categories, tags=tags,
        keypoints={c.name: {"keypoints": list(c.keypoints), "skeleton": [list(p) for p in c.skeleton or []]}
                   for c in cfg.categories if c.keypoints},
        reviews={r["review_id"]: r for r in store.reviews()},
        human_labels={(h["annotation_id"], h["review_id"]): h for h in store.human_labels()},
        predictions=repo.prediction_index(ws, {pid for lab in labels if (pid := lab.get("prediction_id"))}),
        queue={q["image_id"]: q for q in repo.all_queue(ws)},
        thresholds={c: (cfg.thresholds(c).low, cfg.thresholds(c).high) for c in cfg.category_names},
        policy_id=cfg.policy_id(),
        guidelines_sha256=guidelines_sha256(ws.root),  # "none" (with a warning) when guidelines.md is missing
    )


def seed_registries(ws: Workspace) -> None:
    """Rebuild missing split / COCO id registries from the release in ``release/`` (a workspace
    whose ``tables/release`` was lost, or older than the registries), so ids and splits stay."""
    splits_path, ids_path = repo.registry_paths(ws)
    rel = ws.release_dir
    if not (rel / "images.parquet").is_file():
        return
    images = cast(list[ReleaseImageRow], tables.read_rows(rel / "images.parquet", RELEASE_IMAGES))
    if not splits_path.is_file():
        rows: dict[str, SplitAssignmentRow] = {}
        for i, r in enumerate(sorted(images, key=lambda r: r["group_id"] or r["image_id"]), start=1):
            g = r["group_id"] or r["image_id"]
            rows.setdefault(g, {"group_id": g, "split": r["split"], "seq": i, "reason": "seeded from release"})
        save_assignments(splits_path, rows)
    ids = CocoIds(ids_path)
    if ids.is_empty() and (rel / "lineage.parquet").is_file():
        for r in images:
            if r["coco_image_id"] is not None:
                ids.seed("image", r["image_id"], r["coco_image_id"])
        for lin in cast(list[ReleaseLineageRow], tables.read_rows(rel / "lineage.parquet", RELEASE_LINEAGE)):
            if lin["coco_annotation_id"] is not None:
                ids.seed("annotation", identity(lin), lin["coco_annotation_id"])
        ids.save()


def release_note(tag: str, manifest: dict, report: dict, warn: list[dict], tags: list[dict],
                 diff: dict | None, run_id: str | None) -> str:
    """The tag message: counts, classes, splits, policy and model, QA gates, the labeling
    guidelines' sha256 (``guidelines: sha256 <hex>``, ``none`` without guidelines.md), warnings, the
    previous tag, then the split balance with drift and
    what changed since the previous release with who caused it."""
    c = manifest["counts"]
    lines = [f"{tag}: {c['images']} images ({c['negatives']} negatives), {c['labels']} labels",
             "per class: " + ", ".join(f"{k} {v}" for k, v in c["per_class"].items()),
             "splits: " + ", ".join(f"{k} {v}" for k, v in c["per_split"].items()),
             f"policy: {report.get('policy_id')}; model: {report.get('model_id')}",
             "QA: " + "; ".join(f"{g['name']} {g['status']}" for g in report["gates"]),
             f"guidelines: sha256 {manifest.get('guidelines_sha256') or NO_GUIDELINES}"]
    lines += [f"warning: {g['name']}: {g['reason']}" for g in warn]
    lines += [f"warning: {w}" for w in manifest.get("warnings", [])]
    if tags:
        lines.append(f"previous: {tags[-1]['tag']}")
    bal = manifest.get("split_balance")
    if bal:
        lines.append("split balance (count: per split (share); drift = share - target, train/val/test):")
        lines += [f"  {x}" for x in format_balance(bal)]
    lines += summary_lines(diff) if diff else ["changes: first release"]
    if run_id:
        lines.append(f"cut by Dagster run {run_id}")
    return "\n".join(lines)


def cut_checked(ws: Workspace, report: dict, labels: list[LabelRow], resolved: list[ResolvedImageRow],
                push: bool = True, resplit: bool = False, run_id: str | None = None,
                settings: R.RemoteSettings | None = None) -> dict:
    """Cut a release from ``labels`` / ``resolved`` (the current LABELS and RESOLVED_IMAGES rows)
    once :func:`cut_release` has checked that ``report`` (the QA report of these
    labels) has no failed blocking gate.

    Returns ``{"status": "released", "tag", "git_sha", "dvc_md5", "counts", "content_sha256",
    "warnings", "diff", "split_balance", "pushed", "push_error"}`` (a failed push is reported in
    ``push_error``, not raised: the release is committed and tagged locally), or ``{"status": "unchanged", "tag",
    "counts", "restored"}`` when the files would equal the last release's (``release/`` is
    restored to it if it was rolled back).

    A release is tagged and complete, or not there at all: ``release/``, the id and split
    registries, the release index and the archived QA report are written before the tag, and a
    release that fails (or a process that dies) before its tag is undone, at once or by the next
    release (:mod:`labelloop.workspace.recovery`).

    Raises:
        labelloop.release.check.ReleaseInvalid: a written file failed validation (the current
            release is untouched; the files stay in ``.labelloop/release-staging`` to inspect).
        labelloop.workspace.versioning.VersioningError: git or DVC failed while committing.
        ValueError: a label that cannot be written (unknown class, bad box, mask or keypoints).
    """
    cfg = ws.config()
    inputs = gather_inputs(ws, labels, resolved, report.get("model_id"))
    staging = ws.state / "release-staging"
    with ws.lock():
        recovery.clear_stale_locks(ws.root)  # a git killed before holding them; a release killed before its tag
        recovery.recover_release(ws)
        recovery.remove_stale_temporaries(ws)
        if settings is not None and (settings.dvc_url or settings.endpoint_url or settings.git_url):
            R.configure(ws.root, settings)
        R.configure_store(ws.root, ws.store)  # dvc.yaml's tables/labels dependency: local or S3
        seed_registries(ws)
        splits_path, ids_path = repo.registry_paths(ws)
        plan = plan_release(inputs, splits_path, ids_path, resplit=resplit)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        manifest = build_release(staging, ws.root, inputs, plan, locate=ws.locate,
                                 previous=ws.release_dir if ws.release_dir.is_dir() else None)
        kpt = next((len(v["keypoints"]) for v in inputs.keypoints.values()), 0) if inputs.yolo_task == "pose" else 0
        validate_release(staging, cfg.category_names, inputs.yolo_task, kpt)
        tags = V.release_tags(ws.root)
        if tags and tags[-1]["content_sha256"] == manifest["content_sha256"]:
            shutil.rmtree(staging)
            out = {"status": "unchanged", "tag": tags[-1]["tag"], "counts": manifest["counts"], "restored": False}
            if current_content(ws) != manifest["content_sha256"]:  # release/ was rolled back
                V.rollback(ws.root, tags[-1]["tag"])
                out["restored"] = True
            return out
        n = V.next_release_number(ws.root, ws.state / "release_counter")
        tag = f"{V.TAG_PREFIX}{n}"
        diff = diff_releases(view_of_rev(ws.root, tags[-1]["tag"]), view_of_folder(staging, tag)) if tags else None
        warn = [g for g in report["gates"] if g["status"] == "warn"]
        note = release_note(tag, manifest, report, warn, tags, diff, run_id)
        # From here until the tag, the release is pending: a process that dies leaves a record the
        # next release finishes or undoes (labelloop.workspace.recovery). Everything the release
        # needs besides the tag (ids, splits, index, QA report) is written before the tag.
        recovery.begin_release(ws, tag)
        try:
            failure_point("release:before-swap")
            swap_in(staging, ws.release_dir)
            failure_point("release:registries", ids_path)
            plan.ids.save()
            save_assignments(splits_path, plan.split_rows)
            repo.write_release_index(ws, tag)
            repo.archive_release_report(ws, tag)
            failure_point("release:before-commit")
            info = V.commit_release(ws.root, n, note, manifest["content_sha256"], ws.state / "release_counter",
                                    push=False, run_id=run_id)
        except BaseException:
            with contextlib.suppress(Exception):  # the record stays when this fails: the next release retries
                recovery.recover_release(ws)
            raise
        failure_point("release:after-tag")
        recovery.end_release(ws)
        warnings = [f"{g['name']}: {g['reason']}" for g in warn] + list(manifest.get("warnings", []))
        pushed = push_error = None
        if push:
            try:
                pushed = R.push(ws.root)
            except V.VersioningError as exc:
                push_error = f"push failed (the release is committed locally; `labelloop push` retries): {exc}"
                warnings.append(push_error)
    return {"status": "released", **info, "counts": manifest["counts"], "content_sha256": manifest["content_sha256"],
            "warnings": warnings, "diff": diff, "split_balance": manifest["split_balance"], "pushed": pushed,
            "push_error": push_error}


def current_content(ws: Workspace) -> str | None:
    """The ``content_sha256`` of the release in ``release/`` (its manifest), or None."""
    p = ws.release_dir / "manifest.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))["content_sha256"]
    except (OSError, ValueError, KeyError):
        return None

"""Release commands of the ``labelloop`` CLI: ``push``, ``diff``, ``remote`` and ``lineage
--release`` (added to the group in :mod:`pipelines.cli`)."""

from __future__ import annotations

import json
import re

import click

from labelloop.models import registry
from labelloop.release import lineage as L
from labelloop.release.audit import lineage as get_lineage
from labelloop.release.diff import diff_releases, format_diff, view_of_rev
from labelloop.training.card import trained_on
from labelloop.workspace import remotes as R
from labelloop.workspace import versioning as V
from labelloop.workspace.guidelines import short
from pipelines.cli.common import BLOCKED, CliError, do_release, emit, options, workspace_of
from pipelines.cli.summary import format_lineage
from pipelines.runner import execute, get_instance


def _tag(ws, name: str) -> str:
    """``dataset-v3``, ``v3`` or ``3`` -> ``dataset-v3`` if that release exists (CliError otherwise)."""

    m = re.fullmatch(r"(?:dataset-)?v?(\d+)", name.strip())
    tags = [t["tag"] for t in V.release_tags(ws.root)]
    tag = f"{V.TAG_PREFIX}{int(m.group(1))}" if m else name
    if tag not in tags:
        raise CliError(f"unknown release {name!r} (releases: {', '.join(tags) or 'none'})")
    return tag


@click.command()
@options
@click.option("--data-only", is_flag=True, help="push the DVC data only")
@click.option("--git-only", is_flag=True, help="push the commits and tags only")
@click.pass_context
def push(ctx: click.Context, data_only: bool, git_only: bool) -> None:
    """Push every release: its data to the DVC remote, then commits and dataset-vN tags to the git
    remote (a recorded Dagster run, push_job). Remotes: `labelloop remote` or LABELLOOP_* variables."""

    if data_only and git_only:
        raise CliError("--data-only and --git-only exclude each other")
    ws = workspace_of(ctx)
    conf = {"data": not git_only, "git": (False if data_only else True if git_only else None)}
    out = execute(ws, "push_job", get_instance(ws), run_config={"ops": {"push_releases": {"config": conf}}},
                  verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"push: {out.reason()} (run {out.run_id})")
    md = out.metadata.get("push_releases", {})

    info = R.describe(ws.root)
    if not git_only:
        click.echo(f"data of every release pushed to {info['dvc'].get(info['dvc_default'] or '', '?')}")
    if info["git"].get(R.GIT_REMOTE) and not data_only:
        click.echo(f"commits and tags pushed to {info['git'][R.GIT_REMOTE]}")
    elif not data_only:
        click.echo("no git remote: set one with `labelloop remote --git URL` to push commits and tags")
    click.echo(f"[run {out.run_id[:8]}]" + (f" {md}" if ctx.obj["verbose"] else ""))


@click.command()
@options
@click.option("--dvc", "dvc_url", metavar="URL", help="data remote: s3://bucket/prefix (dvc-s3) or a folder")
@click.option("--endpoint-url", metavar="URL", help="S3-compatible server (MinIO, Ceph ...); kept in .dvc/config.local")
@click.option("--git", "git_url", metavar="URL", help="git remote (origin) for commits and tags")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def remote(ctx: click.Context, dvc_url: str | None, endpoint_url: str | None, git_url: str | None,
           as_json: bool) -> None:
    """Show the workspace's remotes, or set them (the DVC URL becomes the default remote `storage`)."""

    ws = workspace_of(ctx)
    with ws.lock():
        info = R.configure(ws.root, R.RemoteSettings(dvc_url, endpoint_url, git_url))

    def fmt(d: dict) -> str:
        lines = [f"dvc {n}: {u}{' (default)' if n == d['dvc_default'] else ''}" for n, u in sorted(d["dvc"].items())]
        if d["endpoint_url"]:
            lines.append(f"dvc endpoint: {d['endpoint_url']}")
        lines += [f"git {n}: {u}" for n, u in sorted(d["git"].items())] or ["git: no remote"]
        return "\n".join(lines)

    emit(info, as_json, fmt)


@click.command()
@options
@click.argument("old")
@click.argument("new", required=False)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def diff(ctx: click.Context, old: str, new: str | None, as_json: bool) -> None:
    """What changed from release OLD to NEW (default: from the release before OLD to OLD): images
    added / removed, labels added / removed / moved / relabeled per class, and who caused each."""

    ws = workspace_of(ctx)
    a = _tag(ws, old)
    if new is None:
        tags = [t["tag"] for t in V.release_tags(ws.root)]
        if tags.index(a) == 0:
            raise CliError(f"{a} is the first release: name two releases (labelloop diff OLD NEW)")
        a, b = tags[tags.index(a) - 1], a
    else:
        b = _tag(ws, new)
    emit(diff_releases(view_of_rev(ws.root, a), view_of_rev(ws.root, b)), as_json, format_diff)


def format_release_lineage(d: dict) -> str:
    r, im = d["release"], d["image"]
    lines = [f"release {r['tag']} (git {r['git_sha'][:12]}, Dagster run {r['run_id'] or '-'})",
             f"  guidelines sha256 {r.get('guidelines_sha256') or 'not recorded'}",
             f"image {im['image_id']} {im.get('file_name')} ({im.get('width')}x{im.get('height')}, split "
             f"{im.get('split')}, COCO id {im.get('coco_image_id')})",
             f"  source {im.get('source_path')} (batch {im.get('batch')}, {im.get('uri')}), EXIF orientation "
             f"{im.get('exif_orientation')}"]
    if im.get("resolution") == "reviewed":
        lines.append(f"  reviewed by {im.get('annotator')} ({im.get('review_source')} task {im.get('review_task_id')}, "
                     f"{im.get('reviewed_at')})")
    else:
        lines.append(f"  auto-accepted from model {im.get('model_id')}")
    lines.append((f"  route {im.get('route')}: {im.get('route_reason') or '-'} [{im.get('policy_id') or '-'}]"
                  if im.get("route") else "  route: none recorded")
                 + ("; in the QA sample" if im.get("qa_sample") else ""))
    if d["labels"]:
        lines.append("  boxes: [x0, y0, x1, y1] in pixels of the released image (xyxy)")
    for lab in d["labels"]:
        box = ", ".join(f"{v:.1f}" for v in lab["bbox_xyxy"])
        if lab.get("origin") == "human":
            who = (f"reviewer {lab.get('annotator')} ({lab.get('review_source')} task {lab.get('review_task_id')}, "
                   f"{lab.get('reviewed_at')}, guidelines {short(lab.get('guidelines_sha256'))}, "
                   f"import run {(lab.get('import_run_id') or '-')[:8]})")
        else:
            who = (f"model {lab.get('model_id')} (checkpoint {(lab.get('checkpoint_sha256') or '')[:12]}, prompt "
                   f"{lab.get('prompt')!r}, score {lab.get('score'):.2f}, run {(lab.get('label_run_id') or '-')[:8]})")
        lines.append(f"  label {lab['label_id']} (COCO id {lab.get('coco_annotation_id')}) {lab['category']} [{box}] "
                     f"{lab.get('action')} by {who}; thresholds {lab.get('threshold_low')}/{lab.get('threshold_high')}")
    if not d["labels"]:
        lines.append("  no labels (a negative)")
    return "\n".join(lines)


def release_lineage(ctx: click.Context, ident: str | None, tag: str | None, html: bool, as_json: bool) -> None:
    """``labelloop lineage [ID] --release TAG``: one image's provenance in a release, or without ID
    the release's audit summary (Markdown, or HTML with --html)."""

    ws = workspace_of(ctx)
    if tag is None:
        raise CliError("give an image_id, label_id or file name, or --release TAG for a release's audit summary")
    tag = _tag(ws, tag)
    if ident is None:
        out = L.lineage_dir(ws.root, tag, ws.tables)
        if not (out / "summary.md").is_file():
            with ws.lock():
                L.materialize(ws.root, tag, ws.release_dir, ws.tables, registry.trained_on_lines(ws))
        click.echo((out / ("summary.html" if html else "summary.md")).read_text(encoding="utf-8"), nl=False)
        return
    try:
        data = L.lineage_at_release(ws.root, ident, tag, ws.release_dir)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None
    click.echo(json.dumps(data, indent=1, default=str) if as_json else format_release_lineage(data))


@click.command()
@options
@click.argument("ident", metavar="ID", required=False)
@click.option("--release", "tag", metavar="TAG", help="as the labels were in this release (dataset-vN), read "
              "from the release itself; without ID: the release's audit summary")
@click.option("--html", is_flag=True, help="with --release and no ID: the audit summary as HTML")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def lineage(ctx: click.Context, ident: str | None, tag: str | None, html: bool, as_json: bool) -> None:
    """Provenance of an image_id, a label_id or a file name (current labels, or --release TAG)."""
    if tag or not ident:
        return release_lineage(ctx, ident, tag, html, as_json)

    try:
        data = get_lineage(workspace_of(ctx), ident)
    except KeyError as exc:
        raise CliError(exc.args[0]) from None

    for lab in data["labels"]:
        if lab["origin"] == "model":
            lab["trained_on"] = trained_on(workspace_of(ctx), lab.get("checkpoint_sha256"))

    emit(data, as_json, format_lineage)


@click.command()
@options
@click.option("--resplit", is_flag=True, help="assign every image group's train/val/test split anew "
              "(stored splits are otherwise kept)")
@click.pass_context
def release(ctx: click.Context, resplit: bool) -> None:
    """Materialize labels, qa_report (with its blocking checks), dataset_release and lineage in one run."""
    ws = workspace_of(ctx)
    r = do_release(ctx, ws, resplit=resplit)
    for w in r["warnings"]:
        click.echo(f"warning: {w}")
    if r["status"] == "blocked":
        for c in r["checks"]:
            click.echo(f"failed: {c['name']}: {c['reason']} (measured {c['value']}, threshold {c['threshold']})")
            if c.get("images"):
                click.echo(f"  images behind {c['name']}: {', '.join(str(i)[:12] for i in c['images'][:20])}")
        click.echo(f"labelloop: release blocked: {r['reason']}", err=True)
        ctx.exit(BLOCKED)
    if r["status"] == "unchanged":
        restored = f"; release/ restored to {r['tag']}" if r["metadata"].get("restored") else ""
        click.echo(f"no change since {r['tag']}: no new release{restored}")
    else:
        m = r["metadata"]
        click.echo(f"released {r['tag']}: {m.get('images')} images, {m.get('labels')} labels "
                   f"(git {str(m.get('git_sha'))[:10]}, dvc {m.get('dvc_md5')})")
        if m.get("push_error"):
            click.echo(f"warning: {m['push_error']}")


@click.command()
@options
@click.argument("tag")
@click.pass_context
def rollback(ctx: click.Context, tag: str) -> None:
    """Restore release/ to TAG byte for byte (a recorded run; later tags and labels untouched)."""

    ws = workspace_of(ctx)
    out = execute(ws, "rollback_job", get_instance(ws), run_config={"ops": {"rollback_release": {"config": {"tag": tag}}}},
                  verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"rollback: {out.reason()}")
    click.echo(f"release/ restored to {tag} [run {out.run_id[:8]}]")

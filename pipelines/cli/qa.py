"""QA commands of the ``labelloop`` CLI: ``register-gold``, ``calibrate`` and ``levels`` (added to the group
in :mod:`pipelines.cli`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from labelloop.qa.calibration import calibrate_workspace
from labelloop.qa.levels import workspace_levels
from labelloop.review.gold import GoldError
from labelloop.review.gold import register_gold as do_register
from labelloop.workspace import repo
from pipelines.cli.common import CliError, options, workspace_of
from resources.prelabeler import PreLabelerResource


@click.command("register-gold")
@options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", help="gold set name (default: the file's stem); registering a name again replaces that set")
@click.pass_context
def register_gold(ctx: click.Context, file: str, name: str | None) -> None:
    """Register trusted reference labels of ingested images as a gold set, from any review file
    labelloop imports (Label Studio JSON / JSON-MIN, CVAT for images 1.1 XML or zip, COCO JSON). Review exports written from now on carry qa.honeypots_per_batch
    of its images among their tasks, unmarked; qa_report compares reviewers with it."""

    ws = workspace_of(ctx)
    set_name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", Path(file).stem).strip("-._") or "gold"
    try:
        with ws.lock():
            cfg = ws.config()
            s = do_register(ws, Path(file), set_name, repo.all_images(ws), cfg.category_names,
                            keypoints=cfg.keypoint_schema(), max_bytes=int(cfg.review.max_export_mb * 2**20))
    except GoldError as exc:
        raise CliError(str(exc)) from None
    click.echo(f"gold set {s['gold_set']} ({s['format']}): {s['images']} images, {s['labels']} labels registered, "
               f"{len(s['rejects'])} rejected")
    for r in s["rejects"]:
        click.echo(f"  rejected {r}")
    click.echo(f"honeypots: {ws.config().qa.honeypots_per_batch} per batch in review exports written from now on "
               "(`labelloop run --batch B` re-exports a batch)")


@click.command()
@options
@click.option("--apply", "apply_", is_flag=True, help="route with the new policy: set routing.calibrated_policy in "
              "labelloop.yaml and commit both to the workspace repository")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def calibrate(ctx: click.Context, apply_: bool, as_json: bool) -> None:
    """Fit per-class routing thresholds from reviewed outcomes (lowest score threshold whose reviewed
    precision, 95% lower bound, reaches calibration.precision_target) and store the policy."""

    ws = workspace_of(ctx)
    model_id = PreLabelerResource().get(ws.config()).model_id
    pol = calibrate_workspace(ws, model_id, apply=apply_)
    if as_json:
        click.echo(json.dumps(pol, indent=1, default=str))
        return
    e = pol["estimate"]
    click.echo(f"policy {pol['policy_id']} from {pol['data']['predictions']} reviewed predictions on "
               f"{pol['data']['images']} images: {pol['path']}")
    for c, f in pol["per_class"].items():
        click.echo(f"  {c}: high {f['previous_high']} -> {f['high']}  ({f['reason']})")

    def share(v):
        return "undefined (no routed image)" if v is None else f"{v:.1%}"

    click.echo(f"share of images routed to review: {share(e['review_share_before'])} -> {share(e['review_share_after'])}"
               f" over {e['images']} routed images")
    for k in ("before", "after"):
        r = e[f"reviewed_error_{k}"]
        rate = "undefined (none auto-accepted)" if r["error_rate"] is None else f"{r['error_rate']:.1%}"
        click.echo(f"  reviewed images it would auto-accept ({k}): {r['auto']}, in error: {r['errors']} ({rate})")
    if pol["applied"]:
        click.echo(f"applied: routing.calibrated_policy = {pol['path']} (routing policy {pol['policy_id_routing']}); "
                   "`labelloop run` re-routes the batches")
    else:
        click.echo("not applied: run `labelloop calibrate --apply` to route with it")


@click.command()
@options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def levels(ctx: click.Context, as_json: bool) -> None:
    """Recommend an annotation level (tag | box | mask) per class: the median mask-fill ratio
    (mask area / box area) of the masks at hand (human masks, pre-label masks of reviewed boxes)
    and the cost of the next level. Only recommends: labelloop.yaml is never changed."""

    ws = workspace_of(ctx)
    model_id = PreLabelerResource().get(ws.config()).model_id
    advice = workspace_levels(ws, model_id)
    if as_json:
        click.echo(json.dumps(advice, indent=1))
        return
    for a in advice:
        fill = "no masks" if a["fill_median"] is None else f"median fill {a['fill_median']:.2f} over {a['masks']} masks"
        nxt = "" if a["next_level"] is None else \
            f"; {a['next_level']} for its {a['objects']} objects: {a['next_level_cost']:.2f} {a['currency']}"
        click.echo(f"{a['category']}: level {a['level']} -> recommended {a['recommended']} ({fill}{nxt})")
        click.echo(f"  {a['reason']}")
    click.echo("a recommendation only: change categories[].level in labelloop.yaml to follow it")

"""``labelloop demo``: the whole loop on the bundled photos in a fresh workspace.

init -> ingest the bundled photos -> run (raw_images, prelabels, review_queue, review_export,
human_labels, labels) -> register the hand-drawn gold set -> release (dataset-v1 from the
labels resolved so far) -> import the hand-made review of all 12 photos and a second reviewer's
review of four (a double review) -> run -> release dataset-v2 (every blocking gate measured) ->
import a careless re-review of the gold photos -> run -> release, blocked by the reviewer-vs-gold
gate (the expected outcome: dataset-v2 stays the current release) -> summary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import click

from labelloop.images import samples
from labelloop.ingest.files import ingest
from labelloop.models.registry import ENV_MODELS
from labelloop.models.use import UseError, pulled_prelabeler, write_prelabeler
from labelloop.release.audit import status
from labelloop.review.gold import register_gold
from labelloop.workspace import repo
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import Workspace
from pipelines.cli.common import CliError, copy_to_inbox, do_release, options, run_batches
from pipelines.cli.summary import demo_summary
from pipelines.partitions import BATCHES
from pipelines.runner import get_instance

MARKER = ".labelloop/demo-workspace"


def fresh_demo_workspace(path: str | None) -> Workspace:
    """A new, empty demo workspace at ``path`` (default ./labelloop-demo). A folder left by an
    earlier demo (it carries .labelloop/demo-workspace) is replaced; any other non-empty folder
    is refused, so the demo never deletes a user's data."""

    root = Path(path or "labelloop-demo").expanduser().resolve()
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise CliError(f"{root} exists and is not a labelloop demo workspace: pass --workspace to a new folder")
        shutil.rmtree(root)
    return Workspace.at(root)


def demo_models(prelabeler: str) -> tuple[dict[str, Any], str] | None:
    """The ``prelabeler`` settings and categories' detector kind for ``--prelabeler`` (None for
    the default ``opencv``): models pulled into ``$LABELLOOP_MODELS``
    (:func:`labelloop.models.use.pulled_prelabeler`), resolved before the workspace is made; a
    missing model is one line naming the ``labelloop models pull`` command."""
    if prelabeler == "opencv":
        return None
    shared = os.environ.get(ENV_MODELS)
    try:
        return pulled_prelabeler(Path(shared).expanduser().resolve() if shared else None, prelabeler)
    except UseError as exc:
        raise CliError(str(exc)) from None


def run_demo(ctx: click.Context, prelabeler: str = "opencv") -> None:

    models = demo_models(prelabeler)
    if models is not None:
        root = Path(ctx.obj["workspace"] or "labelloop-demo").expanduser().resolve()
        inside = [str(spec["path"]) for spec in models[0].values() if isinstance(spec, dict) and
                  Path(str(spec["path"])).expanduser().resolve().is_relative_to(root)]
        if inside:  # the demo replaces its folder: it would delete the models it is about to use
            raise CliError(f"the models {', '.join(inside)} lie inside the demo folder {root}, which the demo replaces; "
                           f"move them out (e.g. to ~/.cache/labelloop-models) and point ${ENV_MODELS} there")
    ws = fresh_demo_workspace(ctx.obj["workspace"])
    click.echo(f"[1/7] workspace {ws.root}")
    init_workspace(ws)
    if models is not None:
        try:
            write_prelabeler(ws, *models)
        except UseError as exc:
            raise CliError(f"the pulled models cannot be used: {exc}") from None
        click.echo(f"      pre-labeler {prelabeler}: " + ", ".join(
            f"{role} {spec['path']}" for role, spec in models[0].items() if isinstance(spec, dict)))
    (ws.root / MARKER).write_text("created by `labelloop demo`; `labelloop demo` may replace this folder\n")
    instance = get_instance(ws)
    photos = samples.stage_photos(ws.state / "demo-photos")
    res = ingest(ws, photos, "photos")
    instance.add_dynamic_partitions(BATCHES, [res.batch])
    click.echo(f"[2/7] ingested {len(res.copied)} bundled photos as batch {res.batch}")
    run_batches(ctx, ws, None)
    with ws.lock():  # gold images must be ingested (raw_images) before they can be registered
        cfg = ws.config()
        gold = register_gold(ws, samples.demo_gold_path(), "demo-gold", repo.all_images(ws), cfg.category_names)
    click.echo(f"[3/7] pre-labeled, routed and exported for review; gold set {gold['gold_set']} registered "
               f"({gold['images']} images, {gold['labels']} objects, drawn by hand)")
    first = do_release(ctx, ws)
    click.echo(f"[4/7] release: {first.get('tag') or first['status']}")
    dests = [copy_to_inbox(ws, samples.demo_review_path(), None),
             copy_to_inbox(ws, samples.demo_second_review_path(), None)]
    run_batches(ctx, ws, None)
    click.echo(f"[5/7] imported the hand-made reviews {', '.join(str(ws.relative(d)) for d in dests)}")
    second = do_release(ctx, ws)
    click.echo(f"[6/7] release: {second.get('tag') or second['status']}")
    careless = copy_to_inbox(ws, samples.demo_careless_review_path(), None)
    run_batches(ctx, ws, None)
    third = do_release(ctx, ws)
    click.echo(f"[7/7] imported the careless re-review {ws.relative(careless)}; release: "
               f"{third.get('tag') or third['status']}")
    click.echo("")
    click.echo(demo_summary(ws, status(ws), [first, second, third],
                            expected_block="the careless re-review of the gold photos"))


@click.command()
@options
@click.option("--prelabeler", type=click.Choice(["opencv", "sam3", "foundation"]), default="opencv", show_default=True,
              help="sam3 / foundation: the models pulled into $LABELLOOP_MODELS (labelloop models pull)")
@click.pass_context
def demo(ctx: click.Context, prelabeler: str) -> None:
    """The main job on the bundled photos in a fresh workspace: --workspace, else
    $LABELLOOP_WORKSPACE, else ./labelloop-demo (not the current directory)."""

    run_demo(ctx, prelabeler)

"""``labelloop demo``: the whole loop on the bundled photos in a fresh workspace.

init -> ingest the bundled photos -> run (raw_images, prelabels, review_queue, review_export,
human_labels, labels) -> release (dataset-v1 from the labels resolved so far) -> import the
hand-made review (Label Studio JSON export) -> run -> release again (dataset-v2, or a release
blocked by a QA gate, an expected outcome) -> summary.
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
    ws = fresh_demo_workspace(ctx.obj["workspace"])
    click.echo(f"[1/6] workspace {ws.root}")
    init_workspace(ws)
    if models is not None:
        write_prelabeler(ws, *models)
        click.echo(f"      pre-labeler {prelabeler}: " + ", ".join(
            f"{role} {spec['path']}" for role, spec in models[0].items() if isinstance(spec, dict)))
    (ws.root / MARKER).write_text("created by `labelloop demo`; `labelloop demo` may replace this folder\n")
    instance = get_instance(ws)
    photos = samples.stage_photos(ws.state / "demo-photos")
    res = ingest(ws, photos, "photos")
    instance.add_dynamic_partitions(BATCHES, [res.batch])
    click.echo(f"[2/6] ingested {len(res.copied)} bundled photos as batch {res.batch}")
    run_batches(ctx, ws, None)
    click.echo("[3/6] pre-labeled, routed and exported for review")
    first = do_release(ctx, ws)
    click.echo(f"[4/6] release: {first.get('tag') or first['status']}")
    dest = copy_to_inbox(ws, samples.demo_review_path(), None)
    run_batches(ctx, ws, None)
    click.echo(f"[5/6] imported the hand-made review {ws.relative(dest)}")
    second = do_release(ctx, ws)
    click.echo(f"[6/6] release: {second.get('tag') or second['status']}")
    click.echo("")
    click.echo(demo_summary(ws, status(ws), [first, second]))


@click.command()
@options
@click.option("--prelabeler", type=click.Choice(["opencv", "sam3", "foundation"]), default="opencv", show_default=True,
              help="sam3 / foundation: the models pulled into $LABELLOOP_MODELS (labelloop models pull)")
@click.pass_context
def demo(ctx: click.Context, prelabeler: str) -> None:
    """The main job on the bundled photos in a fresh workspace: --workspace, else
    $LABELLOOP_WORKSPACE, else ./labelloop-demo (not the current directory)."""

    run_demo(ctx, prelabeler)

"""``labelloop train`` (fine-tune a detector on the release, evaluate it against the current
pre-labeler, promote it when the gate passes) and ``labelloop models promote NAME --by --why``
(a person's override), added to the CLI in :mod:`pipelines.cli`. The work is
:mod:`labelloop.training`; this module parses, shows progress and prints."""

from __future__ import annotations

from typing import Any

import click

from labelloop.models.registry import ModelRegistryError
from labelloop.training.data import ReleaseDataError
from labelloop.training.promotion import PromotionError, promote
from labelloop.training.run import TrainingError, train_release
from pipelines.cli.common import CliError, emit, options, workspace_of
from pipelines.cli.models import models

GATE_BY = "labelloop train (gate candidate_beats_current)"


@click.command("train")
@options
@click.option("--release", "release_tag", metavar="TAG", help="the release to train on (default: the one in release/)")
@click.option("--no-promote", is_flag=True, help="evaluate and record the candidate, never promote it")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def train(ctx: click.Context, release_tag: str | None, no_promote: bool, as_json: bool) -> None:
    """Fine-tune an RT-DETRv2 detector on the release's train split (training: in labelloop.yaml),
    evaluate it and the current pre-labeler on the reviewed val/test images (COCO AP), record the
    candidate in the models table with its model card, and promote it when the paired bootstrap
    gate on the test split passes (training.promote_margin)."""
    from labelloop.prelabel.backends.loading import CheckpointError
    from resources.prelabeler import PreLabelerResource  # builds the configured backend (torch for model backends)

    ws = workspace_of(ctx)
    bar: Any = None

    def progress(p) -> None:
        nonlocal bar
        if as_json:
            return
        if bar is None:
            bar = click.progressbar(length=p.epochs * p.steps, label="training", file=click.get_text_stream("stderr"),
                                    show_pos=True)
            bar.__enter__()
            bar.update(p.global_step - 1)
        bar.label = f"epoch {p.epoch}/{p.epochs} loss {p.loss:.3f}"
        bar.update(1)

    try:
        current = PreLabelerResource().get(ws.config(), str(ws.root))
        card = train_release(ws, release_tag, progress=progress, current=current)
    except (TrainingError, ReleaseDataError, CheckpointError) as exc:
        raise CliError(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    gate = card["metrics"]["gate"]
    promoted = False
    if gate["promote"] and not no_promote:
        promote(ws, card["name"], by=GATE_BY, why=gate["reason"])
        promoted = True
    data = {"name": card["name"], "release": card["release"], "labels_sha256": card["labels_sha256"],
            "checkpoint": card["checkpoint"], "checkpoint_sha256": card["checkpoint_sha256"],
            "card_path": card["card_path"], "metrics": card["metrics"], "promoted": promoted}

    def fmt(d: dict) -> str:
        m = d["metrics"]
        lines = [(f"candidate {d['name']} trained on {d['release']} (labels sha256 {d['labels_sha256'][:12]}), "
                  f"checkpoint {d['checkpoint']} sha256 {d['checkpoint_sha256'][:12]}, card {d['card_path']}")]
        for who in ("candidate", "current"):
            for split, ev in m.get(who, {}).items():
                lines.append(f"  {who:<9} {split:<4} " + (f"AP {ev['AP']:.3f} AP50 {ev['AP50']:.3f} on {ev['images']} images"
                                                         if "AP" in ev else f"skipped: {ev['skipped']}"))
        lines.append(("promoted: " if d["promoted"] else "not promoted: ") + m["gate"]["reason"])
        return "\n".join(lines)

    emit(data, as_json, fmt)


@models.command("promote")
@options
@click.argument("name")
@click.option("--by", required=True, help="who promotes it (recorded in the models table)")
@click.option("--why", required=True, help="why (recorded in the models table)")
@click.pass_context
def promote_model(ctx: click.Context, name: str, by: str, why: str) -> None:
    """Make the fine-tuned candidate NAME the pre-labeler whatever the gate said (a person's
    override, recorded with --by and --why): labelloop.yaml points at it (committed) and a
    calibrated routing policy of the previous model is cleared."""
    ws = workspace_of(ctx)
    try:
        row = promote(ws, name, by=by, why=why)
    except (PromotionError, ModelRegistryError) as exc:
        raise CliError(str(exc)) from None
    click.echo(f"{row['name']} is the current detector (by {row['promoted_by']}: {row['promoted_reason']}); "
               f"prelabeler.backend rtdetrv2, sha256 {row['sha256']}; routing.calibrated_policy cleared")

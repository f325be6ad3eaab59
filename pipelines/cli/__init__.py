"""The ``labelloop`` command line. Every stage runs through Dagster against the workspace's
instance, so CLI runs, sensors and ``dagster dev`` share one history.

Exit codes: 0 ok; 1 error (one-line reason as the last line of stderr); 2 usage error;
3 release blocked: a blocking QA gate failed, or nothing is resolved yet (``release`` only; ``demo``
  reports it and exits 0).
"""

from __future__ import annotations

if __name__ == "__main__":  # `python -m pipelines.cli`: run the importable module, whose subcommand modules
    from pipelines.cli import main  # import it back (a second copy as __main__ made that import circular)

    main()

import json
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

import click

from labelloop.workspace import ENV_WORKSPACE, Workspace

BLOCKED = 3


class CliError(click.ClickException):
    """A failure reported as one line on stderr."""

    def show(self, file=None):
        click.echo(f"labelloop: error: {self.format_message()}", err=True)


def _ws(ctx: click.Context, require: bool = True) -> Workspace:
    ws = Workspace.at(ctx.obj["workspace"])
    return ws.require() if require else ws


def _set_workspace(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["workspace"] = value


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["verbose"] = True
        from pipelines.runner import quiet

        quiet(True)


def options(f):
    """--workspace / --verbose accepted after the command name too (``labelloop demo --workspace P``)."""
    f = click.option("--verbose", "-v", is_flag=True, expose_value=False, callback=_set_verbose,
                     help="show Dagster's logs and full tracebacks")(f)
    return click.option("--workspace", "-w", type=click.Path(file_okay=False), expose_value=False,
                        callback=_set_workspace, is_eager=True,
                        help="workspace root (default: $LABELLOOP_WORKSPACE, else the current directory; "
                             "for demo: ./labelloop-demo)")(f)


class _Group(click.Group):
    """Turns every library error into one line on stderr (exit 1); --verbose adds the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the one-line reason names the failure
            if (ctx.obj or {}).get("verbose"):
                traceback.print_exc()
            from labelloop.config import ConfigError
            from labelloop.versioning import VersioningError
            from labelloop.workspace import WorkspaceError

            known = (WorkspaceError, ConfigError, VersioningError, FileNotFoundError, OSError, KeyError)
            msg = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) if isinstance(exc, known) \
                else f"{type(exc).__name__}: {exc}"
            raise CliError(msg) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", type=click.Path(file_okay=False), envvar=ENV_WORKSPACE,
              help="workspace root (default: $LABELLOOP_WORKSPACE, else the current directory; "
                   "for demo: ./labelloop-demo)")
@click.option("--verbose", "-v", is_flag=True, help="show Dagster's logs and full tracebacks")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, verbose: bool) -> None:
    """labelloop: pre-label images, route them to review, import reviews, QA, release with DVC."""
    from pipelines.runner import quiet

    ctx.ensure_object(dict)
    ctx.obj.update(workspace=workspace, verbose=verbose)
    quiet(verbose)


@cli.command()
@options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create a workspace (git + DVC repository, labelloop.yaml, folders, Dagster home) at
    --workspace, else $LABELLOOP_WORKSPACE, else the current directory."""
    from labelloop.bootstrap import init_workspace
    from pipelines.runner import get_instance

    ws = init_workspace(_ws(ctx, require=False))
    get_instance(ws)
    click.echo(f"workspace ready: {ws.root}")


@cli.command()
@options
@click.argument("path")
@click.option("--batch", help="batch name (default: UTC timestamp)")
@click.pass_context
def ingest(ctx: click.Context, path: str, batch: str | None) -> None:
    """Copy the image files under PATH (folder, file or s3://bucket/prefix) into the inbox (the
    workspace's, or the S3 store of LABELLOOP_STORE_URL) as a batch; register its partition."""
    from labelloop.ingest import ingest as do_ingest
    from pipelines.partitions import BATCHES
    from pipelines.runner import get_instance

    ws = _ws(ctx)
    res = do_ingest(ws, path, batch)
    if res.batch in ws.batches():
        get_instance(ws).add_dynamic_partitions(BATCHES, [res.batch])
    click.echo(f"batch {res.batch}: {len(res.copied)} copied, {len(res.already_ingested)} already ingested, "
               f"{len(res.skipped)} skipped")
    for p, why in res.skipped:
        click.echo(f"  skipped {p}: {why}")


def _run_batches(ctx: click.Context, ws: Workspace, only: str | None) -> list[dict]:
    from labelloop import batch as B
    from labelloop import project as P
    from labelloop.reprocess import PlannedRun
    from pipelines.runner import execute, get_instance
    from resources.prelabeler import PreLabelerResource

    instance = get_instance(ws)
    model_id = PreLabelerResource().get(ws.config()).model_id
    names = [only] if only else ws.batches()
    if only and only not in ws.batches():
        raise CliError(f"no batch named {only!r} (batches: {', '.join(ws.batches()) or 'none'})")
    reviewed = set(P.review_store(ws).latest_reviews())
    done = []
    for b in names:
        st = B.stale_stage(ws, b, model_id, reviewed)
        if st is None and not only:
            continue
        # from the first stale stage on: a new routing policy re-routes without a pre-label step
        stages = list(PlannedRun(st[0], (b,)).assets) if st else None
        out = execute(ws, "batch_job", instance, partition_key=b, asset_selection=stages, verbose=ctx.obj["verbose"])
        if not out.success:
            raise CliError(f"batch {b}: {out.reason()} (run {out.run_id})")
        done.append({"batch": b, "reason": st[1] if st else "requested", "run_id": out.run_id, "metadata": out.metadata})
    out = execute(ws, "resolve_job", instance, verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"resolve: {out.reason()} (run {out.run_id})")
    done.append({"batch": None, "run_id": out.run_id, "metadata": out.metadata})
    return done


@cli.command()
@options
@click.option("--batch", help="only this batch (default: every batch with missing or stale assets)")
@click.pass_context
def run(ctx: click.Context, batch: str | None) -> None:
    """Materialize the per-batch assets where missing or stale, then human_labels and labels."""
    ws = _ws(ctx)
    for d in _run_batches(ctx, ws, batch):
        md = d["metadata"]
        if d["batch"]:
            ri, pl, rq, rx = (md.get(k, {}) for k in ("raw_images", "prelabels", "review_queue", "review_export"))
            routes = ", ".join(f"{k.split('/')[1]} {v}" for k, v in rq.items() if k.startswith("route/"))
            click.echo(f"batch {d['batch']} [ran: {d['reason']}]: {ri.get('ok', 0)} ok, {ri.get('rejected', 0)} rejected; "
                       f"{pl.get('dagster/row_count', 0)} predictions; {routes}; {rx.get('tasks', 0)} tasks exported")
        else:
            lab = md.get("labels", {})
            click.echo(f"labels: {lab.get('dagster/row_count', 0)} on {lab.get('images_resolved', 0)} resolved images "
                       f"({lab.get('reviewed_images', 0)} reviewed)  [run {d['run_id'][:8]}]")


def _copy_to_inbox(ws: Workspace, file: Path, source: str | None) -> Path:
    from labelloop.images import sha256_file
    from labelloop.review_sources import remember_source

    ws.review_inbox.mkdir(parents=True, exist_ok=True)
    if file.resolve().is_relative_to(ws.review_inbox.resolve()):
        dest = file.resolve()
    else:
        dest = ws.review_inbox / file.name
        if dest.exists() and sha256_file(dest) != sha256_file(file):
            dest = ws.review_inbox / f"{file.stem}-{sha256_file(file)[:8]}{file.suffix}"
        if not dest.exists():
            tmp = dest.with_name(f".tmp-{dest.name}")
            shutil.copy2(file, tmp)  # keeps the export's mtime: the version time of files that carry none
            os.replace(tmp, dest)
    if source:
        remember_source(ws, dest, source)
    return dest


@cli.command("import-review")
@options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", help="tool project the work came from (default: the export's project, "
              "else the inbox subfolder, else the file stem; CVAT: cvat/task-N; COCO: coco/<stem>)")
@click.pass_context
def import_review(ctx: click.Context, file: str, source: str | None) -> None:
    """Copy a review file into the review inbox and import it: a Label Studio JSON / JSON-MIN
    export, a CVAT for images 1.1 XML (or CVAT's zip), or COCO JSON (format read from the content)."""
    from labelloop import project as P

    from labelloop.labelstudio import ExportFormatError, check_size

    ws = _ws(ctx)
    try:  # a file over review.max_export_mb is refused before it is copied or read
        check_size(file, int(ws.config().review.max_export_mb * 2**20))
    except ExportFormatError as exc:
        raise CliError(str(exc)) from None
    existed = {p.resolve() for p in P.review_files(ws)}
    dest = _copy_to_inbox(ws, Path(file), source)
    check = P.import_file(ws, dest, source=source, dry_run=True)
    if check.get("error"):
        if dest.resolve() not in existed:
            dest.unlink(missing_ok=True)  # not an export: leave the inbox as it was
        raise CliError(check["error"])
    steps = _run_batches(ctx, ws, None)
    hl = steps[-1]["metadata"].get("human_labels", {})
    click.echo(f"{ws.relative(dest)}: {check['reviews']} new reviews, {check['skipped']} already imported, "
               f"{check['rejects']} rejected; {hl.get('reviewed_images', 0)} images reviewed in all")
    for r in check.get("reject_reasons", []):
        click.echo(f"  rejected {r}")
    for w in check.get("warnings", []):
        click.echo(f"  warning: {w}")


@cli.command("register-export")
@options
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", required=True, help="name of the export (e.g. label-studio/project-1)")
@click.pass_context
def register_export(ctx: click.Context, file: str, source: str) -> None:
    """Record a Label Studio import file that another process sent, so reviews link to its predictions."""
    from labelloop import project as P

    s = P.register_export(_ws(ctx), Path(file), source)
    click.echo(f"{file}: {s['predictions']} predictions registered, {len(s['rejects'])} tasks rejected")
    for r in s["rejects"]:
        click.echo(f"  rejected {r}")


def do_release(ctx: click.Context, ws: Workspace, resplit: bool = False) -> dict:
    """Run release_job; returns {"status": released|unchanged|blocked, ...}."""
    from pipelines.runner import execute, get_instance

    run_config = {"ops": {"dataset_release": {"config": {"resplit": True}}}} if resplit else None
    out = execute(ws, "release_job", get_instance(ws), run_config=run_config, verbose=ctx.obj["verbose"])
    md = out.metadata.get("dataset_release", {})
    warnings = [f"{c['name']}: {c['reason']}" for c in out.warned_checks]
    if out.success:
        return {"status": md.get("status", "released"), "tag": md.get("tag"), "warnings": warnings,
                "run_id": out.run_id, "metadata": md}
    if out.failed_checks or any("release blocked: " in f for f in out.failures):
        reason = out.reason().replace(": release blocked: ", ": ")  # the asset's own prefix, said once below
        return {"status": "blocked", "reason": reason, "checks": out.failed_checks, "warnings": warnings,
                "run_id": out.run_id}
    raise CliError(f"release: {out.reason()} (run {out.run_id})")


@cli.command()
@options
@click.option("--resplit", is_flag=True, help="assign every image group's train/val/test split anew "
              "(stored splits are otherwise kept)")
@click.pass_context
def release(ctx: click.Context, resplit: bool) -> None:
    """Materialize labels, qa_report (with its blocking checks), dataset_release and lineage in one run."""
    ws = _ws(ctx)
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


@cli.command()
@options
@click.argument("tag")
@click.pass_context
def rollback(ctx: click.Context, tag: str) -> None:
    """Restore release/ to TAG byte for byte (a recorded run; later tags and labels untouched)."""
    from pipelines.runner import execute, get_instance

    ws = _ws(ctx)
    out = execute(ws, "rollback_job", get_instance(ws), run_config={"ops": {"rollback_release": {"config": {"tag": tag}}}},
                  verbose=ctx.obj["verbose"])
    if not out.success:
        raise CliError(f"rollback: {out.reason()}")
    click.echo(f"release/ restored to {tag} [run {out.run_id[:8]}]")


def _emit(data: dict, as_json: bool, fmt) -> None:
    click.echo(json.dumps(data, indent=1, default=str) if as_json else fmt(data))


@cli.command()
@options
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Batches, images with their status and route, and releases."""
    from labelloop.audit import status as get_status

    from pipelines.summary import format_status

    _emit(get_status(_ws(ctx)), as_json, format_status)


@cli.command()
@options
@click.option("--port", "-p", default=3000, show_default=True, help="port of the UI on 127.0.0.1")
@click.pass_context
def ui(ctx: click.Context, port: int) -> None:
    """Open the Dagster UI (dagster dev) on this workspace's instance (stop it with Ctrl-C)."""
    ws = _ws(ctx)
    env = dict(os.environ, DAGSTER_HOME=str(ws.dagster_home), LABELLOOP_WORKSPACE=str(ws.root))
    click.echo(f"Dagster UI on http://127.0.0.1:{port} for {ws.root} (DAGSTER_HOME={ws.dagster_home})")
    args = [sys.executable, "-m", "dagster", "dev", "-m", "pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)]
    # An ignored SIGINT survives exec (a background job started without job control has one), and
    # dagster dev handles SIGTERM as it handles SIGINT, so it would ignore SIGTERM too: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(sys.executable, args, env)


@cli.command()
@options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """The main job on the bundled photos in a fresh workspace: --workspace, else
    $LABELLOOP_WORKSPACE, else ./labelloop-demo (not the current directory)."""
    from pipelines.demo import run_demo

    run_demo(ctx)


from pipelines.qa_cli import calibrate as _calibrate, register_gold as _register_gold  # noqa: E402

cli.add_command(_register_gold)
cli.add_command(_calibrate)

from pipelines.review_cli import pull_review as _pull_review, push_review as _push_review  # noqa: E402
from pipelines.review_cli import serve_webhook as _serve_webhook  # noqa: E402

cli.add_command(_push_review)
cli.add_command(_pull_review)
cli.add_command(_serve_webhook)


from pipelines.release_cli import diff as _diff, lineage as _lineage, push as _push, remote as _remote  # noqa: E402

cli.add_command(_lineage)
cli.add_command(_push)
cli.add_command(_diff)
cli.add_command(_remote)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``labelloop`` command."""
    try:
        rv = cli.main(args=argv, prog_name="labelloop", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1 if isinstance(exc, CliError) else 2)
    except click.exceptions.Abort:
        click.echo("labelloop: aborted", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)

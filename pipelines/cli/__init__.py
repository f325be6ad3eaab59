"""The ``labelloop`` command line. Every stage runs through Dagster against the workspace's
instance, so CLI runs, sensors and ``dagster dev`` share one history.

The group lives here and only here; its commands are in one module per concern
(:mod:`~pipelines.cli.workspace`, :mod:`~pipelines.cli.review`, :mod:`~pipelines.cli.qa`,
:mod:`~pipelines.cli.release`, :mod:`~pipelines.cli.demo`, :mod:`~pipelines.cli.models`), which share the helpers of
:mod:`~pipelines.cli.common` and never import this module.

Exit codes: 0 ok; 1 error (one-line reason as the last line of stderr); 2 usage error;
3 release blocked: a blocking QA gate failed, or nothing is resolved yet (``release`` only; ``demo``
  reports it and exits 0).
"""

from __future__ import annotations

import sys
import traceback

import click

from labelloop.workspace import ConfigError, VersioningError, WorkspaceError
from labelloop.workspace.layout import ENV_WORKSPACE
from pipelines.cli import demo, models, qa, release, review, training, workspace
from pipelines.cli.common import CliError, full_disk_hint
from pipelines.runner import quiet

__all__ = ["cli", "main"]


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
            known = (WorkspaceError, ConfigError, VersioningError, FileNotFoundError, OSError, KeyError)
            msg = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) if isinstance(exc, known) \
                else f"{type(exc).__name__}: {exc}"
            raise CliError(full_disk_hint(msg, (ctx.obj or {}).get("workspace"))) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", type=click.Path(file_okay=False), envvar=ENV_WORKSPACE,
              help="workspace root (default: $LABELLOOP_WORKSPACE, else the current directory; "
                   "for demo: ./labelloop-demo)")
@click.option("--verbose", "-v", is_flag=True, help="show Dagster's logs and full tracebacks")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, verbose: bool) -> None:
    """labelloop: pre-label images, route them to review, import reviews, QA, release with DVC."""
    ctx.ensure_object(dict)
    ctx.obj.update(workspace=workspace, verbose=verbose)
    quiet(verbose)


for _command in (workspace.init, workspace.ingest, workspace.run, review.import_review, review.register_export,
                 release.release, release.rollback, workspace.status, workspace.ui, demo.demo, qa.register_gold,
                 qa.calibrate, qa.levels, review.push_review, review.pull_review, review.serve_webhook, release.lineage,
                 release.push, release.diff, release.remote, models.models,
                 training.train):
    cli.add_command(_command)


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

"""What every `faceswap` command group shares: one-line errors and the `--debug` option.

In its own module so command groups defined in other modules (`cli_faces`) use the same handling
as `cli.main` without importing `cli` (which mounts them: a cycle).
"""

from __future__ import annotations

import errno
import sys
import traceback

import click

from faceswap.errors import FaceswapError


class OneLineErrorGroup(click.Group):
    """Turns exceptions into one-line errors (tracebacks only with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the whole point: never a traceback by default
            if ctx.meta.get("faceswap.debug"):
                traceback.print_exc()
            elif isinstance(exc, FaceswapError):
                click.echo(f"Error: {exc}", err=True)
            elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # A full disk in a stage that does not say so itself: still one clear line.
                click.echo(f"Error: no space left on device{f' writing {exc.filename}' if exc.filename else ''}", err=True)
            else:
                click.echo(f"Error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
            sys.exit(1)


def _set_debug(ctx: click.Context, _param, value: bool):
    if value:
        ctx.meta["faceswap.debug"] = True
    return value


def report(summary, output) -> None:
    """A stage's closing lines: warnings, the summary, then one `Error:` line per failed input
    (and a non-zero exit when there was any)."""
    for warning in summary.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Done: {summary.line()} -> {output}")
    for error in summary.errors:
        click.echo(f"Error: {error}", err=True)
    if summary.errors:
        sys.exit(1)


def debug_option(f):
    """`--debug` on the group and on every command, so it works wherever the user types it."""
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                        help="Show full tracebacks instead of one-line errors.")(f)

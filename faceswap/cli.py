"""The `faceswap` command: one thin click command per stage, no logic here.

Every user-facing failure is a `FaceswapError`, printed as one `Error: ...` line with a non-zero
exit; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback

from pathlib import Path

import click

from faceswap import __version__
from faceswap.errors import FaceswapError
from faceswap.faces.align import COVERAGES, DEFAULT_COVERAGE


class _Group(click.Group):
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
            else:
                click.echo(f"Error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
            sys.exit(1)


def _set_debug(ctx: click.Context, _param, value: bool):
    if value:
        ctx.meta["faceswap.debug"] = True
    return value


def debug_option(f):
    """`--debug` on the group and on every command, so it works wherever the user types it."""
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                        help="Show full tracebacks instead of one-line errors.")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="faceswap")
@debug_option
def main():
    """Make labelled face swaps in video, and detect them."""


# --- extract ---
@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder for the face PNGs and alignments.json.")
@click.option("--size", default=256, show_default=True, help="Side of the aligned face crops in pixels.")
@click.option("--coverage", type=click.Choice(list(COVERAGES)), default=DEFAULT_COVERAGE, show_default=True,
              help="How much of the head a crop shows: tight (brows to chin), face (hairline to chin), head (with hair).")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1), help="Use every Nth frame.")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0), help="First frame index.")
@click.option("--end", default=None, type=click.IntRange(min=1), help="Stop before this frame index (exclusive).")
@click.option("--min-face", default=40, show_default=True, type=click.IntRange(min=1), help="Ignore faces smaller than this (px, longer box side).")
@click.option("--min-score", default=0.9, show_default=True, type=click.FloatRange(0, 1), help="Ignore detections less certain than this.")
@click.option("--max-faces", default=0, show_default=True, type=click.IntRange(min=0), help="Keep at most N faces per frame, largest first (0 = all).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1), help="Frames per detector batch.")
@click.option("--detect-size", default=256, show_default=True, type=click.IntRange(min=48),
              help="Detect on a copy whose longer side is this many px; raise it for small faces in large frames.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--overwrite", is_flag=True, help="Redo sources already extracted into OUTPUT and replace their faces.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def extract(inputs, output, size, coverage, every, start, end, min_face, min_score, max_faces, batch_size, detect_size,
            device, overwrite, quiet):
    """Find, align and save the faces in videos, images and image folders.

    INPUTS may mix video files, image files and folders of images. Running the same command
    again skips finished sources and resumes an interrupted one.
    """
    from faceswap.extract import ExtractConfig, run_extract
    from faceswap.faces.detect import DetectorConfig

    if end is not None and end <= start:
        raise click.BadParameter(f"--end {end} must be greater than --start {start}", param_hint="--end")
    config = ExtractConfig(inputs=list(inputs), output=output, size=size, coverage=coverage, every=every, start=start,
                           end=end, batch_size=batch_size, device=device, overwrite=overwrite,
                           detector=DetectorConfig(detect_size=detect_size, min_face=min_face, min_score=min_score,
                                                   max_faces=max_faces))
    summary = run_extract(config, show_progress=not quiet)
    for warning in summary.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Done: {summary.line()} -> {output}")
    for error in summary.errors:
        click.echo(f"Error: {error}", err=True)
    if summary.errors:
        sys.exit(1)



# --- train ---


# --- convert ---


# --- detect ---

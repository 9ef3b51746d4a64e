"""`faceswap faces`: sort, clean and sheet for a face folder (logic in `faces.tools`).

Mounted on the main command by `faceswap/cli.py`::

    from faceswap.cli_faces import faces
    main.add_command(faces)

The group handles errors as `cli.main` does (`cli_common.OneLineErrorGroup`), so it behaves the
same when invoked on its own (tests) or under `faceswap`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click

from faceswap.cli_common import OneLineErrorGroup, debug_option
from faceswap.errors import FaceswapError
from faceswap.faces import tools

@contextmanager
def _progress(total: int, what: str, quiet: bool) -> Iterator:
    """A rich bar on a terminal (stderr), else nothing; yields `advance(n)`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if quiet or not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task(what, total=total)
        yield lambda n: progress.advance(task, n)


def _descriptor():
    from faceswap.faces.descriptor import load_descriptor

    return load_descriptor()


def _scan(files, quiet: bool, descriptor=None, thumb: int = 0, what: str = "faces"):
    with _progress(len(files), what, quiet) as advance:
        return tools.scan(files, descriptor=descriptor, progress=advance, thumb=thumb)


def _identity_distances(records, descs, ref_desc, refs, quiet: bool) -> str:
    """Fill `records[i].distance` from the reference's centroid (`ref_desc` `(R, 128)`, or None:
    the folder's largest person); returns what the reference was (for the report)."""
    if ref_desc is not None:
        centroid, what = ref_desc.mean(0), f"{len(ref_desc)} reference face(s): " + ", ".join(str(r) for r in refs)
    else:
        centroid, share = tools.majority_centroid(descs, tools.CLUSTER_THRESHOLD)
        what = f"the folder's largest person ({share:.0%} of its faces)"
        if share < 0.5 and not quiet:
            click.echo(f"Warning: the largest person holds only {share:.0%} of the faces; pass --ref to say whose faces to keep", err=True)
    for r, d in zip(records, tools.distances(descs, centroid)):
        r.distance = float(d)
    return what


ref_option = click.option("--ref", "refs", multiple=True, type=click.Path(path_type=Path),
                          help="The person to keep: a face folder, aligned face PNGs or photos with one face (repeatable). "
                               "Default: the folder's largest person.")


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@debug_option
def faces():
    """Sort, clean and look at a face folder from extract (nothing is ever deleted)."""


# --- sort ---
@faces.command("sort")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--by", "key", required=True, type=click.Choice(tools.SORT_KEYS),
              help="identity: nearest the reference first; blur: sharpest first; yaw: turned to the image left "
                   "first; score: most certain detection first; size: largest source face first.")
@ref_option
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="New folder for the sorted faces. Default: FOLDER/sorted_<key>.")
@click.option("--copy", is_flag=True, help="Copy the faces (default: hard links, copies where links fail).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def sort_cmd(folder, key, refs, output, copy, quiet):
    """Write FOLDER's faces in order into a new folder, as rank-prefixed links or copies
    (00001_<name>.png) plus order.csv. FOLDER itself is untouched: its names, and alignments.json,
    stay valid."""
    files = tools.face_folder(folder)
    output = output or folder / f"sorted_{key}"
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FaceswapError(f"{output} already exists; remove it or pick another --output")
    descriptor = _descriptor() if key == "identity" else None
    if refs and key != "identity":
        click.echo("Warning: --ref is only used by --by identity", err=True)
    ref_desc = tools.reference_descriptors(refs, descriptor) if refs and descriptor else None  # a bad --ref fails first
    records, descs, _ = _scan(files, quiet, descriptor)
    if key == "identity":
        what = _identity_distances(records, descs, ref_desc, refs, quiet)
        click.echo(f"Reference: {what}")
    order, meaning = tools.sort_values(records, key)
    value_of = {"identity": lambda r: r.distance, "blur": lambda r: r.sharpness, "yaw": lambda r: r.yaw,
                "score": lambda r: r.score, "size": lambda r: r.size}[key]
    done = tools.write_sorted(folder, records, order, key, value_of, output, link=not copy)
    unknown = sum(1 for r in records if math.isnan(value_of(r)))
    first, last = records[order[0]], records[order[-1]]
    click.echo(f"Sorted by {meaning}: first {first.name} ({value_of(first):.4g}), last {last.name} ({value_of(last):.4g})"
               + (f"; {unknown} without a value at the end" if unknown else ""))
    click.echo(f"Done: {len(order)} faces ({done['link']} linked, {done['copy']} copied) -> {output}")


# --- clean ---
@faces.command("clean")
@click.argument("folder", type=click.Path(path_type=Path))
@ref_option
@click.option("--skip", multiple=True, type=click.Choice(tools.CHECKS), help="Leave out a check (repeatable).")
@click.option("--max-distance", type=click.FloatRange(0, 2), default=tools.Thresholds.max_distance, show_default=True,
              help="identity: descriptor distance to the reference above this is another person.")
@click.option("--blur-ratio", type=click.FloatRange(0, 1), default=tools.Thresholds.blur_ratio, show_default=True,
              help="blur: sharpness below this x the folder's median.")
@click.option("--max-misfit", type=click.FloatRange(0), default=tools.Thresholds.max_misfit, show_default=True,
              help="alignment: RMS landmark distance from the template (interocular units) above this.")
@click.option("--max-yaw", type=click.FloatRange(0, 90), default=tools.Thresholds.max_yaw, show_default=True,
              help="alignment: |yaw| in degrees above this.")
@click.option("--tiny-ratio", type=click.FloatRange(0, 1), default=tools.Thresholds.tiny_ratio, show_default=True,
              help="tiny: source face size below this x the folder's median.")
@click.option("--max-magnification", type=click.FloatRange(0), default=tools.Thresholds.max_magnification, show_default=True,
              help="tiny: crop upscaled its source face more than this.")
@click.option("--dry-run", is_flag=True, help="Only list what would move.")
@click.option("--undo", is_flag=True, help="Move every face an earlier clean moved back into FOLDER.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def clean_cmd(folder, refs, skip, max_distance, blur_ratio, max_misfit, max_yaw, tiny_ratio, max_magnification, dry_run,
              undo, quiet):
    """Move outliers (other people, blurred, badly aligned, tiny) into FOLDER/_outliers/, with
    clean_report.json and .csv saying why each moved. --undo moves them all back."""
    from faceswap.lock import OutputLock

    if undo:
        if not folder.is_dir():
            raise FaceswapError(f"face folder {folder} does not exist")
        with OutputLock(folder, "faces clean"):
            n = tools.undo_clean(folder)
        click.echo(f"Done: {n} faces moved back -> {folder}")
        return
    files = tools.face_folder(folder)
    checks = [c for c in tools.CHECKS if c not in skip]
    use_identity = "identity" in checks
    if not checks:
        raise FaceswapError("every check is skipped: nothing to do")
    if refs and not use_identity:
        raise FaceswapError("--ref is for the identity check, which --skip identity leaves out")
    descriptor = None
    if use_identity:
        from faceswap.faces.descriptor import DescriptorMissing

        try:
            descriptor = _descriptor()
        except DescriptorMissing as exc:
            raise FaceswapError(f"{exc}; or run with --skip identity") from exc
    ref_desc = tools.reference_descriptors(refs, descriptor) if refs else None  # a bad --ref fails before the scan
    thresholds = tools.Thresholds(max_distance=max_distance, blur_ratio=blur_ratio, max_misfit=max_misfit, max_yaw=max_yaw,
                                  tiny_ratio=tiny_ratio, max_magnification=max_magnification)
    with OutputLock(folder, "faces clean"):
        records, descs, _ = _scan(files, quiet, descriptor)
        reference = _identity_distances(records, descs, ref_desc, refs, quiet) if use_identity else None
        found = tools.outliers(records, thresholds, checks)
        settings = {"checks": checks, "thresholds": {k: getattr(thresholds, k) for k in thresholds.__dataclass_fields__},
                    "reference": reference, "faces_scanned": len(records)}
        result = tools.move_outliers(folder, records, found, settings, dry_run=dry_run)
    for name in result.moved:
        click.echo(f"{'would move' if dry_run else 'moved'} {name}: {'; '.join(found[name])}")
    reasons = ", ".join(f"{v} {k}" for k, v in sorted(result.by_reason.items())) or "none"
    where = folder / tools.OUTLIERS_DIR
    click.echo(f"Done: {len(result.moved)} of {len(records)} faces {'would move' if dry_run else 'moved'} ({reasons}), "
               f"{result.kept} kept" + ("" if dry_run or not result.moved else f" -> {where} (undo: faceswap faces clean {folder} --undo)"))


# --- sheet ---
@faces.command("sheet")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The contact sheet, a .png outside FOLDER.")
@click.option("--group", "group_by", type=click.Choice(["auto", "person", "track", "source", "identity", "none"]), default="auto",
              show_default=True, help="auto: person or track when the faces say so, else source video; identity: cluster "
                                      "by face descriptor (needs the people extra).")
@click.option("--thumb", type=click.IntRange(32, 512), default=96, show_default=True, help="Thumbnail side in px.")
@click.option("--columns", type=click.IntRange(1, 100), default=12, show_default=True)
@click.option("--max-per-group", type=click.IntRange(1), default=48, show_default=True,
              help="Show at most this many faces per group, evenly spaced through it.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def sheet_cmd(folder, output, group_by, thumb, columns, max_per_group, overwrite, quiet):
    """A contact sheet of FOLDER: thumbnails and counts per person, track or source."""
    files = tools.face_folder(folder)
    tools.check_sheet_output(folder, output)
    if output.exists() and not overwrite:
        raise FaceswapError(f"{output} already exists; use --overwrite to replace it")
    if group_by == "identity":
        records, descs, thumbs = _scan(files, quiet, _descriptor(), thumb=thumb)
        groups = tools.group_faces(records, group_by, tools.cluster_people(descs, tools.CLUSTER_THRESHOLD))
        image_of = lambda i: thumbs[i]  # noqa: E731
    else:  # grouped by metadata: only the faces shown are decoded
        with _progress(len(files), "faces", quiet) as advance:
            records = tools.scan_meta(files, advance)
        groups = tools.group_faces(records, group_by)
        image_of = lambda i: tools.thumbnail(files[i], thumb)  # noqa: E731
    parts = []
    for title, idx in groups:
        shown = tools.pick_evenly(idx, max_per_group)
        parts.append((title, len(idx), [image_of(i) for i in shown], [tools.thumb_label(records[i]) for i in shown]))
    sources = {r.source for r in records if r.source}
    title = (f"{folder.name}: {len(records)} faces, {len(groups)} group{'s' if len(groups) != 1 else ''}"
             + (f", {len(sources)} source{'s' if len(sources) != 1 else ''}" if sources else ""))
    image = tools.render_sheet(title, parts, columns, thumb)
    tools.write_png(output, image)
    for title_g, idx in groups:
        click.echo(f"{title_g}: {len(idx)} faces")
    click.echo(f"Done: {len(records)} faces in {len(groups)} groups, {image.shape[1]}x{image.shape[0]} px -> {output}")

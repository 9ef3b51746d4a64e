"""The `faceswap` command: one thin click command per stage, no logic here.

Every user-facing failure is a `FaceswapError`, printed as one `Error: ...` line with a non-zero
exit; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys

from pathlib import Path

import click

from faceswap import __version__
from faceswap.cli_common import OneLineErrorGroup, debug_option, report as _report
from faceswap.errors import FaceswapError
from faceswap.faces.coverage import COVERAGES, DEFAULT_COVERAGE
from faceswap.choices import MASK_SOURCES, PERSON_DISTANCE

# Frames are decoded a batch at a time into one array: 1024 frames of 1080p are 6 GiB; a batch of
# 100000 asked numpy for terabytes (a traceback from the decoder thread).
MAX_BATCH = 1024
MAX_DETECT_SIZE = 4096


@click.group(cls=OneLineErrorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="faceswap")
@debug_option
def main():
    """Make labelled face swaps in video, and detect them."""


# --- extract ---
@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Folder for the face PNGs and alignments.json.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(32, 4096), help="Side of the aligned face crops in pixels.")
@click.option("--coverage", type=click.Choice(list(COVERAGES)), default=DEFAULT_COVERAGE, show_default=True,
              help="How much of the head a crop shows: tight (brows to chin), face (hairline to chin), head (with hair).")
@click.option("--every", default=1, show_default=True, type=click.IntRange(min=1), help="Use every Nth frame.")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0), help="First frame index.")
@click.option("--end", default=None, type=click.IntRange(min=1), help="Stop before this frame index (exclusive).")
@click.option("--min-face", default=40, show_default=True, type=click.IntRange(min=1), help="Ignore faces smaller than this (px, longer box side).")
@click.option("--min-score", default=0.9, show_default=True, type=click.FloatRange(0, 1), help="Ignore detections less certain than this.")
@click.option("--max-faces", default=0, show_default=True, type=click.IntRange(min=0), help="Keep at most N faces per frame, largest first (0 = all).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, MAX_BATCH), help="Frames per detector batch.")
@click.option("--detect-size", default=256, show_default=True, type=click.IntRange(48, MAX_DETECT_SIZE),
              help="Detect on a copy whose longer side is this many px; raise it for small faces in large frames.")
@click.option("--redetect-every", default=8, show_default=True, type=click.IntRange(min=1),
              help="In videos, look for faces of every size every N frames; in between, skip the search for "
                   "faces much smaller than those in view (1.4-1.6x less detection work; 1 = every frame).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--overwrite", is_flag=True, help="Redo sources already extracted into OUTPUT and replace their faces.")
@click.option("--person", "people", multiple=True, type=click.Path(path_type=Path),
              help="Keep only this person's faces: photos of one face or a face folder (repeat for several people). "
                   "Needs faceswap[people].")
@click.option("--split-people", is_flag=True, help="Group the faces into people and link each person's into OUTPUT/person_<n>/. "
                                                   "Needs faceswap[people].")
@click.option("--person-distance", default=PERSON_DISTANCE, show_default=True, type=click.FloatRange(0.1, 1.0),
              help="Face-descriptor distance within which a face counts as the same person.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def extract(inputs, output, size, coverage, every, start, end, min_face, min_score, max_faces, batch_size, detect_size,
            redetect_every, device, overwrite, people, split_people, person_distance, quiet):
    """Find, align and save the faces in videos, images and image folders.

    INPUTS may mix video files, image files and folders of images. Running the same command
    again skips finished sources and resumes an interrupted one.
    """
    from faceswap.extract import ExtractConfig, run_extract
    from faceswap.faces.detect import DetectorConfig

    if end is not None and end <= start:
        raise click.BadParameter(f"--end {end} must be greater than --start {start}", param_hint="--end")
    config = ExtractConfig(inputs=list(inputs), output=output, size=size, coverage=coverage, every=every, start=start,
                           end=end, batch_size=batch_size, device=device, overwrite=overwrite, people=list(people),
                           split_people=split_people, person_distance=person_distance,
                           detector=DetectorConfig(detect_size=detect_size, min_face=min_face, min_score=min_score,
                                                   max_faces=max_faces, redetect_every=redetect_every))
    summary = run_extract(config, show_progress=not quiet)
    _report(summary, output)



# --- train ---


@main.command()
@click.option("--a", "faces_a", required=True, type=click.Path(path_type=Path), help="Folder of faces of identity A (from extract, or plain face images).")
@click.option("--b", "faces_b", required=True, type=click.Path(path_type=Path), help="Folder of faces of identity B.")
@click.option("-m", "--model-dir", type=click.Path(path_type=Path), default=None,
              help="Model dir to create or resume. Default: models/<preset>_<A folder>_<B folder>.")
@click.option("--preset", type=click.Choice(["lite", "original", "hq", "hd"]), default="lite", show_default=True,
              help="lite: CPU-first 64 px; original: classic deepfakes 64 px; hq: 128 px for GPUs; hd: 256 px for GPUs.")
@click.option("--learn-mask", is_flag=True, help="Also learn a face mask channel (trained on the template face mask).")
@click.option("--refine", type=click.Choice(["auto", "0", "2", "4"]), default="auto", show_default=True,
              help="Identity refiners that turn the decoder's output into a face this many times larger, trained "
                   "beside it on the faces' own pixels (auto: the largest the faces' resolution allows, up to 4; 0: none).")
@click.option("--init", "init", type=click.Path(path_type=Path), default=None,
              help="Start a new model from this earlier model: its encoder, and the decoder of any identity whose faces are the same.")
@click.option("--batch-size", default=16, show_default=True, help="Faces per identity per iteration.")
@click.option("--iterations", type=int, default=None, help="Total iterations to reach (a resumed run continues the count).")
@click.option("--minutes", type=float, default=None, help="Stop (and save) after this many minutes of this run.")
@click.option("--save-every", default=500, show_default=True, help="Save weights and training state every N iterations.")
@click.option("--preview-every", default=500, show_default=True, help="Write previews/<iteration>.png every N iterations.")
@click.option("--log-every", default=100, show_default=True, help="Validation loss and a log.csv row every N iterations.")
@click.option("--loss", type=click.Choice(["l1", "mse", "ssim", "l1+ssim", "mse+ssim"]), default="ssim", show_default=True,
              help="Reconstruction loss, weighted by the template face mask (ssim measured best on held-out faces).")
@click.option("--eye-mouth-weight", default=1.0, show_default=True, help="Extra loss weight on the eyes and mouth of the template.")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default: the preset's).")
@click.option("--warp", type=click.Choice(["grid", "tps", "none"]), default="grid", show_default=True, help="Random warp of the inputs.")
@click.option("--val-fraction", default=0.1, show_default=True, help="Last fraction of each folder held out for preview and validation.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: bf16 autocast where the CPU/GPU does bf16 fast, fp16 on older GPUs, else fp32.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: the CPUs that other jobs leave free, re-checked as it runs).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (slower start; helps on some GPUs).")
@click.option("--max-memory", default=4.0, show_default=True, help="GiB the face caches of A and B may take together.")
@click.option("--overwrite", is_flag=True, help="Start a new model in --model-dir even if it holds other files or a model (replaced).")
@debug_option
def train(faces_a, faces_b, model_dir, preset, learn_mask, refine, init, batch_size, iterations, minutes, save_every, preview_every, log_every,
          loss, eye_mouth_weight, lr, warp, val_fraction, seed, device, precision, threads, compile_, max_memory, overwrite):
    """Train (or resume) the A<->B swap model. Ctrl-C stops cleanly with a save; run it again to resume.

    \b
    Several GPUs (DistributedDataParallel, one process per GPU):
      torchrun --standalone --nproc_per_node 2 -m faceswap train --a A --b B -m models/x --device cuda
    """
    from faceswap.train import TrainConfig
    from faceswap.train import train as run_training
    from faceswap.train.augment import AugmentConfig

    if model_dir is None:
        model_dir = Path("models") / f"{preset}_{faces_a.resolve().name}_{faces_b.resolve().name}"
    run_training(TrainConfig(
        faces_a=faces_a, faces_b=faces_b, model_dir=model_dir, preset=preset, learn_mask=learn_mask,
        refine=None if refine == "auto" else int(refine), init=init, batch_size=batch_size,
        iterations=iterations, minutes=minutes, save_every=save_every, preview_every=preview_every, log_every=log_every,
        loss=loss, eye_mouth_weight=eye_mouth_weight, lr=lr, val_fraction=val_fraction, seed=seed, device=device,
        precision=precision, threads=threads, compile=compile_, max_memory_gb=max_memory, overwrite=overwrite,
        augment=AugmentConfig(warp=warp)))


@main.command("train-occlusion")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--a", "faces_a", type=click.Path(path_type=Path), default=None, help="Faces of A (default: the folder the model was trained on).")
@click.option("--b", "faces_b", type=click.Path(path_type=Path), default=None, help="Faces of B (default: the folder the model was trained on).")
@click.option("--minutes", type=float, default=15.0, show_default=True, help="Stop (and save) after this many minutes.")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Total iterations to reach instead (a continued net keeps its count).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--save-every", default=250, show_default=True, type=click.IntRange(min=1), help="Validate and save every N iterations.")
@click.option("--seed", default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: what other jobs leave free).")
@click.option("--overwrite", is_flag=True, help="Start a new occlusion net instead of continuing the saved one.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def train_occlusion(model_dir, faces_a, faces_b, minutes, iterations, batch_size, save_every, seed, device, threads, overwrite, quiet):
    """Train MODEL_DIR's occlusion net: what passes in front of the face (hands, objects, hair,
    glasses frames) stays in front of the swap (convert --mask occlusion).

    Self-supervised: synthetic occluders are pasted over the model's own training faces, no labels
    needed. Ctrl-C stops with a save; running again continues the saved net.
    """
    from rich.console import Console

    from faceswap.train.occlusion import OcclusionTrainConfig, train_occlusion as run

    console = Console(stderr=True)
    summary = run(OcclusionTrainConfig(model_dir=model_dir, faces_a=faces_a, faces_b=faces_b, minutes=None if iterations else minutes,
                                       iterations=iterations, batch_size=batch_size, save_every=save_every, seed=seed,
                                       device=device, threads=threads, overwrite=overwrite), console, show_progress=not quiet)
    console.print(f"occlusion net saved in {model_dir}: {summary.line()}")



# --- convert ---
@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Trained model dir (from faceswap train).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output video (.mp4/.mkv/.mov) for a video INPUT, a folder (PNG images) for an image folder.")
@click.option("--alignments", type=click.Path(path_type=Path), default=None,
              help="alignments.json from faceswap extract of this video: reuse its faces instead of detecting again.")
@click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True,
              help="a2b: the faces in INPUT are A's and become B; b2a the other way.")
@click.option("--mask", type=click.Choice(list(MASK_SOURCES)), default="auto", show_default=True,
              help="Paste mask: landmarks = the template face ellipse narrowed on the far side of a turned head; "
                   "template = the plain ellipse; learned = the model's own; occlusion = landmarks minus what the "
                   "model's occlusion net (faceswap train-occlusion) sees in front of the face; "
                   "auto = learned when the model has one, else landmarks.")
@click.option("--mask-erode", default=0.0, show_default=True, type=click.FloatRange(-50, 50),
              help="Shrink (+) or grow (-) the mask, percent of the face crop.")
@click.option("--mask-blur", default=0.0, show_default=True, type=click.FloatRange(0, 50),
              help="Extra feathering of the mask edge, percent of the face crop.")
@click.option("--color", type=click.Choice(["none", "mean-std", "hist", "shading"]), default=None,
              help="Colour matching of the swapped face to the original inside the mask [default: mean-std].")
@click.option("--blend", type=click.Choice(["alpha", "poisson"]), default="alpha", show_default=True,
              help="alpha: feathered mask; poisson: seamless clone, then the feathered mask.")
@click.option("--smooth/--no-smooth", default=True, show_default=True, help="Smooth face positions across frames (less jitter).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="Paste the model's refined (sharper, larger) faces when it has refiners; --no-refine: the decoder's own.")
@click.option("--detail", default=0.5, show_default=True, type=click.FloatRange(0, 2),
              help="Add the original face's fine detail (skin grain, lashes, the camera's noise: the band finer than the "
                   "model renders) to the swap; 0 = the model's face alone.")
@click.option("--smooth-window", default=6, show_default=True, type=click.IntRange(1, 30),
              help="Frames each side the smoothing looks at.")
@click.option("--crf", default=18, show_default=True, type=click.IntRange(0, 51),
              help="H.264 quality (lower = better). 0 = lossless RGB H.264 (exact frames; not every player shows it).")
@click.option("--x264-preset", default="medium", show_default=True,
              type=click.Choice(["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]),
              help="Encoder speed/size trade-off.")
@click.option("--start", default=0, show_default=True, type=click.IntRange(min=0), help="First frame index.")
@click.option("--end", default=None, type=click.IntRange(min=1), help="Stop before this frame index (exclusive).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, MAX_BATCH), help="Frames per model batch.")
@click.option("--detect-size", default=256, show_default=True, type=click.IntRange(48, MAX_DETECT_SIZE),
              help="When detecting (no alignments): longer side (px) of the copy MTCNN sees.")
@click.option("--min-face", default=40, show_default=True, type=click.IntRange(min=1), help="When detecting: ignore smaller faces (px).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Model arithmetic; auto = bf16 where the CPU/GPU does it natively (faster), else fp32.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: the CPUs that other jobs leave free when it starts).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--person", "people", multiple=True, type=click.Path(path_type=Path),
              help="Swap only this person's faces: photos of one face or a face folder (repeat for several people); "
                   "every other face stays as it was. Needs faceswap[people].")
@click.option("--person-distance", default=PERSON_DISTANCE, show_default=True, type=click.FloatRange(0.1, 1.0),
              help="Face-descriptor distance within which a face counts as the --person.")
@click.option("--max-faces", default=0, show_default=True, type=click.IntRange(min=0),
              help="Swap at most the N largest faces of a frame (0 = all).")
@click.option("--no-credentials", is_flag=True,
              help="Skip the metadata label and Content Credentials (warns); the invisible watermark always stays.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def convert(input_path, model_dir, output, alignments, direction, mask, mask_erode, mask_blur, color, blend, smooth, refine,
            detail, smooth_window, crf, x264_preset, start, end, batch_size, detect_size, min_face, device, precision, threads, overwrite,
            people, person_distance, max_faces, no_credentials, quiet):
    """Swap the faces of a video (or an image folder) with a trained model; the output is labelled synthetic.

    The video keeps its frame count, fps, size and audio; frames without a face pass through unchanged.
    """
    from faceswap.convert import ConvertConfig, run_convert
    from faceswap.convert.color import DEFAULT_COLOR
    from faceswap.faces.detect import DetectorConfig

    if end is not None and end <= start:
        raise click.BadParameter(f"--end {end} must be greater than --start {start}", param_hint="--end")
    config = ConvertConfig(input=input_path, output=output, model_dir=model_dir, alignments=alignments, direction=direction,
                           mask=mask, mask_erode=mask_erode, mask_blur=mask_blur, color=color or DEFAULT_COLOR, blend=blend,
                           smooth=smooth, refine=refine, detail=detail, smooth_window=smooth_window, crf=crf, x264_preset=x264_preset, start=start, end=end,
                           batch_size=batch_size, device=device, precision=precision, threads=threads, overwrite=overwrite, no_credentials=no_credentials,
                           people=list(people), person_distance=person_distance,
                           detector=DetectorConfig(detect_size=detect_size, min_face=min_face, max_faces=max_faces))
    summary = run_convert(config, show_progress=not quiet)
    _report(summary, output)



# --- inspect ---
@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON document with a report per file (for scripts).")
@click.option("--frames", "max_frames", default=240, show_default=True, type=click.IntRange(min=1),
              help="Frames of each video the watermark decoder reads (from the start).")
@click.option("--no-watermark", is_flag=True, help="Skip the watermark decoder (metadata and C2PA only; fast).")
@click.option("--trust", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extra PEM trust anchor for Content Credentials (repeatable); the local faceswap root is always trusted.")
@debug_option
def inspect(files, as_json, max_frames, no_watermark, trust):
    """Report the provenance labels of videos and images: metadata, Content Credentials (C2PA), watermark.

    Exit code: 0 when any FILE carries a synthetic label, 1 when none does, 2 when none does and a
    FILE could not be read.
    """
    import json

    from faceswap.provenance.inspect import InspectConfig, format_report, inspect_file

    config = InspectConfig(watermark=not no_watermark, max_frames=max_frames, trust=tuple(trust))
    reports = [inspect_file(f, config) for f in files]
    if as_json:
        click.echo(json.dumps({"files": reports, "synthetic": any(r["synthetic"] for r in reports)}, indent=2, default=str))
    else:
        for r in reports:
            click.echo(format_report(r))
    for r in reports:  # the report says it too; stderr is where scripts and people look for failures
        if r["error"]:
            click.echo(f"Error: {r['error']}", err=True)
    if any(r["synthetic"] for r in reports):
        sys.exit(0)
    sys.exit(2 if any(r["error"] for r in reports) else 1)


# --- detect ---
class _DetectGroup(click.Group):
    """`faceswap detect INPUT...` scores; `train` and `eval` are subcommands. Click cannot mix a
    variadic argument with subcommands, so a first token that is no subcommand name (an input, or an
    option of the scoring command) is routed to the hidden `score` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--debug"):
            args = ["score", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("faceswap detect", "INPUT... -d DETDIR [-m MODELDIR] [--json] [--fpr F] [options]")
        formatter.write_usage("faceswap detect train", "--real INPUT [--real ...] -o DETDIR [-m MODELDIR] [--fake INPUT ...]", "   or: ")
        formatter.write_usage("faceswap detect eval", "--real INPUT ... --fake INPUT ... -d DETDIR -o REPORTDIR [-m MODELDIR]", "   or: ")


def _detect_errors(fn):
    """detect's exit codes follow `inspect`: a `FaceswapError` is one `Error:` line and exit 2."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FaceswapError as exc:
            if click.get_current_context().meta.get("faceswap.debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
    return wrapper


def _face_source_options(f):
    """Options shared by the three detect commands: how faces are found in the inputs."""
    for opt in reversed([
        click.option("--every", default=1, show_default=True, type=click.IntRange(min=1), help="Use every Nth frame of videos (of face folders: by the frame each face came from)."),
        click.option("--max-frames", default=None, type=click.IntRange(min=1), help="Read at most N frames of each video."),
        click.option("--aligned", is_flag=True, help="Take images without faceswap metadata as aligned face crops too."),
        click.option("--detect-size", default=256, show_default=True, type=click.IntRange(48, MAX_DETECT_SIZE), help="Face detection size (see extract)."),
        click.option("--min-face", default=40, show_default=True, type=click.IntRange(min=1), help="Ignore smaller faces (px)."),
        click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1, MAX_BATCH), help="Frames per batch."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: the CPUs that other jobs leave free, re-checked during detect train)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]):
        f = opt(f)
    return f


@main.group(cls=_DetectGroup)
@debug_option
def detect():
    """Detect face swaps in videos, images and face folders, and train / evaluate the detector.

    \b
    faceswap detect INPUT...      score faces; a verdict per video/image (exit 0: something
                                  flagged or watermarked, 1: nothing flagged, 2: errors)
    faceswap detect train ...     fit a detector on real faces (+ a swap model or known swaps)
    faceswap detect eval ...      ROC-AUC, EER, TPR@1%FPR of a detector on real vs fake inputs

    INPUT may mix videos, images and face folders (from extract). Run `faceswap detect score -h`
    for the scoring options. A file named like a subcommand (train, eval) needs a path: ./train.
    """


@detect.command("score")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-d", "--detector-dir", type=click.Path(path_type=Path), default=None, help="Detector dir (from faceswap detect train).")
@click.option("-m", "--model-dir", type=click.Path(path_type=Path), default=None,
              help="The swap model the detector was calibrated with (needed when it uses S1).")
@click.option("--json", "as_json", is_flag=True, help="One JSON report on stdout (per face and per source).")
@click.option("--fpr", "--threshold-fpr", "fpr", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Flag at this false-positive rate per real face [default: the detector's calibrated one].")
@click.option("--top-k", default=5, show_default=True, type=click.IntRange(min=1), help="Report the mean of each source's k highest logits.")
@click.option("--no-watermark", is_flag=True, help="Skip the provenance watermark check.")
@_face_source_options
@debug_option
@_detect_errors
def detect_score(inputs, detector_dir, model_dir, as_json, fpr, top_k, no_watermark, every, max_frames, aligned, detect_size, min_face,
                 batch_size, device, threads, quiet):
    """Score the faces of videos, images and face folders; print a verdict per video/image."""
    import json

    from rich.console import Console

    from faceswap.detect import DetectConfig, print_report, run_detect
    from faceswap.faces.detect import DetectorConfig

    if detector_dir is None:
        raise FaceswapError("no detector: pass -d DETDIR (make one with `faceswap detect train --real VIDEO_OR_FACES -o DETDIR "
                            "[-m MODELDIR]`)")
    report = run_detect(DetectConfig(inputs=list(inputs), detector_dir=detector_dir, model_dir=model_dir, fpr=fpr, top_k=top_k,
                                     watermark=not no_watermark, every=every, max_frames=max_frames, batch_size=batch_size,
                                     aligned=aligned, device=device, threads=threads,
                                     detector=DetectorConfig(detect_size=detect_size, min_face=min_face)),
                        show_progress=not quiet and not as_json)
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        print_report(report, Console())
    for error in report.errors:
        click.echo(f"Error: {error}", err=True)
    sys.exit(0 if report.flagged else 2 if report.errors else 1)


@detect.command("train")
@click.option("--real", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Real faces: videos, images or face folders (repeatable). Split per source by time.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Detector dir to write.")
@click.option("-m", "--model-dir", type=click.Path(path_type=Path), default=None,
              help="Swap model to detect (adds S1, reported per face, not fused; without --fake, its own swaps of held-out faces fit the fusion).")
@click.option("--fake", multiple=True, type=click.Path(path_type=Path), help="Known swaps to fit the fusion (repeatable).")
@click.option("--holdout", default=0.3, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Last fraction of each real source held out: half fits the fusion, half calibrates the threshold.")
@click.option("--fpr", default=0.01, show_default=True, type=click.FloatRange(0, 0.5, min_open=True), help="False-positive rate per real face.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=32), help="Face crop side the detector scores (multiple of 16).")
@click.option("--iterations", default=600, show_default=True, type=click.IntRange(min=1), help="Training iterations of the one-class autoencoder.")
@click.option("--blend-iterations", default=None, type=click.IntRange(min=1),
              help="Training iterations of the blend net (S4: learns pasted faces made from the real ones)  [default: 600]")
@click.option("--seed", default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace a detector already in OUTPUT.")
@_face_source_options
@debug_option
@_detect_errors
def detect_train(real, output, model_dir, fake, holdout, fpr, size, iterations, blend_iterations, seed, overwrite, every, max_frames, aligned, detect_size,
                 min_face, batch_size, device, threads, quiet):
    """Fit a detector: S2 and S3 on real faces, the fusion on held-out real faces and known swaps."""
    from faceswap.detect import DetectTrainConfig, run_detect_train
    from faceswap.detect.blend import BlendConfig
    from faceswap.detect.oneclass import OneClassConfig
    from faceswap.faces.detect import DetectorConfig
    summary = run_detect_train(DetectTrainConfig(
        real=list(real), output=output, model_dir=model_dir, fake=list(fake), holdout=holdout, fpr=fpr, size=size,
        oneclass=OneClassConfig(size=min(OneClassConfig.size, size), iterations=iterations, seed=seed),
        blend=BlendConfig(seed=seed, **({"iterations": blend_iterations} if blend_iterations else {})), every=every,
        max_frames=max_frames, batch_size=batch_size, aligned=aligned, device=device, threads=threads, overwrite=overwrite,
        detector=DetectorConfig(detect_size=detect_size, min_face=min_face)), show_progress=not quiet)
    for warning in summary.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Done: {summary.line()} -> {output}")
    click.echo(summary.calibration_line())


@detect.command("eval")
@click.option("--real", multiple=True, required=True, type=click.Path(path_type=Path), help="Real inputs (repeatable).")
@click.option("--fake", multiple=True, required=True, type=click.Path(path_type=Path), help="Swapped inputs (repeatable).")
@click.option("-d", "--detector-dir", required=True, type=click.Path(path_type=Path), help="Detector dir (from faceswap detect train).")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Report folder: eval.json, roc.png, histograms.png.")
@click.option("-m", "--model-dir", type=click.Path(path_type=Path), default=None, help="The detector's swap model (when it uses S1).")
@click.option("--target-fpr", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Report the TPR at this false-positive rate.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier report in OUTPUT.")
@_face_source_options
@debug_option
@_detect_errors
def detect_eval(real, fake, detector_dir, output, model_dir, target_fpr, as_json, overwrite, every, max_frames, aligned, detect_size,
                min_face, batch_size, device, threads, quiet):
    """ROC-AUC, EER and TPR at a fixed FPR of a detector, per face and per video; ROC and histogram PNGs."""
    import json

    from faceswap.detect import EvalConfig, run_eval
    from faceswap.faces.detect import DetectorConfig

    report = run_eval(EvalConfig(real=list(real), fake=list(fake), detector_dir=detector_dir, output=output, model_dir=model_dir,
                                 target_fpr=target_fpr, every=every, max_frames=max_frames, batch_size=batch_size, aligned=aligned,
                                 device=device, threads=threads, overwrite=overwrite,
                                 detector=DetectorConfig(detect_size=detect_size, min_face=min_face)),
                      show_progress=not quiet and not as_json)
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else f"Done: {report.line()} -> {output}")



# --- demo ---
@main.command()
@click.option("-o", "--output", default="demo_out", show_default=True, type=click.Path(path_type=Path),
              help="Folder for everything the demo makes.")
@click.option("--minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Minutes of model training in total (a re-run trains only what is missing)  [default: 5]")
@click.option("--quick", is_flag=True, help="Reduced run for CI and smoke tests (~2 min): few training iterations, the swap is not recognisable yet.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--overwrite", is_flag=True, help="Start afresh, replacing what an earlier demo wrote into OUTPUT.")
@debug_option
def demo(output, minutes, quick, device, overwrite):
    """Run the whole toolkit on the two bundled synthetic identities (no GPU, no videos of your own needed).

    Extracts both sample clips, trains a lite model, trains the detector on the real sample faces,
    converts sample A into B with its audio, runs detect on the swap and on the original, inspects
    their labels, and prints where the swapped video, preview grid, loss plot and reports are.
    Running it again reuses what is done.
    """
    from faceswap.demo import DEFAULT_MINUTES, DemoConfig, run_demo

    run_demo(DemoConfig(output=output, minutes=minutes or DEFAULT_MINUTES, quick=quick, device=device, overwrite=overwrite))


# --- faces (folder tools) ---
from faceswap.cli_faces import faces  # noqa: E402  (after main: the group is defined in its own module)

main.add_command(faces)

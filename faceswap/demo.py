"""`faceswap demo`: the whole toolkit on the two bundled synthetic identities, in minutes, on a CPU.

Stages, each through its own `run_*` function (so each shows its own progress) into one folder:

    faces_a/, faces_b/        extract both sample clips
    model/                    train a `lite` model, time-boxed (preview.png, loss.png, log.csv)
    detector/                 train the swap detector on the real (un-swapped) sample faces
    identity_a_as_b.mp4       convert sample A into B, with its audio, labelled synthetic
    detect_report.json        detect on the swapped video and on the original sample A
    inspect.json              inspect the labels of both
    demo.json                 marks the folder as the demo's (and which mode made it)

Running it again reuses what is done: extract skips finished clips, training continues only up to
the total `minutes` (so a larger `--minutes` trains on), and the swapped video is remade only when
the model changed. `overwrite` starts afresh, but only in a folder an earlier demo made.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from faceswap import __version__
from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError

SAMPLE_A, SAMPLE_B = "identity_a.mp4", "identity_b.mp4"
DEFAULT_OUTPUT = Path("demo_out")
# Training budget: with the other stages (~2 min on an idle 2-core CPU) the demo stays under 10 min.
DEFAULT_MINUTES = 5.0
MARKER = "demo.json"
SWAPPED_NAME = "identity_a_as_b.mp4"
DETECT_REPORT = "detect_report.json"
INSPECT_REPORT = "inspect.json"
OUTPUT_NAMES = ("faces_a", "faces_b", "model", "detector", SWAPPED_NAME, DETECT_REPORT, INSPECT_REPORT, MARKER)
QUICK_ITERATIONS = 40
QUICK_B_EVERY = 3
# The detector's one-class autoencoder and blend net: ~0.2 s CPU an iteration each on one core (their
# defaults would take minutes); on the samples' simple faces 300 already separate the swaps (measured ROC-AUC 1.0).
DETECTOR_ITERATIONS, QUICK_DETECTOR_ITERATIONS = 300, 50
# 40 % of each clip's faces held out: 120 calibrate the 1 % FPR threshold, which needs >= 100.
DETECTOR_HOLDOUT = 0.4
ITERATIONS_PER_MINUTE = 300  # lite, batch 16 + 16, on an idle 2-core CPU (bench/train.py: 169 EG/s)


@dataclass
class DemoConfig:
    """What `faceswap demo` can be told.

    minutes: total training time of the model (a re-run trains only what is missing).
    quick: a reduced run for CI and smoke tests: every 3rd frame of B, `QUICK_ITERATIONS` training
        iterations, a shorter detector training. Every stage still runs; the swap is not
        recognisable yet.
    samples: folder holding identity_a.mp4 and identity_b.mp4 (None: the repository's samples/).
    """

    output: Path = DEFAULT_OUTPUT
    minutes: float = DEFAULT_MINUTES
    quick: bool = False
    device: str = "auto"
    overwrite: bool = False
    samples: Path | None = None


@dataclass
class DemoResult:
    """Where everything went and what detect and inspect said. `verdicts`: file name -> detect's
    verdict; `labelled`: file name -> whether inspect found a synthetic label."""

    output: Path
    swapped_video: Path
    preview: Path
    loss_plot: Path
    detect_report: Path
    inspect_report: Path
    iterations: int = 0
    verdicts: dict[str, str] = field(default_factory=dict)
    labelled: dict[str, bool] = field(default_factory=dict)
    inspect_lines: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.stage_seconds.values())


def find_samples(folder: Path | None = None) -> Path:
    """The folder with both sample clips: `folder`, else the repository's `samples/`, else `./samples`."""
    candidates = [folder] if folder is not None else [Path(__file__).resolve().parents[1] / "samples", Path("samples")]
    for c in candidates:
        if (c / SAMPLE_A).is_file() and (c / SAMPLE_B).is_file():
            return c
    where = folder or "samples/"
    raise FaceswapError(f"the sample clips {SAMPLE_A} and {SAMPLE_B} are not in {where}: run the demo from a clone of the "
                        f"repository (pip install -e .), or make them with `python samples/make_samples.py`")


def _prepare_output(config: DemoConfig) -> None:
    """Create the output folder, refusing one the demo did not make (or made in the other mode)."""
    out = config.output
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise FaceswapError(f"{out} is a file; choose a folder for the demo's output with -o")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise FaceswapError(f"{out} is not empty and was not made by faceswap demo; choose another folder with -o")
        try:
            earlier = json.loads(marker.read_text())
        except (OSError, ValueError) as exc:
            raise FaceswapError(f"{marker} is unreadable ({exc}); use --overwrite to start afresh") from exc
        if config.overwrite:
            for name in OUTPUT_NAMES:
                path = out / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        elif bool(earlier.get("quick")) != config.quick:
            mode = "quick" if earlier.get("quick") else "full"
            raise FaceswapError(f"{out} holds a {mode} demo; use --overwrite to replace it, or another folder with -o")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(marker, json.dumps({"tool": f"faceswap {__version__}", "quick": config.quick}).encode())


def _trained_seconds(model_dir: Path) -> float:
    """Training time already spent on the model in `model_dir` (0 when there is none)."""
    from faceswap.model.autoencoder import WEIGHTS_NAME, read_checkpoint

    if not (model_dir / WEIGHTS_NAME).is_file():
        return 0.0
    return float(read_checkpoint(model_dir, with_train_state=False).train_meta.get("elapsed_s", 0.0))


class _Stages:
    """The demo's steps; each prints a header and its time."""

    def __init__(self, config: DemoConfig, console: Console, result: DemoResult, samples: Path):
        self.config, self.console, self.result, self.samples = config, console, result, samples
        self.out = config.output
        self.order = [self.extract, self.train, self.train_detector, self.convert, self.detect, self.inspect]
        self.n = 0

    def run(self) -> None:
        for stage in self.order:
            stage()

    def header(self, title: str) -> float:
        self.n += 1
        self.console.rule(f"[bold]{self.n}/{len(self.order)}  {title}", align="left")
        return time.perf_counter()

    def done(self, name: str, t0: float) -> None:
        self.result.stage_seconds[name] = time.perf_counter() - t0
        self.console.print(f"[dim]{name}: {self.result.stage_seconds[name]:.0f} s[/dim]")

    def extract(self) -> None:
        from faceswap.extract import ExtractConfig, run_extract

        t0 = self.header("Extract the faces of both sample identities")
        for clip, folder, every in ((SAMPLE_A, "faces_a", 1), (SAMPLE_B, "faces_b", QUICK_B_EVERY if self.config.quick else 1)):
            # A is extracted whole even in quick mode: convert reuses its alignments for every frame.
            summary = run_extract(ExtractConfig(inputs=[self.samples / clip], output=self.out / folder, every=every,
                                                device=self.config.device), console=self.console)
            if summary.errors:
                raise FaceswapError(f"extract {clip}: {summary.errors[0]}")
            self.console.print(f"{clip}: {summary.line()} -> {self.out / folder}")
        self.done("extract", t0)

    def train(self) -> None:
        from faceswap.model.autoencoder import read_checkpoint
        from faceswap.train import TrainConfig, train

        cfg = self.config
        model_dir = self.out / "model"
        t0 = self.header("Train a lite swap model (A <-> B)")
        common = dict(faces_a=self.out / "faces_a", faces_b=self.out / "faces_b", model_dir=model_dir, preset="lite",
                      device=cfg.device)
        if cfg.quick:
            run = TrainConfig(**common, iterations=QUICK_ITERATIONS, batch_size=8, log_every=10, save_every=QUICK_ITERATIONS,
                              preview_every=QUICK_ITERATIONS)
        else:
            left = cfg.minutes * 60 - _trained_seconds(model_dir)
            if left < 5:
                self.console.print(f"The model in {model_dir} has had its {cfg.minutes:g} minutes of training "
                                   f"(pass a larger --minutes to train on).")
                run = None
            else:
                run = TrainConfig(**common, minutes=left / 60, log_every=50)
        if run is not None:
            outcome = train(run, console=self.console)
            if outcome.stopped == "interrupted":
                raise FaceswapError(f"interrupted while training; the model is saved in {model_dir}: run the demo again to go on")
        self.result.iterations = read_checkpoint(model_dir, with_train_state=False).iteration
        expected = ITERATIONS_PER_MINUTE * cfg.minutes
        if not cfg.quick and self.result.iterations < expected / 2:
            self.console.print(f"[yellow]Note:[/] only {self.result.iterations} iterations in {cfg.minutes:g} minutes (an idle 2-core "
                               f"CPU does ~{expected:.0f}): the CPU is busy or slow, so the swap will be blurry. "
                               f"`faceswap demo --minutes {2 * cfg.minutes:g}` trains on.")
        self.done("train", t0)

    def convert(self) -> None:
        from faceswap.convert import ConvertConfig, run_convert
        from faceswap.model.autoencoder import model_id
        from faceswap.provenance import read_labels

        video, model_dir = self.result.swapped_video, self.out / "model"
        t0 = self.header("Convert sample A into B (with its audio, labelled synthetic)")
        if video.is_file() and read_labels(video).model_id == model_id(model_dir):
            self.console.print(f"{video} was made by this model already; reusing it")
        else:
            # Remade when the model changed (a re-run trained on): the demo's own file, never the user's.
            summary = run_convert(ConvertConfig(input=self.samples / SAMPLE_A, output=video, model_dir=model_dir,
                                                alignments=self.out / "faces_a" / "alignments.json", direction="a2b",
                                                device=self.config.device, overwrite=True), console=self.console)
            for warning in summary.warnings:
                self.console.print(f"[yellow]Warning:[/] {warning}")
            self.console.print(f"{summary.line()} -> {video}")
        self.done("convert", t0)

    def train_detector(self) -> None:
        from faceswap.detect import DetectTrainConfig, run_detect_train
        from faceswap.detect.detector import WEIGHTS_NAME, read_detector
        from faceswap.detect.blend import BlendConfig
        from faceswap.detect.oneclass import OneClassConfig
        from faceswap.model.autoencoder import model_id

        detdir, model_dir = self.out / "detector", self.out / "model"
        t0 = self.header("Train the detector on the real (un-swapped) sample faces, with the swap model attached")
        if (detdir / WEIGHTS_NAME).is_file() and (read_detector(detdir)[0].get("model") or {}).get("id") == model_id(model_dir):
            self.console.print(f"{detdir} was calibrated with this model already; reusing it")
        else:
            # Remade when the model changed: a detector is only valid with the model it was calibrated with.
            iterations = QUICK_DETECTOR_ITERATIONS if self.config.quick else DETECTOR_ITERATIONS
            summary = run_detect_train(DetectTrainConfig(real=[self.out / "faces_a", self.out / "faces_b"], output=detdir,
                                                         model_dir=model_dir, holdout=DETECTOR_HOLDOUT,
                                                         oneclass=OneClassConfig(iterations=iterations),
                                                         blend=BlendConfig(iterations=iterations), device=self.config.device,
                                                         overwrite=True), console=self.console)
            for warning in summary.warnings:
                self.console.print(f"[yellow]Warning:[/] {warning}")
            self.console.print(f"{summary.line()} -> {detdir}")
        self.done("detector", t0)

    def detect(self) -> None:
        from faceswap.detect import DetectConfig, print_report, run_detect

        t0 = self.header("Detect: the swapped video and the original sample A")
        inputs = [self.result.swapped_video, self.samples / SAMPLE_A]
        report = run_detect(DetectConfig(inputs=inputs, detector_dir=self.out / "detector", model_dir=self.out / "model",
                                         device=self.config.device), console=self.console)
        for line in report.warnings + report.errors:
            self.console.print(f"[yellow]Warning:[/] {line}")
        print_report(report, self.console)
        atomic_write_bytes(self.result.detect_report, json.dumps(report.to_json(), indent=2).encode())
        for source in report.sources:
            self.result.verdicts[Path(source["source"]).name] = _verdict_line(source, report.threshold)
        self.done("detect", t0)

    def inspect(self) -> None:
        from faceswap.provenance.inspect import InspectConfig, format_report, inspect_file

        t0 = self.header("Inspect the provenance labels of the swapped video and the original")
        reports = [inspect_file(path, InspectConfig()) for path in (self.result.swapped_video, self.samples / SAMPLE_A)]
        atomic_write_bytes(self.result.inspect_report,
                           json.dumps({"files": reports, "synthetic": any(r["synthetic"] for r in reports)}, indent=2,
                                      default=str).encode())
        for path, report in zip((self.result.swapped_video, self.samples / SAMPLE_A), reports):
            self.console.print(format_report(report))
            self.result.labelled[path.name] = bool(report["synthetic"])
            self.result.inspect_lines[path.name] = _label_summary(report)
        self.done("inspect", t0)


def _verdict_line(source: dict, threshold: float) -> str:
    """detect's verdict on one source, with its scores (and, when the watermark decided, what the
    pixels alone said)."""
    if source["mean_logit"] is None:
        return source["verdict"]
    swap = source["mean_logit"] > threshold
    flagged = round(source["flagged_fraction"] * source["faces"])
    scores = (f"mean score {source['mean_logit']:.2f} {'>' if swap else '<='} threshold {threshold:.2f}, "
              f"{flagged}/{source['faces']} faces flagged")
    if (source.get("watermark") or {}).get("found"):
        return f"{source['verdict']}; by the pixels alone: {'swap' if swap else 'no swap'} ({scores})"
    return f"{source['verdict']} ({scores})"


def _label_summary(report: dict) -> str:
    """One line: which layers say synthetic."""
    if report.get("error") and not report["synthetic"]:
        return f"unreadable ({report['error']})"
    if not report["synthetic"]:
        return "no synthetic label"
    layers = []
    if (report.get("metadata") or {}).get("synthetic"):
        layers.append("metadata")
    c2pa = report.get("c2pa") or {}
    if c2pa.get("synthetic") and c2pa.get("status") in ("valid", "tampered"):
        layers.append(f"C2PA {c2pa['status']}")
    if (report.get("watermark") or {}).get("found"):
        layers.append("watermark")
    return "SYNTHETIC (" + ", ".join(layers) + ")"


def _print_summary(result: DemoResult, console: Console) -> None:
    minutes, seconds = divmod(int(round(result.seconds)), 60)
    console.rule("[bold]Done", align="left")
    console.print(f"faceswap demo finished in {minutes} min {seconds:02d} s ({result.iterations} training iterations).")
    rows = [("swapped video", result.swapped_video), ("preview grid", result.preview), ("loss plot", result.loss_plot),
            ("detection report", result.detect_report), ("labels report", result.inspect_report)]
    for what, path in rows:
        console.print(f"  {what:<17} {path}")
    for name, verdict in result.verdicts.items():
        console.print(f"  detect   {name:<20} {verdict}")
    for name, line in result.inspect_lines.items():
        console.print(f"  inspect  {name:<20} {line}")
    console.print("The detector was trained on these very samples: a demonstration, not a measurement "
                  "(`faceswap detect eval` measures on videos it never saw). Next: README.md's worked example, on your own videos.")


def run_demo(config: DemoConfig, console: Console | None = None) -> DemoResult:
    """Run every stage on the bundled samples into `config.output` and print where the results are."""
    console = console or Console()
    if config.minutes <= 0:
        raise FaceswapError("--minutes must be positive")
    samples = find_samples(config.samples)
    _prepare_output(config)
    out = config.output
    result = DemoResult(output=out, swapped_video=out / SWAPPED_NAME, preview=out / "model" / "preview.png",
                        loss_plot=out / "model" / "loss.png", detect_report=out / DETECT_REPORT, inspect_report=out / INSPECT_REPORT)
    mode = "quick mode, " if config.quick else f"{config.minutes:g} min of training, "
    console.print(f"[bold]faceswap demo[/]: {mode}samples from {samples}, output in {out}")
    _Stages(config, console, result, samples).run()
    _print_summary(result, console)
    return result


__all__ = ["DEFAULT_MINUTES", "DEFAULT_OUTPUT", "DemoConfig", "DemoResult", "find_samples", "run_demo"]

"""`faceswap detect INPUT...`: score every face, decide per video/image, check the watermark.

Per face: every signal, the fused logit, flagged = logit > threshold (calibrated on held-out real
faces at the detector's FPR, or at `fpr`). Per source (a video, an image, or the source a face PNG
names): faces, mean logit, mean of the top-k logits, flagged fraction and the verdict:

* "synthetic (watermark)" when the provenance watermark is found in the first `watermark_frames`
  frames (the decoder of `faceswap inspect`, given the faces found here): certain, whatever the scores;
* "swap detected" when the mean face logit is above the face threshold. Averaging lowers the
  spread of a real video's logits, so its false-positive rate is about the face-level one or
  lower -- not guaranteed: a whole real video can sit off the calibration faces;
* "no swap detected" otherwise ("no faces" when none was found). A missing watermark proves nothing.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from faceswap.detect.detector import Detector
from faceswap.detect.faces import FaceBatch, FaceSourceConfig, iter_faces
from faceswap.device import pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.detect import DetectorConfig

TOP_K = 5


@dataclass
class DetectConfig:
    """Everything `faceswap detect INPUT...` can be told."""

    inputs: list[Path]
    detector_dir: Path
    model_dir: Path | None = None  # the swap model the detector was calibrated with (S1), if any
    fpr: float | None = None  # None = the detector's calibrated false-positive rate
    top_k: int = TOP_K
    watermark: bool = True
    watermark_frames: int = 240  # the watermark check reads this many frames per video, as inspect does (~25 ms each)
    every: int = 1
    max_frames: int | None = None
    batch_size: int = 16
    aligned: bool = False
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default)
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class DetectReport:
    faces: list[dict]
    sources: list[dict]
    threshold: float
    fpr: float
    detector: dict
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(s["flagged"] for s in self.sources)

    def to_json(self) -> dict:
        return {"flagged": self.flagged, "threshold": self.threshold, "fpr": self.fpr, "detector": self.detector,
                "sources": self.sources, "faces": self.faces, "errors": self.errors, "warnings": self.warnings}


def progress_bar(console: Console, show: bool) -> Progress | None:
    """Live progress on a terminal only (piped output and logs stay clean)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True) if show and console.is_terminal else None


def source_config(det: Detector, cfg) -> FaceSourceConfig:
    """Faces cut the way the detector was calibrated: its size and coverage."""
    return FaceSourceConfig(size=det.size, coverage=det.coverage, every=cfg.every, max_frames=cfg.max_frames,
                            batch_size=cfg.batch_size, aligned=cfg.aligned, device=str(pick_device(cfg.device)), detector=cfg.detector)


def scored(det: Detector, batches: Iterator[FaceBatch], fpr: float | None = None) -> Iterator[dict]:
    """One row per face: source, frame, every signal, logit, flagged, and for a flagged face the
    signals that fired (`Fusion.fired`: those that pushed its logit up, largest first)."""
    for batch in batches:
        out = det.score(batch.faces, fpr)
        fired = det.fusion.fired(out)
        for i, (src, frame) in enumerate(zip(batch.source, batch.frame)):
            row = {"source": src, "frame": frame}
            row.update({k: (bool(v[i]) if k == "flagged" else round(float(v[i]), 6)) for k, v in out.items()})
            row["fired"] = fired[i] if row["flagged"] else []
            yield row


def verdicts(rows: list[dict], threshold: float, top_k: int, watermarks: dict[str, dict], sources: list[str]) -> list[dict]:
    """Per-source aggregates and verdicts (see module docs), in first-seen order."""
    by_src: dict[str, list[float]] = {s: [] for s in sources}
    flags: dict[str, int] = {}
    fired: dict[str, dict[str, int]] = {}  # per source: how many flagged faces each signal fired for
    for r in rows:
        by_src.setdefault(r["source"], []).append(r["logit"])
        flags[r["source"]] = flags.get(r["source"], 0) + r["flagged"]
        counts = fired.setdefault(r["source"], {})
        for name in r.get("fired", []):
            counts[name] = counts.get(name, 0) + 1
    out = []
    for src, logits in by_src.items():
        wm = watermarks.get(src)
        entry = {"source": src, "faces": len(logits), "mean_logit": None, "top_k_logit": None, "flagged_fraction": None,
                 "watermark": wm, "fired": dict(sorted(fired.get(src, {}).items(), key=lambda kv: -kv[1]))}
        if logits:
            top = sorted(logits, reverse=True)[:top_k]
            entry.update(mean_logit=float(np.mean(logits)), top_k_logit=float(np.mean(top)), flagged_fraction=flags[src] / len(logits))
        if wm and wm.get("found"):
            entry.update(verdict="synthetic (watermark)", flagged=True)
        elif not logits:
            entry.update(verdict="no faces", flagged=False)
        elif entry["mean_logit"] > threshold:
            entry.update(verdict="swap detected", flagged=True)
        else:
            entry.update(verdict="no swap detected", flagged=False)
        out.append(entry)
    return out


def run_detect(config: DetectConfig, console: Console | None = None, show_progress: bool = True) -> DetectReport:
    """Score every input. Unreadable inputs land in `report.errors` while the others go on;
    raises `FaceswapError` when no input could be read at all.
    Torch's CPU threads: `threads`, or as many as the machine's other load leaves free (restored after)."""
    with torch_threads(config.threads):
        return _run_detect(config, console, show_progress)


def _run_detect(config: DetectConfig, console: Console | None = None, show_progress: bool = True) -> DetectReport:
    """The run itself, with torch's threads set."""
    from faceswap.provenance.watermark import WatermarkDecoder

    console = console or Console(stderr=True)
    if config.top_k < 1:
        raise FaceswapError(f"--top-k {config.top_k}: use 1 or more")
    det = Detector.load(config.detector_dir, config.model_dir, pick_device(config.device))
    threshold = det.threshold(config.fpr)
    warnings: list[str] = []
    n_cal = len(det.fusion.calibration)
    if config.fpr is not None and config.fpr * n_cal < 1:
        warnings.append(f"the detector was calibrated on {n_cal} real faces: an FPR of {config.fpr:g} is below its resolution "
                        f"(1/{n_cal}); flagging above the largest calibration logit")
    decoders: dict[str, WatermarkDecoder] = {}
    seen: list[str] = []  # sources with frames, in order (videos/images without faces still get a verdict)

    def on_frame(source: str, frame: np.ndarray, landmarks: np.ndarray) -> None:
        if source not in decoders:
            seen.append(source)
            decoders[source] = WatermarkDecoder(detect=False)
        if config.watermark and decoders[source].frames < config.watermark_frames:
            decoders[source].update(frame, landmarks)

    errors: list[str] = []
    progress = progress_bar(console, show_progress)
    with progress or nullcontext():
        batches = iter_faces(config.inputs, source_config(det, config), on_frame, errors, warnings, progress)
        rows = list(scored(det, batches, config.fpr))
    if not rows:
        if errors and not seen:
            raise FaceswapError(errors[0] if len(errors) == 1 else f"no input could be read ({len(errors)} errors; first: {errors[0]})")
        raise FaceswapError("no faces found in " + ", ".join(str(p) for p in config.inputs))
    watermarks = {s: d.result().to_dict() for s, d in decoders.items()} if config.watermark else {}
    sources = verdicts(rows, threshold, config.top_k, watermarks, seen)
    # "signals": every score reported per face; "fused": those the logit is made of (S1 is reported only).
    reported = [k for k in rows[0] if k not in ("source", "frame", "logit", "flagged", "fired")]
    info = {"dir": str(config.detector_dir), "model_id": det.model_id, "signals": reported, "fused": det.fusion.names,
            "supervised": det.fusion.supervised, "calibrated_fpr": det.fusion.fpr}
    return DetectReport(rows, sources, threshold, config.fpr or det.fusion.fpr, info, errors, warnings)


def print_report(report: DetectReport, console: Console) -> None:
    """A rich table of per-source verdicts."""
    from rich.table import Table

    table = Table(title=f"faceswap detect (threshold {report.threshold:.3f} at {report.fpr:.2%} FPR per face)")
    for col, just in (("source", "left"), ("faces", "right"), ("mean logit", "right"), (f"top-{TOP_K}", "right"),
                      ("flagged", "right"), ("watermark", "left"), ("verdict", "left")):
        table.add_column(col, justify=just)
    for s in report.sources:
        wm = s["watermark"]
        wm_text = "-" if wm is None else ("[bold red]found[/]" if wm.get("found") else "not found")
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        style = "bold red" if s["flagged"] else "green"
        table.add_row(Path(s["source"]).name, str(s["faces"]), fmt(s["mean_logit"], ".3f"), fmt(s["top_k_logit"], ".3f"),
                      fmt(s["flagged_fraction"], ".0%"), wm_text, f"[{style}]{s['verdict']}[/]")
    console.print(table)


def faces_by_source(batches: Iterator[FaceBatch]) -> dict[str, tuple[torch.Tensor, list[int]]]:
    """Collect streamed faces per source, in frame order: {source: (faces (n, 3, S, S) uint8, frames)}."""
    acc: dict[str, list[tuple[int, int, torch.Tensor]]] = {}
    n = 0
    for b in batches:
        for face, src, frame in zip(b.faces, b.source, b.frame):
            acc.setdefault(src, []).append((frame, n, face))
            n += 1
    out = {}
    for src, items in acc.items():
        items.sort(key=lambda t: (t[0], t[1]))
        out[src] = (torch.stack([t[2] for t in items]), [t[0] for t in items])
    return out


def signals_of(det: Detector, faces: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """`det.signals` over many faces `(N, 3, S, S)` in batches -> `{name: (N,)}`."""
    return cat_signals([det.signals(faces[i : i + batch]) for i in range(0, len(faces), batch)])


def cat_signals(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Signal dicts of several face batches -> one `{name: (N,)}` (empty parts skipped)."""
    parts = [p for p in parts if p]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]} if parts else {}

"""`faceswap detect eval`: how well a detector separates real faces from swaps it has not seen.

Both classes go through the same pipeline (the same face source, detector and threshold). Frame
level: one score per face (its logit). Video level: one score per source (the mean logit of its
faces). For each: ROC-AUC, EER, TPR at 1% FPR, and the FPR / TPR at the detector's own threshold
(chosen at training time on other real faces, never on this test split). Writes into the report
folder `eval.json`, `roc.png` (frame and video ROC) and `histograms.png` (frame logits).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console

from faceswap.atomic import atomic_write_bytes
from faceswap.detect import metrics
from faceswap.detect.detector import Detector
from faceswap.detect.faces import iter_faces
from faceswap.detect.run import progress_bar, scored, source_config
from faceswap.device import pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.detect import DetectorConfig

REPORT_NAME = "eval.json"


@dataclass
class EvalConfig:
    """Everything `faceswap detect eval` can be told."""

    real: list[Path]
    fake: list[Path]
    detector_dir: Path
    output: Path
    model_dir: Path | None = None
    target_fpr: float = 0.01
    every: int = 1
    max_frames: int | None = None
    batch_size: int = 16
    aligned: bool = False
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default)
    overwrite: bool = False
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class EvalReport:
    frame: dict
    video: dict | None
    threshold: float
    output: Path
    rows: list[dict]  # per face: source, frame, label (1 = fake), logit and signals

    def to_json(self) -> dict:
        return {"frame": self.frame, "video": self.video, "threshold": self.threshold}

    def line(self) -> str:
        f = self.frame
        key = next(k for k in f if k.startswith("tpr_at_"))
        text = f"frames: ROC-AUC {f['roc_auc']:.3f}, EER {f['eer']:.1%}, TPR@{key[7:-4]}FPR {f[key]:.1%}"
        if self.video:
            v = self.video
            text += f"; videos: ROC-AUC {v['roc_auc']:.3f}, EER {v['eer']:.1%} ({v['n_real']} real, {v['n_fake']} fake)"
        return text


def _level(scores: np.ndarray, labels: np.ndarray, threshold: float, target: float) -> dict:
    out = metrics.summary(scores, labels, target)
    out["fpr_at_threshold"] = float((scores[labels == 0] > threshold).mean())
    out["tpr_at_threshold"] = float((scores[labels == 1] > threshold).mean())
    return out


def run_eval(config: EvalConfig, console: Console | None = None, show_progress: bool = True) -> EvalReport:
    """Score the real and fake inputs with a detector; write the report files (see module docs).
    Torch's CPU threads: `threads`, or as many as the machine's other load leaves free (restored after)."""
    with torch_threads(config.threads):
        return _run_eval(config, console, show_progress)


def _run_eval(config: EvalConfig, console: Console | None = None, show_progress: bool = True) -> EvalReport:
    """The run itself, with torch's threads set."""
    cfg = config
    console = console or Console(stderr=True)
    out = Path(cfg.output)
    if (out / REPORT_NAME).exists() and not cfg.overwrite:
        raise FaceswapError(f"{out} already holds an evaluation; use --overwrite or another -o")
    if not cfg.real or not cfg.fake:
        raise FaceswapError("evaluation needs both --real and --fake inputs")
    det = Detector.load(cfg.detector_dir, cfg.model_dir, pick_device(cfg.device))
    src_cfg = source_config(det, cfg)
    rows: list[dict] = []
    progress = progress_bar(console, show_progress)
    with progress or nullcontext():
        for label, inputs in ((0, cfg.real), (1, cfg.fake)):
            got = [dict(r, label=label) for r in scored(det, iter_faces(inputs, src_cfg, progress=progress))]
            if not got:
                raise FaceswapError(f"no faces found in the --{'fake' if label else 'real'} inputs " + ", ".join(map(str, inputs)))
            rows += got
    threshold = det.threshold()
    logits, labels = np.array([r["logit"] for r in rows]), np.array([r["label"] for r in rows])
    frame = _level(logits, labels, threshold, cfg.target_fpr)
    by_source: dict[tuple[int, str], list[float]] = {}
    for r in rows:
        by_source.setdefault((r["label"], r["source"]), []).append(r["logit"])
    v_labels = np.array([k[0] for k in by_source])
    v_scores = np.array([np.mean(v) for v in by_source.values()])
    video = None
    if 0 in v_labels and 1 in v_labels:
        video = _level(v_scores, v_labels, threshold, cfg.target_fpr)
        video["sources"] = [{"source": s, "label": lab, "mean_logit": float(np.mean(v)), "faces": len(v)}
                            for (lab, s), v in by_source.items()]
    out.mkdir(parents=True, exist_ok=True)
    curves = {"faces": metrics.roc_curve(logits, labels)[:2]}
    if video:
        curves["videos (mean logit)"] = metrics.roc_curve(v_scores, v_labels)[:2]
    metrics.plot_roc(out / "roc.png", curves, cfg.target_fpr)
    metrics.plot_histograms(out / "histograms.png", logits[labels == 0], logits[labels == 1], threshold,
                            title=f"face logits (AUC {frame['roc_auc']:.3f})")
    report = EvalReport(frame, video, threshold, out, rows)
    doc = {**report.to_json(), "detector": str(cfg.detector_dir), "real": [str(p) for p in cfg.real],
           "fake": [str(p) for p in cfg.fake], "signals": det.fusion.names}
    atomic_write_bytes(out / REPORT_NAME, (json.dumps(doc, indent=2) + "\n").encode())
    return report

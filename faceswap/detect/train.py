"""`faceswap detect train`: fit a detector on real faces (and, when there are any, known swaps).

Real faces are split per source BY TIME, never by frame (neighbouring frames are near copies):

    first (1 - holdout) of each source's faces   -> train S2's autoencoder and S3's reference
    next holdout / 2                              -> fit the fusion (z-score stats, logistic regression)
    last holdout / 2                              -> calibrate the threshold at `fpr`; validate

Single-face sources (photos) are pooled, in name order, into one source for the split. Known
swaps: the `fake` inputs (split per source the same way: first half fits, second half validates),
else, with a swap model, faces the model makes from the fit / calibration reals
(`detect.fakes.model_fakes`), else none (the fusion's unsupervised rule). The fusion is source-balanced over the real
sources (`fusion.py`) and leaves S1 out (`fusion.REPORTED_ONLY`). With fakes for
validation, the summary reports ROC-AUC and the TPR at the calibrated threshold on faces the
fusion never saw.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from faceswap.detect import metrics
from faceswap.detect.detector import WEIGHTS_NAME, Detector
from faceswap.detect.fakes import model_fakes
from faceswap.detect.faces import FaceSourceConfig, iter_faces
from faceswap.detect.fusion import Fusion
from faceswap.detect.oneclass import OneClassConfig, train_oneclass
from faceswap.detect.run import faces_by_source, progress_bar, signals_of
from faceswap.detect.spectral import SpectralReference
from faceswap.device import LoadAwareThreads, pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.align import DEFAULT_COVERAGE
from faceswap.faces.detect import DetectorConfig

MIN_TRAIN_FACES = 16


@dataclass
class DetectTrainConfig:
    """Everything `faceswap detect train` can be told."""

    real: list[Path]
    output: Path
    model_dir: Path | None = None
    fake: list[Path] = field(default_factory=list)
    holdout: float = 0.3
    fpr: float = 0.01
    size: int = 128  # face crop side the detector scores (S2 and S3 see it; S1 resizes to the model's)
    oneclass: OneClassConfig = field(default_factory=OneClassConfig)
    every: int = 1
    max_frames: int | None = None
    batch_size: int = 16
    aligned: bool = False
    device: str = "auto"
    threads: int | None = None  # torch CPU threads (None = torch's default)
    overwrite: bool = False
    detector: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class DetectTrainSummary:
    output: Path
    counts: dict
    supervised: bool
    fakes: str
    threshold: float
    validation: dict | None
    seconds: float
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        c = self.counts
        text = (f"{c['train']} train / {c['fit']} fit / {c['calibrate']} calibration real faces from {c['sources']} sources, "
                f"{c['fake_fit']} fakes ({self.fakes}); threshold {self.threshold:.3f}")
        if self.validation:
            v = self.validation
            text += (f"; held-out: ROC-AUC {v['roc_auc']:.3f}, TPR {v['tpr_at_threshold']:.1%} at "
                     f"FPR {v['fpr_at_threshold']:.1%} ({v['n_fake']} fakes)")
        return text


def split_by_time(groups: dict[str, tuple[torch.Tensor, list[int]]], fractions: tuple[float, ...],
                  labels: bool = False):
    """Cut each source's faces (in frame order) into consecutive parts: the last parts take
    `fractions` of its faces (part boundaries at rounded cumulative fractions), the first the rest. Returns the parts concatenated
    over sources, `(n_i, 3, S, S)` uint8 each; with `labels`, also each part's source name per face."""
    groups = dict(groups)
    singles = [src for src, (faces, _) in groups.items() if len(faces) == 1]
    if len(singles) > 1:  # photos: one pooled "source" in name order
        pooled = torch.cat([groups.pop(s)[0] for s in sorted(singles)])
        groups["(single images)"] = (pooled, list(range(len(pooled))))
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    names: list[list[str]] = [[] for _ in range(len(fractions) + 1)]
    for source, (faces, _) in groups.items():
        n = len(faces)
        bounds = [n - int(round(n * sum(fractions[i:]))) for i in range(len(fractions))] + [n]
        start = 0
        for i, end in enumerate(bounds):
            parts[i].append(faces[start:end])
            names[i] += [source] * (end - start)
            start = end
    size = next(iter(groups.values()))[0].shape[1:] if groups else (3, 1, 1)
    out = [torch.cat(p) if p else torch.empty(0, *size, dtype=torch.uint8) for p in parts]
    return (out, names) if labels else out


def _load_model(cfg: DetectTrainConfig, device):
    if cfg.model_dir is None:
        return None, None
    from faceswap.model.autoencoder import load_model_with_id

    return load_model_with_id(cfg.model_dir, device)


def run_detect_train(config: DetectTrainConfig, console: Console | None = None, show_progress: bool = True) -> DetectTrainSummary:
    """Train and save a detector (see module docs). Raises `FaceswapError` for bad input, before
    writing anything; an existing detector is replaced only with `overwrite`.
    Torch's CPU threads: `threads`, or as many as the machine's other load leaves free (restored after)."""
    from faceswap.lock import OutputLock

    if Path(config.output).exists() and not Path(config.output).is_dir():
        raise FaceswapError(f"-o {config.output} exists and is not a folder")
    # one job per detector dir (a second is refused before it writes); a failed run leaves no new empty folder
    with OutputLock(config.output, "detect train"), torch_threads(config.threads) as threads:
        return _run_detect_train(config, console, show_progress, threads)


def _run_detect_train(config: DetectTrainConfig, console: Console | None, show_progress: bool,
                      threads: LoadAwareThreads) -> DetectTrainSummary:
    """The run itself, with torch's threads set (and re-checked during the one-class training)."""
    cfg = config
    console = console or Console(stderr=True)
    t0 = time.monotonic()
    if not 0 < cfg.holdout < 1:
        raise FaceswapError(f"--holdout {cfg.holdout} must be between 0 and 1")
    if not 0 < cfg.fpr < 0.5:
        raise FaceswapError(f"--fpr {cfg.fpr} must be between 0 and 0.5")
    if cfg.size % 16 or cfg.size < 32:
        raise FaceswapError(f"--size {cfg.size} must be a multiple of 16, at least 32")
    if cfg.oneclass.size % 16 or cfg.oneclass.size > cfg.size:
        raise FaceswapError(f"one-class size {cfg.oneclass.size} must be a multiple of 16, at most --size {cfg.size}")
    if (Path(cfg.output) / WEIGHTS_NAME).exists() and not cfg.overwrite:
        raise FaceswapError(f"{cfg.output} already holds a detector; use --overwrite to replace it, or another -o")
    if Path(cfg.output).exists() and not Path(cfg.output).is_dir():
        raise FaceswapError(f"-o {cfg.output} exists and is not a folder")
    device = pick_device(cfg.device)
    model, mid = _load_model(cfg, device)
    coverage = model.coverage if model is not None else DEFAULT_COVERAGE
    src_cfg = FaceSourceConfig(size=cfg.size, coverage=coverage, every=cfg.every, max_frames=cfg.max_frames,
                               batch_size=cfg.batch_size, aligned=cfg.aligned, device=str(device), detector=cfg.detector)
    warnings: list[str] = []
    progress = progress_bar(console, show_progress)
    with progress or nullcontext():
        real = faces_by_source(iter_faces(cfg.real, src_cfg, warnings=warnings, progress=progress))
        fake = faces_by_source(iter_faces(cfg.fake, src_cfg, warnings=warnings, progress=progress)) if cfg.fake else {}
        if not real:
            raise FaceswapError("no faces found in the --real inputs " + ", ".join(str(p) for p in cfg.real))
        if cfg.fake and not fake:
            raise FaceswapError("no faces found in the --fake inputs " + ", ".join(str(p) for p in cfg.fake))
        (train, fit, calib), (_, fit_sources, _) = split_by_time(real, (cfg.holdout / 2, cfg.holdout / 2), labels=True)
        if len(train) < MIN_TRAIN_FACES or len(fit) < 2 or len(calib) < 2:
            raise FaceswapError(f"too few real faces: {len(train)} to train, {len(fit)} to fit, {len(calib)} to calibrate "
                                f"(need {MIN_TRAIN_FACES}, 2 and 2; give more frames or a larger --holdout)")
        if len(calib) < 1 / cfg.fpr:
            warnings.append(f"only {len(calib)} held-out real faces calibrate the {cfg.fpr:.1%} FPR threshold: it is coarse "
                            f"(give at least {int(2 / cfg.fpr / cfg.holdout)} real faces)")
        # S2 and S3 learn what real faces look like.
        task = progress.add_task("one-class autoencoder", total=cfg.oneclass.iterations) if progress else None

        def report(it: int, total: int, loss: float) -> None:
            threads.update()  # the longest part: follow the machine's load
            if progress:
                progress.update(task, completed=it, description=f"one-class AE (loss {loss:.4f})")

        ae = train_oneclass(train, cfg.oneclass, report).to(device)
    det = Detector(cfg.size, coverage, ae, SpectralReference.fit(train), model=model, model_id=mid)

    # Known swaps for the fusion.
    if fake:
        fake_fit, fake_val = split_by_time(fake, (0.5,))
        how = "given"
    elif model is not None:
        fake_fit, fake_val = model_fakes(model, fit, det.precision), model_fakes(model, calib, det.precision)
        how = "made by the swap model"
    else:
        fake_fit = fake_val = torch.empty(0)
        how = "none: unsupervised rule"
    fit_sig, calib_sig = signals_of(det, fit), signals_of(det, calib)
    # Source-balanced: the real sources' mean logits are kept level (see fusion.py).
    det.fusion = Fusion.fit(fit_sig, signals_of(det, fake_fit) if len(fake_fit) else None, sources=fit_sources)
    threshold = det.fusion.calibrate(calib_sig, cfg.fpr)

    validation = None
    if len(fake_val):
        real_logit = det.fusion.logit(calib_sig).numpy()
        fake_logit = det.fusion.logit(signals_of(det, fake_val)).numpy()
        scores = list(real_logit) + list(fake_logit)
        labels = [0] * len(real_logit) + [1] * len(fake_logit)
        validation = {**metrics.summary(scores, labels, cfg.fpr), "tpr_at_threshold": float((fake_logit > threshold).mean()),
                      "fpr_at_threshold": float((real_logit > threshold).mean()),
                      "note": "calibration reals vs fakes the fusion never saw; the threshold was set on these reals"}
    counts = {"sources": len(real), "train": len(train), "fit": len(fit), "calibrate": len(calib), "fake_fit": len(fake_fit),
              "fake_validate": len(fake_val)}
    det.training = {"real": [str(p) for p in cfg.real], "fake": [str(p) for p in cfg.fake], "fakes": how, "counts": counts,
                    "holdout": cfg.holdout, "validation": validation, "warnings": warnings,
                    "split": "per source by time: train | fit | calibrate"}
    det.save(cfg.output)
    return DetectTrainSummary(Path(cfg.output), counts, det.fusion.supervised, how, threshold, validation,
                              time.monotonic() - t0, warnings)

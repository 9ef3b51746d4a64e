"""`faceswap detect train`: fit a detector on real faces (and, when there are any, known swaps).

Real faces are split per source BY TIME, never by frame (neighbouring frames are near copies):

    first (1 - holdout) of each source's faces   -> train S2's autoencoder, S3's reference, S4's blend net
    next holdout / 2                              -> fit the fusion (z-score stats, logistic regression)
    last holdout / 2                              -> calibrate the threshold at `fpr`; validate

Single-face sources (photos) are pooled, in name order, into one source for the split. Fakes for
the fusion, every family the run has:
- pasted fakes made from the real faces alone (`selfblend.py`: self- and cross-blends), always:
  from the fit reals to fit, from the calibration reals to validate (fresh draws the blend net never saw);
- the `fake` inputs (split per source the same way: first half fits, second half validates),
  else, with a swap model, faces the model makes from the fit / calibration reals (`detect.fakes.model_fakes`).
The fusion is source-balanced over the real sources (`fusion.py`) and leaves S1 out
(`fusion.REPORTED_ONLY`). With three or more real sources the threshold is set on sources held
out of the fusion's fit, one at a time (`holdout.py`), and the summary says what FPR that left on
each. The summary reports, per fake family, ROC-AUC and the TPR at the threshold on faces the
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
from faceswap.detect.blend import BlendConfig, partner_indices, train_blend
from faceswap.detect.detector import WEIGHTS_NAME, Detector
from faceswap.detect.fakes import model_fakes
from faceswap.detect.faces import FaceSourceConfig, iter_faces
from faceswap.detect.fusion import Fusion, fused_names
from faceswap.detect.holdout import MIN_SOURCES, choose_signals, held_out_calibration
from faceswap.detect.selfblend import blend_fakes
from faceswap.detect.oneclass import OneClassConfig, train_oneclass
from faceswap.detect.run import cat_signals, faces_by_source, progress_bar, signals_of
from faceswap.detect.spectral import SpectralReference
from faceswap.device import LoadAwareThreads, pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.align import DEFAULT_COVERAGE
from faceswap.faces.detect import DetectorConfig

MIN_TRAIN_FACES = 16
FEW_SOURCES = 10  # below this many people, the held-out FPR estimate comes with a warning


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
    blend: BlendConfig = field(default_factory=BlendConfig)
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
    validation: dict  # per fake family: metrics on calibration reals vs fakes the fusion never saw
    seconds: float
    warnings: list[str] = field(default_factory=list)
    held_out: dict | None = None  # per real source, from `holdout.held_out_calibration`
    signal_choice: dict | None = None  # per candidate signal set, its held-out score, and the one chosen (`holdout.choose_signals`)

    def line(self) -> str:
        c = self.counts
        text = (f"{c['train']} train / {c['fit']} fit / {c['calibrate']} calibration real faces from {c['sources']} sources, "
                f"{c['fake_fit']} fakes ({self.fakes}); threshold {self.threshold:.3f}")
        for family, v in self.validation.items():
            text += (f"; held-out {family}: ROC-AUC {v['roc_auc']:.3f}, TPR {v['tpr_at_threshold']:.1%} at "
                     f"FPR {v['fpr_at_threshold']:.1%} ({v['n_fake']} fakes)")
        return text

    def calibration_line(self) -> str:
        """What the held-out sources say about the false-positive rate on people the detector never saw."""
        if not self.held_out:
            return (f"threshold set on held-out frames of the same {self.counts['sources']} source(s): the false-positive rate "
                    f"on other people and cameras is not measured (give real faces of at least {MIN_SOURCES} people)")
        spread = [v["fpr_in_sample_threshold"] for v in self.held_out.values()]
        after = [v["fpr_held_out_threshold"] for v in self.held_out.values()]
        choice = self.signal_choice or {}
        fused = (f"fusing the {choice['chosen']} signals (held-out TPR - FPR: "
                 + ", ".join(f"{k} {v:.2f}" for k, v in choice.items() if k != "chosen") + "); ") if choice else ""
        return (f"{fused}threshold set with each of the {len(self.held_out)} sources held out of the fit in turn: an in-sample "
                f"threshold flagged {min(spread):.1%}-{max(spread):.1%} of a held-out source's real faces, this one "
                f"{sum(after) / len(after):.1%} (per source {min(after):.1%}-{max(after):.1%})")


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
        (train, fit, calib), (train_sources, fit_sources, calib_sources) = split_by_time(real, (cfg.holdout / 2, cfg.holdout / 2), labels=True)
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
        task = progress.add_task("blend net", total=cfg.blend.iterations) if progress else None

        def report_blend(it: int, total: int, loss: float) -> None:
            threads.update()
            if progress:
                progress.update(task, completed=it, description=f"blend net (loss {loss:.3f})")

        source_ids = {s: i for i, s in enumerate(dict.fromkeys(train_sources))}
        blend = train_blend(train, coverage, cfg.blend, torch.tensor([source_ids[s] for s in train_sources]), report_blend)
    det = Detector(cfg.size, coverage, ae, SpectralReference.fit(train), model=model, model_id=mid, blend=blend.to(device))

    # Fakes for the fusion, per family: (fit faces, their real source or None, validation faces, theirs).
    families = {"blends": _blend_family(fit, fit_sources, calib, calib_sources, coverage, cfg.blend.seed)}
    if fake:
        fake_fit, fake_val = split_by_time(fake, (0.5,))
        families["given fakes"] = (fake_fit, [None] * len(fake_fit), fake_val, [None] * len(fake_val))
    elif model is not None:
        families["swap model fakes"] = (model_fakes(model, fit, det.precision), list(fit_sources) * 2,
                                        model_fakes(model, calib, det.precision), list(calib_sources) * 2)
    how = " + ".join({"blends": "self/cross blends of the real faces", "given fakes": "given",
                      "swap model fakes": "made by the swap model"}[k] for k in families)
    fit_sig, calib_sig = signals_of(det, fit), signals_of(det, calib)
    val_sig = {k: signals_of(det, f[2]) for k, f in families.items()}
    fake_sig = cat_signals([signals_of(det, f[0]) for f in families.values()])
    fake_sources = [s for f in families.values() for s in f[1]]
    # Which signals to fuse: the set that held up best on sources held out of the fit (holdout.py).
    names, selection = choose_signals(fused_names(fit_sig), fit_sig, fit_sources, fake_sig, fake_sources, calib_sig,
                                      calib_sources, cat_signals(list(val_sig.values())),
                                      [s for f in families.values() for s in f[3]], cfg.fpr)
    # Source-balanced: the real sources' mean logits are kept level (see fusion.py).
    det.fusion = Fusion.fit(fit_sig, fake_sig, names=names, sources=fit_sources)
    det.fusion.calibrate(calib_sig, cfg.fpr)
    held_out = held_out_calibration(det.fusion, fit_sig, fit_sources, fake_sig, fake_sources, calib_sig, calib_sources, cfg.fpr)
    threshold = det.fusion.threshold
    if held_out is not None and len(held_out) < FEW_SOURCES:
        warnings.append(f"only {len(held_out)} real sources: the false-positive rate expected on a new person is estimated "
                        f"from {len(held_out) - 1} other people per fold, which is optimistic (bench/detect_unseen.py: with 3 "
                        f"people, a fourth person's real faces were flagged 0-100 %); give real faces of many more people")

    validation = {}
    real_logit = det.fusion.logit(calib_sig).numpy()
    for family, sig in val_sig.items():
        if not sig:
            continue
        fake_logit = det.fusion.logit(sig).numpy()
        scores, labels = list(real_logit) + list(fake_logit), [0] * len(real_logit) + [1] * len(fake_logit)
        validation[family] = {**metrics.summary(scores, labels, cfg.fpr), "tpr_at_threshold": float((fake_logit > threshold).mean()),
                              "fpr_at_threshold": float((real_logit > threshold).mean()),
                              "note": "calibration reals vs fakes the fusion never saw"}
    counts = {"sources": len(real), "train": len(train), "fit": len(fit), "calibrate": len(calib), "fake_fit": len(fake_sources),
              "fake_validate": sum(len(f[2]) for f in families.values())}
    det.training = {"real": [str(p) for p in cfg.real], "fake": [str(p) for p in cfg.fake], "fakes": how, "counts": counts,
                    "holdout": cfg.holdout, "validation": validation, "held_out_sources": held_out, "signal_choice": selection,
                    "warnings": warnings,
                    "split": "per source by time: train | fit | calibrate"}
    det.save(cfg.output)
    return DetectTrainSummary(Path(cfg.output), counts, det.fusion.supervised, how, threshold, validation,
                              time.monotonic() - t0, warnings, held_out, selection or None)


def _blend_family(fit: torch.Tensor, fit_sources: list[str], calib: torch.Tensor, calib_sources: list[str], coverage: str,
                  seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor, list[str]]:
    """Pasted fakes of the fit and calibration reals (one each; a cross-blend takes a partner of another source when there is one)."""
    gen = torch.Generator().manual_seed(seed + 1)  # not the blend net's own draws

    def make(faces: torch.Tensor, sources: list[str]) -> torch.Tensor:
        ids = {s: i for i, s in enumerate(dict.fromkeys(sources))}
        src = torch.tensor([ids[s] for s in sources])
        x = faces.float().div(255)
        out = []
        for i in range(0, len(x), 64):
            idx = torch.arange(i, min(i + 64, len(x)))
            partner = partner_indices(len(x), src, idx, gen)
            fake, _ = blend_fakes(x[idx], coverage, gen, x[partner])
            out.append(fake.mul(255).round().to(torch.uint8))
        return torch.cat(out) if out else torch.empty(0, *faces.shape[1:], dtype=torch.uint8)

    return make(fit, fit_sources), list(fit_sources), make(calib, calib_sources), list(calib_sources)

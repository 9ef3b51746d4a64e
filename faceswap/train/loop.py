"""`faceswap train`: the training loop.

One iteration: draw `batch_size` faces of A and of B from the uint8 caches, augment them as whole
batches on the device, push both through the shared encoder in one batch and each half through its
own decoder, and take one Adam step on the sum of the two mask-weighted losses.

Nothing is lost on a long run: `save_every` iterations (and on stop, Ctrl-C or SIGTERM) weights,
optimizer and RNG state go into one safetensors file that replaces the last one atomically. Running
the same command again resumes from it and reproduces the uninterrupted run (same seed, same
options, CPU). `iterations` is the total to reach, so a resumed run stops where the first would have.
A resume verifies the whole checkpoint (weights and training state, `read_checkpoint`) and refuses a
damaged one, leaving it as it is; a run whose loss or weights go NaN/inf stops with an error before
it saves or previews, so the last good checkpoint stays (see `check_finite`).

Several GPUs (one process each, DistributedDataParallel)::

    torchrun --standalone --nproc_per_node 2 -m faceswap train --a A --b B -m models/x --device cuda

Each rank draws its own batches (so the effective batch is `world_size * batch_size` per identity),
gradients are averaged, rank 0 writes the model dir, and every rank's RNG state is saved.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from faceswap import __version__
from faceswap.device import LoadAwareThreads, pick_device
from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError
from faceswap.lock import OutputLock, pid_alive
from faceswap.faces.align import template_eye_mouth_mask, template_face_mask
from faceswap.faces.people import mixed_people
from faceswap.faces.store import list_images
from faceswap.model.autoencoder import (
    CONFIG_NAME, FORMAT, FORMAT_VERSION, WEIGHTS_NAME, Checkpoint, Preset, SwapModel, build_model,
    count_parameters, first_nonfinite, forward_flops, get_preset, read_checkpoint, read_config, save_checkpoint,
)
from faceswap.train.augment import WARPS, AugmentConfig, Augmenter
from faceswap.model.refiner import FACTORS as REFINE_FACTORS
from faceswap.model.refiner import PATCHES, default_factor, patch_side, random_origins
from faceswap.train.data import FaceSet, face_side, load_faces, sample_indices
from faceswap.train.init import faces_fingerprint, init_from
from faceswap.train.losses import DEFAULT_LOSS, check_loss, face_ssim, refiner_loss, sharpness_ratio, training_loss
from faceswap.train.state import pack_generators, pack_optimizer, unpack_generator, unpack_optimizer

LOG_COLUMNS = ["iteration", "elapsed_s", "loss_a", "loss_b", "val_loss_a", "val_loss_b", "val_ssim_a", "val_ssim_b", "eg_per_s",
               "val_ssim_hr_a", "val_ssim_hr_b", "val_sharp_a", "val_sharp_b"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
VAL_FACES = 64  # held-out faces per identity used for the validation loss
VAL_FACES_HR = 16  # of them, refined at full size for the refiner's figures
PREVIEW_FACES = 8


@dataclass
class TrainConfig:
    """Everything a training run uses; `config.json` records it. Paths may be str or Path."""

    faces_a: Path
    faces_b: Path
    model_dir: Path
    preset: str = "lite"
    learn_mask: bool = False
    # Identity refiners (`faceswap.model.refiner`): None = auto, the largest factor (<= 4) the faces'
    # resolution supervises for a new model, the model's own on resume; 0 = none.
    refine: int | None = None
    init: Path | None = None  # a new model starts from this earlier model's encoder (and matching decoders)
    batch_size: int = 16  # per identity (EG/s counts A and B)
    iterations: int | None = None  # total to reach (resume continues the count); None = no limit
    minutes: float | None = None  # wall-clock budget of this run; None = no limit
    save_every: int = 500
    preview_every: int = 500
    log_every: int = 100  # log.csv row + validation loss
    loss: str = DEFAULT_LOSS
    eye_mouth_weight: float = 1.0
    lr: float | None = None  # None = the preset's
    warp: str = "grid"
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto = bf16 autocast where the CPU/GPU has fast bf16, else fp32 (fp16 on old GPUs)
    threads: int | None = None  # torch CPU threads; None = what other jobs leave free (device.LoadAwareThreads)
    compile: bool = False  # torch.compile the model (measured: see bench/train.py)
    max_memory_gb: float = 4.0  # budget of the uint8 face caches, both identities
    overwrite: bool = False  # start a new model in a model dir that holds something else (or a bad model)
    quiet: bool = False  # no live display (tests)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("faces_a", "faces_b", "model_dir"):
            d[k] = str(Path(d[k]).resolve())
        d["init"] = str(Path(d["init"]).resolve()) if d["init"] is not None else None
        return d


@dataclass
class TrainResult:
    model_dir: Path
    iteration: int
    stopped: str  # "iterations", "minutes" or "interrupted"
    val_loss: dict[str, float]
    val_ssim: dict[str, float]
    eg_per_s: float  # average over this run
    model: SwapModel | None = None  # the trained model (None when there was nothing to do)


# --- setup ------------------------------------------------------------------------------------------


def _dist_env() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment, (0, 1) without it."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _resolve_precision(name: str, device: torch.device) -> str:
    if name not in PRECISIONS:
        raise FaceswapError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})")
    if device.type == "cuda":
        if name == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return name
    if name == "fp16":
        raise FaceswapError("--precision fp16 needs a CUDA GPU (use bf16 or fp32 on CPU)")
    if name == "auto":
        # Measured on a 2-core AVX512-BF16 EPYC: ~2x the fp32 speed (bench/train.py). Without native
        # bf16, oneDNN emulates it and is slower than fp32.
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return name


def _check_options(cfg: TrainConfig) -> None:
    get_preset(cfg.preset)
    check_loss(cfg.loss)
    if cfg.augment.warp not in WARPS:
        raise FaceswapError(f"unknown warp {cfg.augment.warp!r} (choose from {', '.join(WARPS)})")
    for name in ("batch_size", "save_every", "preview_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise FaceswapError(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.refine is not None and cfg.refine not in REFINE_FACTORS:
        raise FaceswapError(f"--refine must be one of {', '.join(map(str, REFINE_FACTORS))} (0 = no refiner)")
    if cfg.iterations is not None and cfg.iterations < 0:
        raise FaceswapError("--iterations must not be negative")
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise FaceswapError("--minutes must be positive")
    if cfg.lr is not None and not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise FaceswapError(f"--lr must be a positive number (got {cfg.lr:g})")
    if not 0 <= cfg.val_fraction < 1:
        raise FaceswapError("--val-fraction must be in [0, 1)")


def _inspect_model_dir(model_dir: Path, cfg: TrainConfig) -> tuple[dict | None, Checkpoint | None]:
    """Existing config and verified checkpoint of `model_dir` (None, None when new). Writes nothing.

    Resumes only a model faceswap wrote whole: a config.json that describes the architecture plus a
    checkpoint that passes `read_checkpoint`. Anything else (foreign files, a config.json alone or
    without the architecture, a corrupt or diverged checkpoint) is refused, so nothing there is
    overwritten, unless `cfg.overwrite` asks for a new model in that dir.
    """
    if not model_dir.exists():
        return None, None
    if not model_dir.is_dir():
        raise FaceswapError(f"--model-dir {model_dir} exists and is not a folder")
    fresh = "pass --overwrite to start a new model in it"
    if not (model_dir / CONFIG_NAME).exists():
        if not cfg.overwrite and any(not p.name.startswith(".") for p in model_dir.iterdir()):
            raise FaceswapError(f"{model_dir} exists, is not empty and is not a faceswap model dir; choose a new --model-dir, or {fresh}")
        return None, None
    if cfg.overwrite:
        return None, None
    try:
        old = read_config(model_dir)
    except FaceswapError as exc:
        raise FaceswapError(f"{exc}; {fresh}") from exc
    try:
        Preset.from_json(old["architecture"])
        if not isinstance(old["preset"], str) or not isinstance(old["coverage"], str) or not isinstance(old["learn_mask"], bool):
            raise TypeError("preset, coverage or learn_mask")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FaceswapError(f"{model_dir / CONFIG_NAME} does not describe a model faceswap wrote (no usable {exc}); {fresh}") from exc
    if old.get("preset") != cfg.preset:
        raise FaceswapError(f"{model_dir} holds a {old.get('preset')!r} model, not {cfg.preset!r}: "
                            f"pass --preset {old.get('preset')} to resume it, or choose another --model-dir")
    if bool(old.get("learn_mask")) != cfg.learn_mask:
        flag = "--learn-mask" if old.get("learn_mask") else "no --learn-mask"
        raise FaceswapError(f"{model_dir} was trained with{'' if old.get('learn_mask') else 'out'} a learned mask: resume it with {flag}")
    if cfg.refine is not None and int(old.get("refine", 0)) != cfg.refine:
        raise FaceswapError(f"{model_dir} holds a model with refine factor {int(old.get('refine', 0))}: resume it with "
                            f"--refine {int(old.get('refine', 0))} (or leave --refine out)")
    if not (model_dir / WEIGHTS_NAME).exists():
        # Also what a first run killed between writing config.json and its first save leaves (milliseconds).
        raise FaceswapError(f"{model_dir} holds a {CONFIG_NAME} but no {WEIGHTS_NAME}, so there is no model to resume; {fresh}")
    try:
        ckpt = read_checkpoint(model_dir)
    except FaceswapError as exc:
        raise FaceswapError(f"{exc}; train leaves it as it is: restore a good copy, or {fresh}") from exc
    return old, ckpt


# What `faceswap.atomic.atomic_write_bytes` names its temp files: `.<name>.<pid>-<thread id>.tmp`.
_TEMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-\d+\.tmp$")


def _remove_stale_temps(model_dir: Path) -> list[Path]:
    """Delete the temp files that saves killed mid-write left in `model_dir` (and previews/); a
    killed `model.safetensors` save leaves one the size of the checkpoint, each kill another.

    Temps of a live process (a save in flight) are kept: their pid is in the name.
    """
    removed = []
    for folder in (model_dir, model_dir / "previews"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            m = _TEMP_NAME.match(p.name)
            if not m or not p.is_file() or pid_alive(int(m["pid"])):
                continue
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _batch_size(cfg: TrainConfig, a: FaceSet, b: FaceSet, console: Console) -> int:
    n = min(len(a.train), len(b.train))
    if n < cfg.batch_size:
        console.print(f"[yellow]Warning:[/] only {n} training faces in the smaller set; batch size {cfg.batch_size} -> {n}")
        return n
    return cfg.batch_size


# --- evaluation and outputs -------------------------------------------------------------------------


def _eval_faces(held_out: torch.Tensor, n: int) -> torch.Tensor:
    """A fixed, evenly spaced subset of held-out faces, `(<=n, 3, S, S)` uint8."""
    if len(held_out) <= n:
        return held_out
    return held_out[torch.linspace(0, len(held_out) - 1, n).round().long()]


@torch.no_grad()
def evaluate(model: SwapModel, faces: dict[str, torch.Tensor], masks: torch.Tensor, cfg: TrainConfig) -> tuple[dict, dict]:
    """Validation loss and face SSIM of each identity's held-out faces through its own decoder.

    Runs in fp32 even when training uses bf16 autocast: bf16 inference measured ~0.01 lower SSIM, and
    this is the number reported. `faces`: identity -> `(N, 3, S, S)` uint8; `masks`: `(2, S, S)`.
    """
    losses, ssims = {}, {}
    for ident, x in faces.items():
        if len(x) == 0:
            continue
        x = x.float() / 255
        out = model.decoders[ident](model.encoder(x))
        m = masks[None].expand(len(x), -1, -1, -1)
        losses[ident] = training_loss(out.float(), x, m, cfg.loss, cfg.eye_mouth_weight).item()
        ssims[ident] = face_ssim(out[:, :3].float(), x, m[:, :1]).mean().item()
    return losses, ssims


@torch.no_grad()
def evaluate_refiners(model: SwapModel, faces: dict[str, tuple[torch.Tensor, torch.Tensor]], masks: torch.Tensor) -> dict[str, str]:
    """log.csv figures of the refiners on held-out faces: face SSIM at the hi-res size of each
    identity's refined reconstruction against the real face, and its sharpness ratio (1 = as sharp).

    `faces`: identity -> (`(N, 3, S, S)`, `(N, 3, H, H)`) uint8, the same faces at both sizes."""
    out = {}
    for ident, (lo, hi) in faces.items():
        rgb = model.refiners[ident](model.reconstruct(lo.float() / 255, ident)[0]).float()
        real = hi.float() / 255
        m = torch.nn.functional.interpolate(masks[None, :1], size=real.shape[-2:], mode="bilinear", align_corners=False)
        out[f"val_ssim_hr_{ident}"] = f"{face_ssim(rgb, real, m).mean().item():.4f}"
        out[f"val_sharp_{ident}"] = f"{sharpness_ratio(rgb, real, m).median().item():.3f}"
    return out


@torch.no_grad()
def make_preview_hr(model: SwapModel, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Refined preview at the refiners' size: columns A, A>B for each of `a`'s faces, then B, B>A.

    `a`, `b`: `(N, 3, S, S)` uint8 held-out faces. Returns `(H, W, 3)` uint8. The real faces are the
    S-px ones upscaled: what the refiner starts from, beside what it makes."""
    up = lambda x: torch.nn.functional.interpolate(x, size=model.out_size, mode="bicubic", align_corners=False).clamp(0, 1)  # noqa: E731
    fa, fb = a.float() / 255, b.float() / 255
    rows = [torch.cat([up(fa), model.swap(fa, "a2b", refine=True)[0].float()], 3),
            torch.cat([up(fb), model.swap(fb, "b2a", refine=True)[0].float()], 3)]
    grid = torch.cat([torch.cat(list(r), 1) for r in rows], 2)  # (3, N*H, 4*H)
    return (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu()


@torch.no_grad()
def make_preview(model: SwapModel, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Preview grid, rows A, A->A, A->B, B, B->B, B->A, as `(H, W, 3)` uint8 with row labels.

    `a`, `b`: `(N, 3, S, S)` uint8 held-out faces (the same N columns for both).
    """
    import cv2
    import numpy as np

    fa, fb = a.float() / 255, b.float() / 255
    rows = [("A", fa), ("A>A", model.reconstruct(fa, "a")[0]), ("A>B", model.swap(fa, "a2b")[0]),
            ("B", fb), ("B>B", model.reconstruct(fb, "b")[0]), ("B>A", model.swap(fb, "b2a")[0])]
    s = a.shape[-1]
    n = max(len(a), len(b))
    label_w = 40
    grid = np.zeros((len(rows) * s, label_w + n * s, 3), np.uint8)
    for r, (label, imgs) in enumerate(rows):
        imgs = (imgs.float().cpu().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        for c, img in enumerate(imgs):
            grid[r * s:(r + 1) * s, label_w + c * s:label_w + (c + 1) * s] = img
        cv2.putText(grid, label, (3, r * s + s // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return torch.from_numpy(grid)


def _write_png(path: Path, rgb: torch.Tensor) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb.numpy(), cv2.COLOR_RGB2BGR))
    if ok:
        atomic_write_bytes(path, buf.tobytes())


def _read_log(path: Path, upto: int) -> list[dict]:
    """Rows of log.csv up to iteration `upto` (rows after the last save are dropped on resume)."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                if int(row["iteration"]) <= upto:
                    rows.append(row)
            except (KeyError, TypeError, ValueError):
                continue  # a line cut by a kill
    return rows


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, LOG_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def _plot_losses(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    it = [int(r["iteration"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, style in [("loss_a", "C0-"), ("loss_b", "C1-"), ("val_loss_a", "C0--"), ("val_loss_b", "C1--")]:
        vals = [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in rows]
        ax.plot(it, vals, style, label=key.replace("_", " "), lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


class _StopSignal:
    """First Ctrl-C (or SIGTERM) asks the loop to stop after the current step and save; a second aborts."""

    def __init__(self, console: Console):
        self.requested, self.console, self.prev = False, console, {}

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("[yellow]Stopping after this step and saving (Ctrl-C again to abort without saving)[/]")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.prev[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, prev in self.prev.items():
            signal.signal(sig, prev)


def _fmt_time(s: float) -> str:
    s = int(max(s, 0))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# --- the loop ---------------------------------------------------------------------------------------


def train(cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or resume) the model in `cfg.model_dir`. Raises FaceswapError on bad input, writing nothing."""
    from contextlib import nullcontext

    threads, had_group = torch.get_num_threads(), dist.is_initialized()
    try:
        # One training per model dir (rank 0 holds it for all ranks): a second is refused before it writes.
        with OutputLock(cfg.model_dir, "train") if _dist_env()[0] == 0 else nullcontext():
            return _train(cfg, console)
    finally:
        torch.set_num_threads(threads)  # `cfg.threads` is for this run only
        if dist.is_initialized() and not had_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, console: Console | None) -> TrainResult:
    rank, world = _dist_env()
    console = console or Console(stderr=True)
    if cfg.quiet or rank != 0:
        console = Console(stderr=True, quiet=True)
    _check_options(cfg)
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    # CPU threads: --threads, or as many as the machine's other load leaves free, re-checked every
    # 10 s (beside another busy job, 2 threads on 2 cores ran lite at 3.5 EG/s and 1 thread at 8.1).
    threads = LoadAwareThreads(fixed=cfg.threads) if device.type == "cpu" else None
    if threads is not None:
        threads.start()
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = _resolve_precision(cfg.precision, device)
    preset = get_preset(cfg.preset)
    model_dir = Path(cfg.model_dir)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    # Everything that can fail on bad input happens before the first write.
    old_config, ckpt = _inspect_model_dir(model_dir, cfg)
    if cfg.init is not None and ckpt is not None:
        raise FaceswapError(f"--init starts a new model, but {model_dir} already holds one: resume it without --init, "
                            f"or pass --overwrite to replace it")
    if rank == 0 and model_dir.is_dir():  # also when there is nothing to train: a kill's leftovers are never useful
        _remove_stale_temps(model_dir)
    budget = int(cfg.max_memory_gb * 2**30) // 2
    if old_config:
        refine = int(old_config.get("refine", 0))
    elif cfg.refine is not None:
        refine = cfg.refine
    else:
        sides = [face_side(cfg.faces_a), face_side(cfg.faces_b)]
        refine = default_factor(preset.size, min(sides)) if None not in sides else 0
    hires = preset.size * refine if refine else 0
    faces_a = load_faces(cfg.faces_a, preset.size, cfg.val_fraction, budget, "A", hires)
    faces_b = load_faces(cfg.faces_b, preset.size, cfg.val_fraction, budget, "B", hires)
    if faces_a.coverage != faces_b.coverage:
        raise FaceswapError(f"A faces have coverage {faces_a.coverage!r} but B faces {faces_b.coverage!r}; extract both with one --coverage")
    coverage = faces_a.coverage
    if old_config and old_config.get("coverage") != coverage:
        raise FaceswapError(f"{model_dir} was trained on {old_config.get('coverage')!r} coverage faces, these are {coverage!r}")
    batch = _batch_size(cfg, faces_a, faces_b, console)
    if ckpt is not None and cfg.iterations is not None and ckpt.iteration >= cfg.iterations:
        console.print(f"Already trained to iteration {ckpt.iteration} (--iterations {cfg.iterations}); nothing to do.")
        return TrainResult(model_dir, ckpt.iteration, "iterations", {}, {}, 0.0)
    if world > 1:
        dist.barrier()  # every rank has inspected the dir before rank 0 writes to it

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(preset, coverage, cfg.learn_mask, refine)
    fingerprints = {"a": faces_fingerprint(cfg.faces_a), "b": faces_fingerprint(cfg.faces_b)}
    init_line = init_from(model, Path(cfg.init), fingerprints).line() if cfg.init is not None else None
    lr = cfg.lr if cfg.lr is not None else preset.lr
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt.weights, strict=True)
        except RuntimeError as exc:
            raise FaceswapError(f"checkpoint in {model_dir} does not fit the {cfg.preset!r} preset ({str(exc).splitlines()[0]})") from exc
    model.to(device)
    # beta1 0.5: the deepfakes setting. fused: one kernel for all parameters; the default per-tensor
    # loop took 2.4 s a step for `original` on this CPU, fused 0.24 s (measured, 1 thread).
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), fused=True)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 1_000_003 * rank)
    start, elapsed_before = 0, 0.0
    if ckpt is not None:
        try:
            unpack_optimizer(opt, ckpt.train_tensors, ckpt.train_meta["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise FaceswapError(f"checkpoint in {model_dir} does not fit the {cfg.preset!r} preset ({str(exc).splitlines()[0]})") from exc
        state = unpack_generator(ckpt.train_tensors, rank)
        if state is not None:
            gen.set_state(state)
        elif world > 1:
            console.print(f"[yellow]Warning:[/] no saved RNG state for rank {rank}; this resume is not an exact replay")
        start, elapsed_before = ckpt.iteration, float(ckpt.train_meta.get("elapsed_s", 0.0))
        if not ckpt.train_verified:
            console.print(f"[yellow]Warning:[/] {model_dir / WEIGHTS_NAME} predates training-state checksums: its weights are "
                          f"verified, its optimizer/RNG state only checked to be finite (the next save adds the checksum)")
        for g in opt.param_groups:
            g["lr"] = lr
        ckpt.weights.clear()  # the model holds its own copy now (read_checkpoint's are not in the file's memory map)

    ddp = None
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step_model = ddp or model
    if cfg.compile:
        step_model = torch.compile(step_model)

    masks = torch.cat([template_face_mask(preset.size, coverage), template_eye_mouth_mask(preset.size, coverage)]).to(device)
    augment = Augmenter(preset.size, masks, cfg.augment)
    side = patch_side(preset.size)  # refiner training patches, in model px
    train_a, train_b = faces_a.train.to(device), faces_b.train.to(device)
    train_hr = {"a": faces_a.train_hr, "b": faces_b.train_hr} if refine else {}  # stay on the CPU: only PATCHES are sent per step
    val = {"a": _eval_faces(faces_a.held_out, VAL_FACES).to(device), "b": _eval_faces(faces_b.held_out, VAL_FACES).to(device)}
    val_hr = {k: (_eval_faces(f.held_out, VAL_FACES_HR).to(device), _eval_faces(f.held_out_hr, VAL_FACES_HR).to(device))
              for k, f in (("a", faces_a), ("b", faces_b)) if refine and len(f.held_out)}
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if scaler and ckpt is not None and ckpt.train_meta.get("scaler"):
        scaler.load_state_dict(ckpt.train_meta["scaler"])

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)

    flops = forward_flops(model)
    params = count_parameters(model)
    train_json = {**cfg.to_json(), "batch_size_used": batch, "lr_used": lr, "device": str(device), "precision_used": precision,
                  "threads_used": torch.get_num_threads(), "world_size": world, "torch": torch.__version__,
                  "faces": {k: {"folder": str(f.folder.resolve()), "train": len(f.train), "held_out": len(f.held_out),
                                "cache_bytes": f.nbytes, "notes": f.notes, "fingerprint": fingerprints[k]}
                            for k, f in (("a", faces_a), ("b", faces_b))},
                  "init_from": init_line}
    if rank == 0:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "previews").mkdir(exist_ok=True)
        runs = (old_config or {}).get("runs", [])
        runs.append({"started": dt.datetime.now().isoformat(timespec="seconds"), "start_iteration": start, "train": train_json})
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "faceswap_version": __version__,
                  **model.describe(), "train": train_json, "runs": runs}
        atomic_write_bytes(model_dir / CONFIG_NAME, json.dumps(config, indent=2).encode())

    console.print(f"[bold]{preset.name}[/] ({preset.description}): {params / 1e6:.1f} M parameters, "
                  f"{flops / 1e9:.2f} GFLOP per example forward (~{3 * flops / 1e9:.1f} per training example)")
    for ident, f in (("A", faces_a), ("B", faces_b)):
        console.print(f"{ident}: {len(f.train)} faces to train on, {len(f.held_out)} held out, {preset.size} px "
                      f"{f.coverage} coverage, cache {f.nbytes / 2**20:.1f} MiB ({f.folder})")
        for note in f.notes:
            console.print(f"[yellow]Note:[/] {ident}: {note}")
        mixed = mixed_people(list_images(f.folder)) if rank == 0 else None
        if mixed:
            console.print(f"[yellow]Warning:[/] {ident} ({f.folder}): {mixed}")
    console.print(f"device {device}, {precision}, batch {batch} + {batch}" + (f" on each of {world} ranks" if world > 1 else "")
                  + f", loss {cfg.loss}, lr {lr:g}" + (f", resuming at iteration {start}" if start else ""))
    if init_line:
        console.print(init_line[0].upper() + init_line[1:])
    if refine:
        console.print(f"refiners: {preset.size} -> {preset.size * refine} px, trained on {PATCHES} patches of each identity "
                      f"per step (faces loaded at {hires} px)")
    elif cfg.refine is None and not old_config:
        console.print(f"[yellow]Note:[/] no refiner: the faces are smaller than {2 * preset.size} px, so convert pastes "
                      f"{preset.size} px faces (extract with a larger --size for sharper swaps)")

    log_path = model_dir / "log.csv"
    log_rows = _read_log(log_path, start) if rank == 0 else []

    # NaN protection. A diverged step leaves NaN/inf in the weights and Adam state for good, so
    # before a save or preview the loss since the start and the state are checked; on NaN the run
    # stops with one line and the last good save stays (deepfakes/faceswap's nan_protection does
    # the same). Not a rollback with a lower lr: that would change the run behind the user's back,
    # and a resume with the same options replays the same divergence, so the user picks the new --lr.
    nonfinite_loss = torch.zeros((), dtype=torch.bool, device=device)  # accumulated on the device: no sync per step
    last_good = {"it": start, "checked": -1}

    def check_finite(it: int) -> None:
        if last_good["checked"] == it:
            return
        bad = "loss" if bool(nonfinite_loss) else first_nonfinite({**model.state_dict(), **pack_optimizer(opt)[0]})
        if world > 1:  # every rank stops together (they hold the same weights, not the same losses)
            flag = torch.tensor([float(bad is not None)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            bad = bad or ("loss or weights on another rank" if flag.item() else None)
        if bad is not None:
            raise FaceswapError(f"training diverged by iteration {it} (NaN/inf in the {bad}); nothing saved: "
                                f"{model_dir / WEIGHTS_NAME} keeps iteration {last_good['it']}. Resume it with a lower --lr "
                                f"(this run used {lr:g})")
        last_good["checked"] = it

    def save(it: int, elapsed: float) -> None:
        check_finite(it)
        states = [gen.get_state()]
        if world > 1:  # every rank's RNG state, so a resume replays each rank's batches
            mine = gen.get_state().to(device)
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)
            states = [s.cpu() for s in gathered]
        if rank != 0:
            return
        opt_tensors, opt_meta = pack_optimizer(opt)
        meta = {"optimizer": opt_meta, "elapsed_s": elapsed, "world_size": world,
                "scaler": scaler.state_dict() if scaler else None}
        save_checkpoint(model_dir, model, it, {**opt_tensors, **pack_generators(states)}, meta)
        last_good["it"] = it
        _write_log(log_path, log_rows)

    def preview(it: int) -> None:
        check_finite(it)  # a diverged model previews as black boxes over the last good preview
        if rank != 0:
            return
        _plot_losses(model_dir / "loss.png", log_rows)
        if not len(faces_a.held_out) or not len(faces_b.held_out):
            return
        n = min(PREVIEW_FACES, len(faces_a.held_out), len(faces_b.held_out))
        model.eval()
        grid = make_preview(model, _eval_faces(faces_a.held_out, n).to(device), _eval_faces(faces_b.held_out, n).to(device))
        model.train()
        _write_png(model_dir / "previews" / f"{it:07d}.png", grid)
        _write_png(model_dir / "preview.png", grid)
        if refine:
            model.eval()
            hr = make_preview_hr(model, _eval_faces(faces_a.held_out, 4).to(device), _eval_faces(faces_b.held_out, 4).to(device))
            model.train()
            _write_png(model_dir / "preview_hr.png", hr)

    if ckpt is None:
        save(0, 0.0)  # from here on the dir always holds a loadable model

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), TextColumn("{task.fields[stats]}"),
                        console=console, transient=False, refresh_per_second=4)
    total = cfg.iterations - start if cfg.iterations is not None else None
    task = progress.add_task(f"it {start}", total=total, stats="starting")
    it, stopped = start, "interrupted"
    t0 = time.perf_counter()
    win_t, win_it, win_loss = t0, 0, torch.zeros(2, device=device)  # live-line window
    log_t, log_it, log_loss = t0, 0, torch.zeros(2, device=device)  # log.csv window
    val_loss: dict = {}
    val_ssim: dict = {}
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else math.inf
    model.train()
    with _StopSignal(console) as stop, progress:
        while True:
            reasons = []
            if cfg.iterations is not None and it >= cfg.iterations:
                reasons.append("iterations")
            if time.perf_counter() >= deadline:
                reasons.append("minutes")
            if stop.requested:
                reasons.append("interrupted")
            if world > 1:  # all ranks must stop at the same step
                flag = torch.tensor([float(bool(reasons))], device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                if flag.item() and not reasons:
                    reasons.append("interrupted")
            if reasons:
                stopped = reasons[0]
                break

            idx_a, idx_b = sample_indices(len(train_a), batch, gen), sample_indices(len(train_b), batch, gen)
            xa, ya, ma, draw_a = augment.augment(train_a[idx_a.to(train_a.device)], gen)
            xb, yb, mb, draw_b = augment.augment(train_b[idx_b.to(train_b.device)], gen)
            patches = None
            if refine:
                k = min(PATCHES, batch)
                patches = {"a": random_origins(k, preset.size, gen), "b": random_origins(k, preset.size, gen)}
            with autocast():
                outs = step_model(xa, xb, patches)
            loss_a = training_loss(outs[0].float(), ya, ma, cfg.loss, cfg.eye_mouth_weight)
            loss_b = training_loss(outs[1].float(), yb, mb, cfg.loss, cfg.eye_mouth_weight)
            total = loss_a + loss_b
            if refine:
                for ident, idx, draw, m, pred in (("a", idx_a, draw_a, ma, outs[2]), ("b", idx_b, draw_b, mb, outs[3])):
                    y0, x0 = patches[ident]
                    target = augment.hires_patches(train_hr[ident][idx[:k].cpu()].to(device), draw, y0, x0, side)
                    total = total + refiner_loss(pred.float(), target, m[:k, :1], y0, x0, side)
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(total).backward()
                scaler.step(opt)
                scaler.update()
            else:
                total.backward()
                opt.step()
            it += 1
            if threads is not None:
                was = threads.threads
                if threads.update() != was:
                    console.print(f"[dim]threads {was} -> {threads.threads} (other jobs keep {threads.other_load:.1f} CPUs busy)[/]")
            losses = torch.stack([loss_a.detach(), loss_b.detach()])
            if scaler is None:  # fp16's scaler skips the steps whose loss overflowed: those leave the weights finite
                nonfinite_loss |= ~torch.isfinite(losses).all()
            win_it, win_loss, log_it, log_loss = win_it + 1, win_loss + losses, log_it + 1, log_loss + losses

            now = time.perf_counter()
            if it % cfg.log_every == 0 and rank == 0:
                model.eval()
                val_loss, val_ssim = evaluate(model, val, masks, cfg)
                val_hr_figures = evaluate_refiners(model, val_hr, masks) if refine else {}
                model.train()
                la, lb = (log_loss / log_it).tolist()
                log_rows.append({"iteration": it, "elapsed_s": f"{elapsed_before + now - t0:.1f}", "loss_a": f"{la:.5f}", "loss_b": f"{lb:.5f}",
                                 "val_loss_a": f"{val_loss.get('a', math.nan):.5f}", "val_loss_b": f"{val_loss.get('b', math.nan):.5f}",
                                 "val_ssim_a": f"{val_ssim.get('a', math.nan):.4f}", "val_ssim_b": f"{val_ssim.get('b', math.nan):.4f}",
                                 "eg_per_s": f"{2 * batch * world * log_it / (now - log_t):.1f}", **val_hr_figures})
                log_t, log_it, log_loss = time.perf_counter(), 0, torch.zeros(2, device=device)
            if now - win_t > 1.0 and rank == 0:  # the live line, about once a second (.tolist() syncs a GPU)
                la, lb = (win_loss / win_it).tolist()
                if world == 1 and not math.isfinite(la + lb):
                    check_finite(it)  # stop within a second of diverging, not at the next save
                egs = 2 * batch * world * win_it / (now - win_t)
                left = [deadline - now]
                if cfg.iterations is not None:
                    left.append((cfg.iterations - it) * (now - t0) / (it - start))
                eta = min(left)
                val_txt = f" | val {val_loss.get('a', math.nan):.4f} {val_loss.get('b', math.nan):.4f}" if val_loss else ""
                progress.update(task, completed=it - start, description=f"it {it}",
                                stats=f"loss A {la:.4f} B {lb:.4f}{val_txt} | {egs:.1f} EG/s | {_fmt_time(now - t0)}"
                                      + (f" ETA {_fmt_time(eta)}" if math.isfinite(eta) else ""))
                win_t, win_it, win_loss = time.perf_counter(), 0, torch.zeros(2, device=device)
            if it % cfg.preview_every == 0:
                preview(it)
            if it % cfg.save_every == 0:
                save(it, elapsed_before + time.perf_counter() - t0)

        if it % cfg.save_every:
            save(it, elapsed_before + time.perf_counter() - t0)
        if it % cfg.preview_every and it > start:
            preview(it)
    run_s = time.perf_counter() - t0
    console.print(f"Stopped ({stopped}) at iteration {it}; model saved in {model_dir}")
    return TrainResult(model_dir, it, stopped, val_loss, val_ssim, 2 * batch * world * (it - start) / max(run_s, 1e-9), model)


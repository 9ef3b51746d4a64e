"""`faceswap train-occlusion`: teach a model dir's occlusion net (`model.occlusion`) what its faces
look like, from synthetic occluders pasted over them (`train.occluders`).

One step: `batch_size` faces drawn from both identities' folders (convert may run either way),
flipped and lightness-jittered, occluded, reconstructed by the (frozen) swap model with their own
identity's decoder, as convert will, and one Adam step on a binary cross-entropy
against the occluder's alpha plus a soft Dice term, both inside the (slightly grown) face ellipse
where the paste mask can reach; outside it nothing is pasted, so nothing there is asked of the net.
Every `save_every` steps (and at the end, on Ctrl-C or SIGTERM) the net is validated on held-out
faces with a fixed set of occluders and saved atomically. Running again continues from the saved
net unless `overwrite`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from faceswap.device import pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.align import template_face_mask
from faceswap.lock import OutputLock
from faceswap.model.autoencoder import load_model, read_config
from faceswap.model.occlusion import (
    SIZE, OcclusionInfo, OcclusionNet, has_occlusion, load_occlusion, occlusion_input, occlusion_probs, save_occlusion,
)
from faceswap.train.data import load_faces
from faceswap.train.occluders import occlude

VAL_FACES = 64
LOSS_RADIUS = 1.2  # the face ellipse grown by this factor: where the loss looks


@dataclass
class OcclusionTrainConfig:
    """Everything `faceswap train-occlusion` can be told."""

    model_dir: Path
    faces_a: Path | None = None  # None: the folders the model was trained on (config.json)
    faces_b: Path | None = None
    minutes: float | None = 15.0
    iterations: int | None = None  # total steps to reach (None: until `minutes`)
    batch_size: int = 16
    lr: float = 1e-3
    save_every: int = 250
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    overwrite: bool = False  # start a new net instead of continuing the saved one


@dataclass
class OcclusionSummary:
    iterations: int = 0
    seconds: float = 0.0
    val_iou: float | None = None
    val_clear: float | None = None  # mean flagged share of occluder-free held-out faces (lower is better)
    faces: int = 0
    stopped: str = ""

    def line(self) -> str:
        iou = f"held-out IoU {self.val_iou:.3f}" if self.val_iou is not None else "not validated"
        clear = f", clear faces flagged {self.val_clear:.2%}" if self.val_clear is not None else ""
        return f"{self.iterations} iterations on {self.faces} faces in {self.seconds / 60:.1f} min ({self.stopped}); {iou}{clear}"


def _face_folders(cfg: OcclusionTrainConfig, model_cfg: dict) -> list[Path]:
    """The A and B face folders: as given, else those config.json says the model was trained on."""
    train = model_cfg.get("train") or {}
    folders = []
    for key, given in (("faces_a", cfg.faces_a), ("faces_b", cfg.faces_b)):
        folder = given or train.get(key)
        if not folder:
            raise FaceswapError(f"{cfg.model_dir}/config.json names no {key[-1].upper()} face folder: "
                                f"pass it with --{key[-1]}")
        folders.append(Path(folder))
    return folders


def reconstruct(model, faces: torch.Tensor, identities: torch.Tensor) -> torch.Tensor:
    """The swap model's own reconstruction of each face, `(B, 3, size, size)`: identity 0 through
    decoder ``a``, 1 through ``b`` (as convert's source side does)."""
    out = torch.empty(len(faces), 3, model.size, model.size, device=faces.device)
    for code, name in ((0, "a"), (1, "b")):
        pick = identities == code
        if pick.any():
            out[pick] = model.reconstruct(faces[pick], name)[0].float()
    return out


def validate(net: OcclusionNet, faces: torch.Tensor, region: torch.Tensor, coverage: str, model,
             identities: torch.Tensor | None = None, seed: int = 1234) -> tuple[float, float]:
    """Mean IoU (inside `region`, at p = 0.5) on `faces` `(N, 3, S, S)` float with a fixed draw of
    occluders, and the mean share flagged on the faces the draw left clear. Deterministic.
    The swap `model` reconstructs each face with its identity's decoder (`identities`: 0 = a,
    1 = b; default all a)."""
    gen = torch.Generator().manual_seed(seed)
    x, alpha = occlude(faces, gen, coverage)
    ids = identities if identities is not None else torch.zeros(len(x), dtype=torch.long)
    was = net.training
    net.eval()
    with torch.no_grad():
        p = torch.cat([occlusion_probs(net, x[i : i + 16], reconstruct(model, x[i : i + 16], ids[i : i + 16]), x.shape[-1])
                       for i in range(0, len(x), 16)])
    net.train(was)
    pred, truth = (p > 0.5) & region, (alpha > 0.5) & region
    has = truth.flatten(1).any(1)
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    iou = float((inter[has] / union[has].clamp_min(1)).mean()) if has.any() else float("nan")
    clear = ~(alpha > 0.05).flatten(1).any(1)
    flagged = float((pred.flatten(1).sum(1).float() / region.flatten(1).sum(1))[clear].mean()) if clear.any() else float("nan")
    return iou, flagged


def train_occlusion(cfg: OcclusionTrainConfig, console: Console | None = None, show_progress: bool = True) -> OcclusionSummary:
    console = console or Console(stderr=True)
    if cfg.batch_size < 1 or cfg.save_every < 1:
        raise FaceswapError("--batch-size and --save-every must be >= 1")
    if cfg.minutes is None and cfg.iterations is None:
        raise FaceswapError("give --minutes or --iterations")
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise FaceswapError(f"--minutes {cfg.minutes:g} must be > 0")
    model_cfg = read_config(cfg.model_dir)
    coverage = model_cfg["coverage"]
    folders = _face_folders(cfg, model_cfg)
    sets = [load_faces(f, SIZE, val_fraction=0.1, name=f.name) for f in folders]
    for s in sets:
        if s.coverage != coverage:
            raise FaceswapError(f"faces in {s.folder} have coverage {s.coverage!r}, the model {coverage!r}")
    train = torch.cat([s.train for s in sets])
    train_ids = torch.cat([torch.full((len(s.train),), k, dtype=torch.long) for k, s in enumerate(sets)])
    held_sets = [s.held_out[: VAL_FACES // len(sets)] for s in sets]
    held = torch.cat(held_sets).float().div(255)
    held_ids = torch.cat([torch.full((len(h),), k, dtype=torch.long) for k, h in enumerate(held_sets)])
    device = pick_device(cfg.device)
    model = load_model(cfg.model_dir, device)  # frozen: its reconstructions are evidence, not trained
    torch.manual_seed(cfg.seed)
    net, start, done_before = OcclusionNet(), 0, 0
    if has_occlusion(cfg.model_dir) and not cfg.overwrite:
        net, info = load_occlusion(cfg.model_dir)
        if info.size != SIZE or info.coverage != coverage:
            raise FaceswapError(f"the saved occlusion net is for {info.size} px {info.coverage!r} crops; use --overwrite")
        start = done_before = info.iterations
        console.print(f"continuing the occlusion net in {cfg.model_dir} from iteration {start}")
    net.size = SIZE
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    region = template_face_mask(SIZE, coverage, feather=0.05, radius=LOSS_RADIUS)[None] > 0.5  # (1, 1, S, S)
    weight = region.float().to(device)
    gen = torch.Generator().manual_seed(cfg.seed + start)
    summary = OcclusionSummary(faces=len(train))

    def save(it: int) -> None:
        iou, clear = validate(net, held.to(device), region.to(device), coverage, model, held_ids.to(device))
        summary.val_iou, summary.val_clear = iou, clear
        save_occlusion(cfg.model_dir, net, OcclusionInfo(SIZE, coverage, it, round(iou, 4), [str(f) for f in folders]))

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), TextColumn("{task.fields[stats]}"),
                        TimeElapsedColumn(), console=console, disable=not show_progress)
    total = cfg.iterations - start if cfg.iterations is not None else None
    t0 = time.perf_counter()
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else math.inf
    it, running = start, None
    from faceswap.train.loop import _StopSignal  # the train command's Ctrl-C / SIGTERM handling

    with OutputLock(cfg.model_dir, "train-occlusion"), torch_threads(cfg.threads), _StopSignal(console) as stop, progress:
        task = progress.add_task(f"occlusion it {start}", total=total, stats="starting")
        while True:
            if cfg.iterations is not None and it >= cfg.iterations:
                summary.stopped = "iterations"
            elif time.perf_counter() >= deadline:
                summary.stopped = "minutes"
            elif stop.requested:
                summary.stopped = "interrupted"
            if summary.stopped:
                break
            idx = torch.randint(len(train), (cfg.batch_size,), generator=gen)
            faces = train[idx].float().div(255)
            flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
            faces = torch.where(flip[:, None, None, None], faces.flip(-1), faces)
            gain = 1 + (torch.rand(cfg.batch_size, 1, 1, 1, generator=gen) - 0.5) * 0.4
            faces = (faces * gain).clamp(0, 1)
            x, alpha = occlude(faces, gen, coverage)
            x, alpha = x.to(device), alpha.to(device)
            with torch.no_grad():
                recon = reconstruct(model, x, train_ids[idx].to(device))
            logits = net(occlusion_input(x, recon, SIZE))
            bce = (F.binary_cross_entropy_with_logits(logits, alpha, reduction="none") * weight).sum() / weight.sum() / len(x)
            p = torch.sigmoid(logits) * weight
            t = alpha * weight
            dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
            loss = bce + 0.5 * dice
            if not torch.isfinite(loss):
                raise FaceswapError(f"occlusion training diverged at iteration {it} (loss {float(loss)}); "
                                    f"the last save in {cfg.model_dir} is kept")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            it += 1
            value = loss.item()
            running = value if running is None else 0.95 * running + 0.05 * value
            if (it - start) % cfg.save_every == 0:
                save(it)
            iou = f", held-out IoU {summary.val_iou:.3f}" if summary.val_iou is not None else ""
            progress.update(task, advance=1, description=f"occlusion it {it}", stats=f"loss {running:.4f}{iou}")
        if it > done_before or not has_occlusion(cfg.model_dir):
            save(it)
    summary.iterations, summary.seconds = it, time.perf_counter() - t0
    return summary

"""S4, blend: a small CNN that tells a pasted face from a real one, trained on real faces alone.

Its fakes are the self- and cross-blends of `selfblend.py`, made afresh every step from the real
training faces, so what it learns is the paste (a seam, a colour or sharpness step, a resampled
region) and not any one swap model's decoder. Two heads:

    x (B, 3, S, S) -> conv stem at S -> stride-2 stages to S/4 -> seam head: (B, 1, S/4, S/4) logits of
                      the blend boundary 4 m (1 - m) (Face X-ray's target; dense supervision that
                      makes the few thousand CPU steps count)
                   -> two more stride-2 stages -> global average -> 1 logit "pasted"

    s4_blend = the global logit                                        (B,)
    s4_seam  = mean of the top 2 % of the seam map's logits            (B,)

Real and fake faces meet the same augmentations (mirror, JPEG, a down-up resample, noise, blur),
so a codec or a soft camera is not evidence of a paste.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from faceswap.detect.optimise import optimise
from faceswap.detect.selfblend import blend_fakes, gaussian_blur

SEAM_TOP = 0.02  # share of the seam map averaged into s4_seam


@dataclass
class BlendConfig:
    """The S4 net and its training run. `minutes` (if set) stops training early."""

    width: int = 12  # channels of the stem; the stages widen to 6x
    iterations: int = 600  # ~0.25 s each on an idle 2-core AVX-512 CPU (batch 32 at 128 px)
    batch_size: int = 32  # half real, half blended
    lr: float = 2e-3
    seam_weight: float = 1.0  # weight of the seam map's loss beside the global one
    minutes: float | None = None
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def _block(a: int, b: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(a, b, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]


class BlendNet(nn.Module):
    """`(B, 3, S, S)` in [0, 1] -> (`(B,)` logit, `(B, 1, S/4, S/4)` seam logits); S a multiple of 16."""

    def __init__(self, cfg: BlendConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        # The stem runs at full resolution: a seam is one or two pixels of step, gone after a stride.
        self.stem = nn.Sequential(*_block(3, w, 1), *_block(w, w * 3 // 2, 2), *_block(w * 3 // 2, w * 3 // 2, 1),
                                  *_block(w * 3 // 2, w * 3, 2), *_block(w * 3, w * 3, 1))
        self.seam = nn.Conv2d(w * 3, 1, 1)
        self.deep = nn.Sequential(*_block(w * 3, w * 4, 2), *_block(w * 4, w * 6, 2))
        self.head = nn.Linear(w * 6, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.stem(x - 0.5)
        g = self.deep(f).mean((2, 3))
        return self.head(g)[:, 0], self.seam(f)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`(B, 3, S, S)` in [0, 1] -> what any face, real or pasted, may have been through on its way to
    us: exposure, blur, a down-up resample (a smaller face), sensor noise, JPEG. Each for a random share of the batch."""
    n = len(x)
    share = lambda p: torch.rand(n, generator=gen) < p  # noqa: E731
    x = x * (0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen)) + 0.05 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    pick = share(0.2)
    if pick.any():
        x[pick] = gaussian_blur(x[pick], float(0.3 + 0.9 * torch.rand(1, generator=gen)))
    pick = share(0.3)
    if pick.any():
        scale = float(0.4 + 0.5 * torch.rand(1, generator=gen))
        small = F.interpolate(x[pick], scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)
        x[pick] = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    pick = share(0.2)
    x[pick] = x[pick] + 0.01 * torch.randn(x[pick].shape, generator=gen)
    x = x.clamp(0, 1)
    quality = (30 + 65 * torch.rand(n, generator=gen)).int().tolist()
    for i in torch.nonzero(share(0.5)).flatten().tolist():
        x[i] = jpeg(x[i], quality[i])
    return x


def jpeg(face: torch.Tensor, quality: int) -> torch.Tensor:
    """`(3, S, S)` in [0, 1] through a real JPEG round trip (OpenCV: ~0.3 ms a 128 px face, where
    kornia's differentiable JPEG took 125 ms a batch of 32)."""
    import cv2

    bgr = (face.flip(0).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    _, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_COLOR)).permute(2, 0, 1).flip(0).float().div(255)


def partner_indices(n: int, sources: torch.Tensor | None, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For each face `idx` `(B,)`, the index of another real face (of `n`): of another source when there are several."""
    if sources is None or len(torch.unique(sources)) < 2:
        return torch.randint(n, (len(idx),), generator=gen)
    others = (sources[None, :] != sources[idx][:, None]).float()  # (B, n): the faces of other sources
    return torch.multinomial(others, 1, generator=gen)[:, 0]


def training_batch(data: torch.Tensor, coverage: str, batch: int, gen: torch.Generator,
                   sources: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`data` `(N, 3, S, S)` float real faces -> (faces `(batch, 3, S, S)`, labels `(batch,)`, seams `(batch, 1, S, S)`):
    the first half real, the second half pasted (see selfblend.py), all mirrored and augmented alike."""
    half = batch // 2
    idx = torch.randint(len(data), (batch,), generator=gen)
    real, base = data[idx[:half]], data[idx[half:]]
    partners = data[partner_indices(len(data), sources, idx[half:], gen)]
    fake, seam = blend_fakes(base, coverage, gen, partners)
    x = torch.cat([real, fake])
    seams = torch.cat([torch.zeros_like(seam), seam])
    flip = torch.rand(batch, generator=gen) < 0.5  # mirrored with its seam map
    x[flip], seams[flip] = x[flip].flip(-1), seams[flip].flip(-1)
    with torch.no_grad():
        x = augment(x, gen)
    labels = torch.cat([torch.zeros(half), torch.ones(batch - half)])
    return x, labels, seams


def train_blend(faces: torch.Tensor, coverage: str, config: BlendConfig = BlendConfig(), sources: torch.Tensor | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> BlendNet:
    """Train S4 on real faces `(N, 3, S, S)` uint8 (S a multiple of 16; `sources` `(N,)` int, optional).
    Returns the net in eval mode (CPU). `progress(iteration, total, loss)` is called every few iterations."""
    if faces.shape[-1] % 16:
        raise ValueError(f"blend net face size {faces.shape[-1]} must be a multiple of 16")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    net = BlendNet(config)
    data = faces.float().div(255)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    # Warm-up then anneal; a run too short for a warm-up (OneCycleLR needs >= 10 steps of it) keeps the rate.
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.iterations, pct_start=0.1)
             if config.iterations >= 20 else None)
    net.train()

    def loss_of() -> torch.Tensor:
        x, y, seam = training_batch(data, coverage, config.batch_size, gen, sources)
        logit, seam_logit = net(x)
        target = F.adaptive_max_pool2d(seam, seam_logit.shape[-2:])  # the seam is 1-2 px: keep it when pooling
        return F.binary_cross_entropy_with_logits(logit, y) + config.seam_weight * F.binary_cross_entropy_with_logits(seam_logit, target)

    optimise(loss_of, opt, sched, config.iterations, progress, config.minutes)
    return net.eval()


@torch.no_grad()
def blend_signals(net: BlendNet, faces: torch.Tensor) -> dict[str, torch.Tensor]:
    """`{"s4_blend", "s4_seam"}`, each `(B,)` (see module docs). faces: `(B, 3, S, S)` float in [0, 1]."""
    net.eval()
    logit, seam = net(faces.to(next(net.parameters()).device).float())
    flat = seam.flatten(1)
    k = max(1, round(SEAM_TOP * flat.shape[1]))
    return {"s4_blend": logit, "s4_seam": flat.topk(k, 1).values.mean(1)}

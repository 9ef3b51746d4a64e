"""S2, one-class: a small autoencoder of real faces' high-pass residual. Tells "unlike real faces".

    x (B, 3, S, S) -> resize to `size` -> r = GAIN * (x - gaussian_blur(x, sigma))      residual
    r -> `levels` stride-2 convs -> 1x1 bottleneck (`code` channels) -> `levels` x (conv + bilinear x2) -> conv -> r'
    s2_oneclass = mean of (r - r')^2 inside the eroded template face mask                 (B,)

It is trained on real faces only, with augmentations a real face may meet on its way to us (JPEG at
random quality, a little blur, sensor noise, colour jitter, mirror), so codec traces count as
"real". The residual carries the fine texture (skin, lashes, sensor and codec noise) where decoder
upsampling and pasting leave their traces, not the identity or the light.

Measured (internal run on faces of the real clips A and B at 128 px, held out by time; 300
iterations): the autoencoder explains only ~8 % of a real face's residual energy (it is mostly
unpredictable texture), so the score is dominated by how much residual there is. Swaps of the
64 px `lite` model pasted into those crops score ~5x LOWER than real faces (AUC 1.0 in that
direction), and JPEG at quality 50 or 85 leaves real faces' scores where they were (AUC 0.51 /
0.50): the fusion learns the direction from known swaps; its unsupervised rule counts S2 two-sided.

That amount of residual is also a property of the camera and clip (real A vs real B ROC-AUC 0.92
on the shared clips), so two self-referenced scores compare the pasted inner face with the same
crop's untouched outer ring (`regions.py`), where camera and codec are the same:

    s2_rel_err = log(error in the inner face / error in the outer ring)
    s2_rel_res = log(residual energy r^2 in the inner face / in the outer ring)

Both are lower for a pasted swap (single-signal ROC-AUC 0.84 on the shared clips, lossless) and
cancel the codec (real lossless vs real CRF 35: 0.49), but not the scene: clip C's ring has far
more residual than A's, B's or D's (real-vs-real pair AUCs 0.00 / 1.00 against C; A vs B 0.93).
They count in the fusion beside the other signals (see spectral.py and fusion.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from faceswap.detect.consistency import inner_face_mask
from faceswap.detect.optimise import optimise
from faceswap.detect.regions import log_ratio, outer_ring_mask

GAIN = 8.0  # residuals are a few percent of the signal; scaled to O(1) for the network


@dataclass
class OneClassConfig:
    """The S2 autoencoder and its training run. `minutes` (if set) stops training early."""

    size: int = 96  # px the faces are resized to (a multiple of 2**levels)
    width: int = 24  # channels of the first conv; doubles per level, capped at 4x
    levels: int = 3  # stride-2 convs: the bottleneck is at size / 2**levels
    code: int = 16  # bottleneck channels
    sigma: float = 1.0  # Gaussian blur of the high-pass split, px at `size`
    iterations: int = 600  # ~2.5 min of one CPU core at the defaults (0.25 s per iteration, measured)
    batch_size: int = 32
    lr: float = 2e-3
    minutes: float | None = None
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


class OneClassAE(nn.Module):
    """`(B, 3, S, S)` residual -> `(B, 3, S, S)` reconstruction (S a multiple of 2**levels, linear output)."""

    def __init__(self, cfg: OneClassConfig):
        super().__init__()
        self.cfg = cfg
        w = [cfg.width * min(2**i, 4) for i in range(cfg.levels)]
        act = lambda: nn.LeakyReLU(0.1, inplace=True)  # noqa: E731
        down, chans = [], [3, *w]
        for a, b in zip(chans, chans[1:]):
            down += [nn.Conv2d(a, b, 3, stride=2, padding=1), act()]
        # Decoder convs run before each upsampling, at the lower resolution: 7x cheaper than after.
        up, rchans = [], [cfg.code, *w[::-1][1:], cfg.width // 2]
        for a, b in zip(rchans, rchans[1:]):
            up += [nn.Conv2d(a, b, 3, padding=1), act(), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
        self.encoder = nn.Sequential(*down, nn.Conv2d(w[-1], cfg.code, 1))
        self.decoder = nn.Sequential(*up, nn.Conv2d(cfg.width // 2, 3, 3, padding=1))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(r))


def _prepare(faces: torch.Tensor, size: int) -> torch.Tensor:
    x = faces.float().div(255) if faces.dtype == torch.uint8 else faces.float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def residual(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """High-pass residual `GAIN * (x - gaussian_blur(x))`, same shape."""
    k = 2 * int(3 * sigma + 0.5) + 1
    return GAIN * (x - kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect"))


def augmenter(seed: int) -> nn.Module:
    """What a real face may have been through: JPEG, blur, noise, colour, mirror."""
    torch.manual_seed(seed)  # kornia augmentations draw from the global generator
    return K.AugmentationSequential(
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.1, 0.1, 0.1, 0.02, p=0.5),
        K.RandomGaussianBlur((5, 5), (0.3, 1.0), p=0.25),
        K.RandomJPEG(jpeg_quality=(40.0, 95.0), p=0.5),
        K.RandomGaussianNoise(std=0.01, p=0.25),
    )


def train_oneclass(faces: torch.Tensor, config: OneClassConfig = OneClassConfig(),
                   progress: Callable[[int, int, float], None] | None = None) -> OneClassAE:
    """Train the S2 autoencoder on real faces `(N, 3, S, S)` uint8. Returns it in eval mode (CPU).

    `progress(iteration, total, loss)` is called every few iterations.
    """
    if config.size % 16:
        raise ValueError(f"one-class size {config.size} must be a multiple of 16")
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    ae = OneClassAE(config)
    aug = augmenter(config.seed)
    data = _prepare(faces, config.size)  # float copy: (N, 3, s, s), s <= 128 keeps it small
    opt = torch.optim.Adam(ae.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.iterations)

    def loss_of() -> torch.Tensor:
        idx = torch.randint(len(data), (config.batch_size,), generator=gen)
        with torch.no_grad():
            r = residual(aug(data[idx]).clamp(0, 1), config.sigma)
        return F.mse_loss(ae(r), r)

    optimise(loss_of, opt, sched, config.iterations, progress, config.minutes)
    return ae.eval()


@torch.no_grad()
def oneclass_signals(ae: OneClassAE, faces: torch.Tensor, coverage: str = "face") -> dict[str, torch.Tensor]:
    """`{"s2_oneclass", "s2_rel_err", "s2_rel_res"}`, each `(B,)` (see module docs).

    s2_oneclass is the mean squared residual reconstruction error inside the eroded face mask.
    faces: `(B, 3, S', S')` uint8 or float in [0, 1], any S' (resized to the AE's size).
    """
    ae.eval()
    dev = next(ae.parameters()).device
    x = _prepare(faces.to(dev), ae.cfg.size)
    r = residual(x, ae.cfg.sigma)
    err = (ae(r) - r).square().mean(1, keepdim=True)
    res = r.square().mean(1, keepdim=True)
    inner, ring = inner_face_mask(ae.cfg.size, coverage, dev), outer_ring_mask(ae.cfg.size, coverage, dev)
    return {"s2_oneclass": (err * inner).sum((1, 2, 3)) / inner.sum(), "s2_rel_err": log_ratio(err, inner, ring),
            "s2_rel_res": log_ratio(res, inner, ring)}

"""Match the swapped face's colours to the face it replaces, measured inside the paste mask.

`mean-std`: Reinhard et al. (2001) colour transfer in CIE L*a*b* (kornia): per channel, the swapped
face's mask-weighted mean and standard deviation are moved onto the original face's. `hist`:
per-channel histogram matching in RGB (mask-weighted CDFs), stronger but can band and shift
contrast. Both work on aligned crops, so "inside the mask" means the same skin in both images.
"""

from __future__ import annotations

import math

import kornia
import torch

from faceswap.errors import FaceswapError

COLOR_MODES = ("none", "mean-std", "hist", "shading")
# Chosen by measurement (bench/convert.py, clip A a2b, 150 frames, 300-iteration lite model): face tone
# dE76 to the source none 22.9 / mean-std 0.95 / hist 1.19; seam dE 16.1 / 10.6 / 10.1; lightness
# contrast kept 1.02 / 0.93 / 0.90. mean-std matches the tone best and keeps more contrast; hist
# trades that for a 0.6 dE lower seam. Re-measure with a fully trained model (bench/convert.py).
DEFAULT_COLOR = "mean-std"
_EPS = 1e-6
MAX_L_GAIN = 1.5
MAX_AB_GAIN = 1.0


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel weighted mean and std: `(B, C, S, S)`, weights `(B, 1, S, S)` -> `(B, C, 1, 1)` x 2."""
    w = mask / mask.sum((2, 3), keepdim=True).clamp_min(_EPS)
    mean = (x * w).sum((2, 3), keepdim=True)
    var = ((x - mean) ** 2 * w).sum((2, 3), keepdim=True)
    return mean, var.clamp_min(0).sqrt()


def mean_std_transfer(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reinhard transfer: `source`'s L*a*b* statistics inside `mask` become `target`'s.

    Args:
        source: `(B, 3, S, S)` RGB in [0, 1], the images to recolour (the swapped faces).
        target: `(B, 3, S, S)` RGB in [0, 1], whose colours to take (the original faces).
        mask: `(B, 1, S, S)` weights in [0, 1].
    Returns:
        `(B, 3, S, S)` RGB in [0, 1].
    """
    src = kornia.color.rgb_to_lab(source.float().clamp(0, 1))
    tgt = kornia.color.rgb_to_lab(target.float().clamp(0, 1))
    mu_s, sd_s = masked_mean_std(src, mask)
    mu_t, sd_t = masked_mean_std(tgt, mask)
    # Cap the contrast change. Lightness: within 1.5x either way (a flat swapped face must not be
    # blown up into noise). Colour (a*, b*): never amplified. The original's chroma spread inside
    # the mask includes hair, brows and shadow that the swapped face's skin does not have; matching
    # it multiplied the swap's b* spread by 1.3-1.9x on real A->B frames, which painted orange-brown
    # smudges beside the nose and under the eyes (seen at 1x). Means are still matched exactly.
    gain = sd_t / sd_s.clamp_min(_EPS)
    gain = torch.cat([gain[:, :1].clamp(1 / MAX_L_GAIN, MAX_L_GAIN), gain[:, 1:].clamp(0.2, MAX_AB_GAIN)], 1)
    out = (src - mu_s) * gain + mu_t
    out = torch.cat([out[:, :1].clamp(0, 100), out[:, 1:].clamp(-128, 127)], 1)
    return kornia.color.lab_to_rgb(out).clamp(0, 1)


def _weighted_cdf(x: torch.Tensor, mask: torch.Tensor, bins: int) -> torch.Tensor:
    """`(B, C, S, S)` values in [0, 1] -> `(B, C, bins)` mask-weighted CDFs."""
    b, c = x.shape[:2]
    idx = (x.clamp(0, 1) * (bins - 1)).round().long().flatten(2)  # (B, C, S*S)
    w = mask.expand(b, c, *mask.shape[2:]).flatten(2).float()
    hist = torch.zeros(b, c, bins, device=x.device).scatter_add_(2, idx, w)
    cdf = hist.cumsum(2)
    return cdf / cdf[..., -1:].clamp_min(_EPS)


def hist_match(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-channel histogram matching of `source` to `target` inside `mask` (same shapes as `mean_std_transfer`)."""
    src, tgt = source.float().clamp(0, 1), target.float().clamp(0, 1)
    cdf_s, cdf_t = _weighted_cdf(src, mask, bins), _weighted_cdf(tgt, mask, bins)
    # Look-up table: level v of the source goes to the target level with the same CDF value.
    lut = torch.searchsorted(cdf_t.contiguous(), cdf_s.contiguous()).clamp(max=bins - 1).float() / (bins - 1)
    pos = src.flatten(2) * (bins - 1)
    lo = pos.floor().long().clamp(max=bins - 2)
    frac = pos - lo
    out = torch.gather(lut, 2, lo) * (1 - frac) + torch.gather(lut, 2, lo + 1) * frac
    return out.view_as(src)


SHADING_SIGMA = 0.04  # of the crop side: coarser than any feature, fine enough for a cast shadow's edge


def shading_transfer(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`mean_std_transfer`, then the original's coarse lightness in place of the swap's own: L* =
    swap - blur(swap) + blur(original), blurred with sigma = SHADING_SIGMA of the side (mask-
    normalised, so what lies outside the mask does not bleed in). The swapped face keeps its
    features and detail and takes the light of the scene it is pasted into, instead of the light
    the other person was filmed in (the model has to learn that from few iterations, and often
    has not: B's nose and eye-socket shadows, shifted to A's darker mean, read as brown smudges).
    Shapes as in `mean_std_transfer`."""
    out = kornia.color.rgb_to_lab(mean_std_transfer(source, target, mask))
    tgt = kornia.color.rgb_to_lab(target.float().clamp(0, 1))
    sigma = max(1.0, SHADING_SIGMA * source.shape[-1])
    k = 2 * math.ceil(3 * sigma) + 1
    w = mask.float() + _EPS

    def low(x):
        return kornia.filters.gaussian_blur2d(x * w, (k, k), (sigma, sigma)) / kornia.filters.gaussian_blur2d(w, (k, k), (sigma, sigma))

    lum = (out[:, :1] - low(out[:, :1]) + low(tgt[:, :1])).clamp(0, 100)
    return kornia.color.lab_to_rgb(torch.cat([lum, out[:, 1:]], 1)).clamp(0, 1)


def transfer_color(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Dispatch on `mode` (one of `COLOR_MODES`); shapes as in `mean_std_transfer`."""
    if mode == "none":
        return source
    if mode == "mean-std":
        return mean_std_transfer(source, target, mask)
    if mode == "hist":
        return hist_match(source, target, mask)
    if mode == "shading":
        return shading_transfer(source, target, mask)
    raise FaceswapError(f"unknown colour mode {mode!r} (choose from {', '.join(COLOR_MODES)})")

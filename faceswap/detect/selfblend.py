"""Pasted fakes made from real faces alone (issue #16): self-blends and cross-blends of aligned crops.

A face swap of any method ends in a paste: a face from elsewhere, inside a mask, over the target
frame. What every paste leaves is a boundary where two images meet (a colour, sharpness or noise
step, a resampled region, a slight misfit). Self-Blended Images (SBI, Shiohara & Yamasaki, CVPR
2022) make such fakes with no swap model and no other identity: a face blended onto a perturbed
copy of itself, so the only thing that tells it from the real face is the paste. We make them on
aligned crops (`faces.align`), where the face sits on the template:

    self-blend   the source is the face itself, jittered in colour (gain, gamma, hue, saturation),
                 frequency (blur, sharpen or a down-up resample) and geometry (a shift and scale of
                 a few percent), pasted back inside a random mask
    cross-blend  the source is ANOTHER real face (another source when there is one: a paste of a
                 different person, as a swap is), colour-matched inside the mask or not

The random mask is the template face ellipse with a random centre, axes, tilt and a low-order
wobble of its outline, with an edge of random softness; the paste is `target + r * m * (source -
target)` with r in {0.25, 0.5, 0.75, 1, 1, 1} (SBI's blend ratios). `boundary` is the blend's
`4 m (1 - m)` of the mask (Face X-ray's target: 1 on the seam, 0 inside and outside), which the blend net
learns to point at.

    blend_mask       (B, 1, S, S) random paste masks
    gaussian_blur    one Gaussian blur for a batch
    jitter_source    (B, 3, S, S) the perturbed copy of a self-blend
    paste            target, source, mask -> (fake, boundary)
    blend_fakes      real faces -> pasted fakes (self and cross), their boundaries
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from faceswap.convert.color import transfer_color
from faceswap.faces.align import COVERAGES, FACE_ELLIPSE_AXES, FACE_ELLIPSE_CENTRE, face_units_to_crop

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
CROSS_FRACTION = 0.5  # of the fakes, the share that pastes another face (the rest are self-blends)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def blend_mask(n: int, size: int, coverage: str, gen: torch.Generator) -> torch.Tensor:
    """`(n, 1, S, S)` random soft paste masks around the template face (see module docs)."""
    px = size / COVERAGES[coverage][0]  # crop px per template unit
    c = torch.as_tensor(face_units_to_crop(np.array(FACE_ELLIPSE_CENTRE), size, coverage), dtype=torch.float32)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    cx = c[0] + _uniform(n, -0.08, 0.08, gen) * px
    cy = c[1] + _uniform(n, -0.12, 0.12, gen) * px
    ax = FACE_ELLIPSE_AXES[0] * _uniform(n, 0.65, 1.12, gen) * px
    ay = FACE_ELLIPSE_AXES[1] * _uniform(n, 0.65, 1.08, gen) * px
    tilt = _uniform(n, -0.15, 0.15, gen)
    dx, dy = xs[None] - cx[:, None, None], ys[None] - cy[:, None, None]
    cos, sin = torch.cos(tilt)[:, None, None], torch.sin(tilt)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    r = torch.sqrt((u / ax[:, None, None]) ** 2 + (v / ay[:, None, None]) ** 2)
    theta = torch.atan2(v, u)
    wobble = torch.zeros_like(r)  # a hull is not an ellipse: low-order bumps of its outline
    for k in (2, 3, 4):
        amp, phase = _uniform(n, 0.0, 0.06, gen), _uniform(n, 0.0, 2 * math.pi, gen)
        wobble = wobble + amp[:, None, None] * torch.cos(k * theta + phase[:, None, None])
    # Soft edge drawn from the distance to the outline (px, ~ (1 + wobble - r) x the axis), from a
    # near-hard edge (an alpha paste with little feather) to a wide one (up to ~8 % of the side):
    # analytic, where blurring a hard mask with a per-face kernel cost 10x more.
    dist = (1.0 + wobble - r) * torch.minimum(ax, ay)[:, None, None]
    width = _uniform(n, 0.004, 0.08, gen) * size
    return torch.sigmoid(dist / (0.5 * width[:, None, None]))[:, None]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """`(B, C, H, W)` blurred by one Gaussian of `sigma` px (one kernel per batch: a kernel per face costs 5x more)."""
    k = 2 * int(3 * sigma + 0.5) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


def jitter_source(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """`(B, 3, S, S)` in [0, 1] -> the perturbed copy a self-blend pastes: colour, frequency, geometry."""
    n, size = len(x), x.shape[-1]
    # Colour: per-channel gain (a tint), gamma and saturation.
    y = x * _uniform(n * 3, 0.9, 1.1, gen).view(n, 3, 1, 1)
    y = y.clamp(0, 1) ** _uniform(n, 0.85, 1.15, gen).view(n, 1, 1, 1)
    grey = y.mean(1, keepdim=True)
    y = (grey + _uniform(n, 0.8, 1.2, gen).view(n, 1, 1, 1) * (y - grey)).clamp(0, 1)
    # Frequency: a third blurred, a third resampled down and up, a third sharpened.
    kind = torch.randint(3, (n,), generator=gen)
    blurred = gaussian_blur(y, float(_uniform(1, 0.4, 1.5, gen)) * size / 128)
    scale = float(_uniform(1, 0.35, 0.75, gen))
    resampled = F.interpolate(F.interpolate(y, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False),
                              size=(size, size), mode="bilinear", align_corners=False)
    sharpened = (y + _uniform(n, 0.3, 1.0, gen).view(n, 1, 1, 1) * (y - blurred)).clamp(0, 1)
    pick = lambda i: (kind == i).float().view(n, 1, 1, 1)  # noqa: E731
    y = pick(0) * blurred + pick(1) * resampled + pick(2) * sharpened
    # Geometry: a shift of up to 3 % of the side and a scale of up to 4 %, about the centre.
    theta = torch.zeros(n, 2, 3)
    s = _uniform(n, 0.96, 1.04, gen)
    theta[:, 0, 0], theta[:, 1, 1] = s, s * _uniform(n, 0.97, 1.03, gen)
    theta[:, 0, 2], theta[:, 1, 2] = _uniform(n, -0.06, 0.06, gen), _uniform(n, -0.06, 0.06, gen)
    grid = F.affine_grid(theta, list(y.shape), align_corners=False)
    return F.grid_sample(y, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def paste(target: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, 3, S, S)` x 2 and `(B, 1, S, S)` -> the blend at a random SBI ratio and its `(B, 1, S, S)`
    boundary, `4 mask (1 - mask)` of the mask before the ratio (the seam is where the mask's edge is)."""
    ratios = torch.tensor(BLEND_RATIOS)[torch.randint(len(BLEND_RATIOS), (len(target),), generator=gen)]
    m = mask * ratios.view(-1, 1, 1, 1)
    return target + m * (source - target), 4 * mask * (1 - mask)


def blend_fakes(faces: torch.Tensor, coverage: str, gen: torch.Generator, partners: torch.Tensor | None = None,
                cross_fraction: float = CROSS_FRACTION) -> tuple[torch.Tensor, torch.Tensor]:
    """Real aligned crops `(B, 3, S, S)` in [0, 1] -> `(fakes (B, 3, S, S), boundaries (B, 1, S, S))`.

    A `cross_fraction` share of them (when `partners` `(B, 3, S, S)`, other real faces, is given)
    paste the partner, colour-matched inside the mask half the time; the rest are self-blends."""
    n, size = len(faces), faces.shape[-1]
    mask = blend_mask(n, size, coverage, gen)
    source = jitter_source(faces, gen)
    if partners is not None:
        cross = (torch.rand(n, generator=gen) < cross_fraction).view(n, 1, 1, 1)
        matched = transfer_color(partners, faces, mask, "mean-std")
        other = torch.where((torch.rand(n, generator=gen) < 0.5).view(n, 1, 1, 1), matched, partners)
        source = torch.where(cross, other, source)
    fake, boundary = paste(faces, source, mask, gen)
    return fake.clamp(0, 1), boundary

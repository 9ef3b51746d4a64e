"""Regions of an aligned face crop: the inner face that convert pastes over, and the outer ring it
never touches. The self-referenced signals compare the two, so what a whole crop shares (camera
sharpness, codec, resampling) cancels and a pasted, blurrier decoder output does not.

In template units (`faces.align`): convert's template mask is the ellipse centred (0, 0.62) with
semi-axes (1.08, 1.45) and a feathered edge reaching normalised radius r = 1.075. Measured where a
swap differs from its source, in the crop re-detected from the swapped frame (lossless `lite`
swaps of the four shared clips, every 10th frame): mean |difference| < 0.1 grey level from
r = 1.15 on in clips A and D, from 1.2 in B; in clip C, whose swapped faces re-align a few pixels
off, 0.6 at r in [1.3, 1.5) and 0.02 beyond. The ring therefore starts at RING_RADIUS = 1.45.

    inner_face_mask   (1, 1, S, S) eroded template mask (consistency.py): the pasted face
    outer_ring_mask   (1, 1, S, S) 1 where r >= RING_RADIUS, minus a BORDER-px frame (warp padding)
    log_ratio         (B,) log(inner mean / ring mean) of a per-pixel score
    face_tiles        (B, 4, 3, t, t) the 2 x 2 tiles of a square inside the face ellipse
    corner_tiles      (B, 4, 3, t, t) the crop's four corners (all outside the paste, r > 1.4)

with t = 0.75 template units (24 px at 128 with "face" coverage): tiles of the same size, so their spectra share frequencies.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from faceswap.errors import FaceswapError
from faceswap.faces.align import COVERAGES, FACE_ELLIPSE_AXES, FACE_ELLIPSE_CENTRE, template_face_mask

RING_RADIUS = 1.45
BORDER = 2  # px at 128; scaled with the crop


@lru_cache(maxsize=8)
def _ring(size: int, coverage: str) -> torch.Tensor:
    ring = (template_face_mask(size, coverage, feather=0.0, radius=RING_RADIUS) <= 0).float()[None]
    b = max(1, round(BORDER * size / 128))
    ring[..., :b, :] = ring[..., -b:, :] = 0
    ring[..., :, :b] = ring[..., :, -b:] = 0
    return ring


def outer_ring_mask(size: int, coverage: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(1, 1, S, S)` {0, 1}: the part of the crop outside the pasted face (see module docs)."""
    return _ring(size, coverage).to(device)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, C, H, W)` and `(1|B, 1, H', W')` -> `(B,)`; the mask is area-resized to H x W."""
    if mask.shape[-1] != x.shape[-1]:
        mask = F.interpolate(mask, size=x.shape[-2:], mode="area")
    m = mask.expand(len(x), 1, *x.shape[-2:])
    return (x * m).sum((1, 2, 3)) / (m.sum((1, 2, 3)) * x.shape[1]).clamp_min(1e-8)


def log_ratio(x: torch.Tensor, inner: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """`(B,)` log(mean of `x` over the inner face / its mean over the outer ring): the self-referenced
    form of a per-pixel score `x` `(B, C, H, W)` (masks as `masked_mean` takes them)."""
    return torch.log(masked_mean(x, inner).clamp_min(1e-12) / masked_mean(x, ring).clamp_min(1e-12))


def tile_size(size: int, coverage: str) -> int:
    """Side t of the face and corner tiles: 0.75 template units (24 px at 128 with "face" coverage)."""
    return round(size * 0.75 / COVERAGES[coverage][0])


def check_coverage(size: int, coverage: str) -> None:
    """FaceswapError unless the crop has an untouched ring and corners outside the paste."""
    span, centre_y = COVERAGES[coverage]
    (ax, ay), c = FACE_ELLIPSE_AXES, FACE_ELLIPSE_CENTRE[1] - centre_y
    t = tile_size(size, coverage) / size * span  # corner tile's inner point, template units
    r = min(((span / 2 - t) / ax) ** 2 + ((abs(s * span / 2 - c) - t) / ay) ** 2 for s in (-1, 1)) ** 0.5
    if r < 1.3 or outer_ring_mask(size, coverage).sum() < 0.1 * size * size:
        raise FaceswapError(f"coverage {coverage!r} leaves no part of the crop outside the pasted face: the detector's "
                            f"self-referenced signals need 'face' or 'head' coverage")


def face_tiles(faces: torch.Tensor, coverage: str) -> torch.Tensor:
    """`(B, 3, S, S)` -> `(B, 4, 3, t, t)`: a 2t x 2t square centred on the template face ellipse
    (inside it: normalised radius <= 0.87 at its corners), cut into 2 x 2 tiles."""
    size, t = faces.shape[-1], tile_size(faces.shape[-1], coverage)
    span, centre_y = COVERAGES[coverage]
    cx, cy = size // 2, round(size / 2 + (FACE_ELLIPSE_CENTRE[1] - centre_y) * size / span)
    sq = faces[..., cy - t : cy + t, cx - t : cx + t]
    return torch.stack([sq[..., :t, :t], sq[..., :t, t:], sq[..., t:, :t], sq[..., t:, t:]], 1)


def corner_tiles(faces: torch.Tensor, coverage: str) -> torch.Tensor:
    """`(B, 3, S, S)` -> `(B, 4, 3, t, t)`: the four corners of the crop."""
    t = tile_size(faces.shape[-1], coverage)
    return torch.stack([faces[..., :t, :t], faces[..., :t, -t:], faces[..., -t:, :t], faces[..., -t:, -t:]], 1)

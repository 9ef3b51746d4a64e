"""Give the swapped face the frame's own fine detail: the source face's high-frequency band.

The model renders the new face from a 64 px (or 128 px) code, so whatever is finer than that, skin
grain, pores, eyelashes, the camera's noise and compression, is missing, and a pasted face looks
smooth beside the frame around it (a cue people and detectors both pick up). Pasting a face of
side S at out_size px leaves every frequency above S's Nyquist empty; this fills exactly that band
from the face being replaced, which sits at the same place in the aligned crop:

    band  = L(original) - gaussian(L(original), sigma)                       L = luminance
    out   = swap + strength * agree * CLIP * tanh(band / CLIP)

`sigma` is `SIGMA_PER_FACTOR` crop px per upscale factor (out_size / S): a Gaussian of sigma = R/2
passes the band above the model's Nyquist and little below it. Two guards keep the source's
*features* out (seen at 1x on real clips without them: the source's closed lip line drawn over the
swap's open mouth, its frown lines on a smooth brow):
- the band is soft-clipped at CLIP: grain, pores and noise are a few grey levels, the edges of
  lips, lids and creases are tens; those stay the model's;
- `agree` fades the band out where swap and source differ at the model's own scale (luminance of
  both blurred by 2 sigma differs by more than AGREE_TOLERANCE): an open mouth over a closed one,
  other eyes, hair over skin.
Luminance only: colour stays the swapped face's (and `convert.color`'s). Cost: three separable
blurs per face at out_size.
"""

from __future__ import annotations

import math

import kornia
import torch

SIGMA_PER_FACTOR = 0.5
DEFAULT_STRENGTH = 0.5  # chosen on A->B: 0.5 kept the mouth (0.795 vs 0.804 without) where 1.0 lost it; sharpness 0.253 vs 0.241
CLIP = 0.03  # band amplitude (of 1.0) kept as it is; larger swings (feature edges) are compressed towards it
AGREE_TOLERANCE = 0.06  # luminance difference at the model's scale where the band is down to exp(-1)


def _blur(grey: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(grey, (k, k), (sigma, sigma), border_type="reflect")


def high_band(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Luminance minus its Gaussian blur: `(B, 3, S, S)` RGB in [0, 1] -> `(B, 1, S, S)`."""
    grey = kornia.color.rgb_to_grayscale(x.float())
    return grey - _blur(grey, sigma)


def agreement(grey_faces: torch.Tensor, grey_originals: torch.Tensor, sigma: float) -> torch.Tensor:
    """Luminance `(B, 1, S, S)` x2 -> `(B, 1, S, S)` in (0, 1]: 1 where swap and source look alike at
    scale `sigma`, -> 0 where not."""
    return torch.exp(-(_blur(grey_faces - grey_originals, sigma) / AGREE_TOLERANCE) ** 2)


def transfer_detail(faces: torch.Tensor, originals: torch.Tensor, factor: float, strength: float = DEFAULT_STRENGTH) -> torch.Tensor:
    """Add `originals`' band above the model's resolution to `faces`.

    Args:
        faces: `(B, 3, S', S')` swapped faces in [0, 1] at the paste size S'.
        originals: `(B, 3, S', S')` the faces they replace, cut at the same size and alignment.
        factor: S' / model size (the upscale the paste applies to the model's output; <= 1 -> no-op).
        strength: 0 = off, 1 = the whole band.
    Returns:
        `(B, 3, S', S')` in [0, 1].
    """
    if strength <= 0 or factor <= 1:
        return faces
    sigma = SIGMA_PER_FACTOR * factor
    grey = kornia.color.rgb_to_grayscale(originals.float())
    band = CLIP * torch.tanh((grey - _blur(grey, sigma)) / CLIP)
    gate = agreement(kornia.color.rgb_to_grayscale(faces.float()), grey, 2 * sigma)
    return (faces + strength * gate * band).clamp(0, 1)

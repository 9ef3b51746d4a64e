"""Where the swapped face is pasted: a soft mask per face, in aligned-crop pixels.

The base mask is the template face ellipse of `faces.align` (brows to chin, feathered), or the
model's learned mask when it has one. `erode` and `blur` are percentages of the crop side, so they
mean the same on a 64 px and a 128 px model: erode > 0 shrinks the mask towards the face centre
(hides the swap's edge), < 0 grows it; blur widens the feathered edge (a softer seam).
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from faceswap.errors import FaceswapError
from faceswap.faces.align import template_face_mask

MASK_SOURCES = ("auto", "template", "learned")


def erode_mask(mask: torch.Tensor, percent: float) -> torch.Tensor:
    """Grey-level erosion (percent > 0) or dilation (< 0) of `(B, 1, S, S)` masks by `percent` of S."""
    radius = round(abs(percent) / 100.0 * mask.shape[-1])
    if radius == 0:
        return mask
    k = 2 * radius + 1
    if percent > 0:
        # min filter = 1 - max filter of the complement
        return 1.0 - F.max_pool2d(1.0 - mask, k, stride=1, padding=radius)
    return F.max_pool2d(mask, k, stride=1, padding=radius)


def blur_mask(mask: torch.Tensor, percent: float) -> torch.Tensor:
    """Gaussian blur of `(B, 1, S, S)` masks with sigma = `percent` of S."""
    sigma = percent / 100.0 * mask.shape[-1]
    if sigma < 0.3:
        return mask
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="constant")


def face_masks(n: int, size: int, coverage: str, erode: float = 0.0, blur: float = 0.0,
               learned: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Paste masks for `n` faces.

    Args:
        n, size: batch size and crop side S.
        coverage: the crops' coverage (places the template ellipse).
        erode, blur: percent of S (see module docs).
        learned: the model's `(n, 1, S, S)` masks, used instead of the template when given.
    Returns:
        `(n, 1, S, S)` float masks in [0, 1].
    """
    if not -50 <= erode <= 50 or not 0 <= blur <= 50:
        raise FaceswapError(f"mask erode {erode}% / blur {blur}% out of range (erode -50..50, blur 0..50)")
    if learned is not None:
        mask = learned.float().clamp(0, 1)
    else:
        mask = template_face_mask(size, coverage).to(device)[None].expand(n, 1, size, size)
    mask = blur_mask(erode_mask(mask, erode), blur)
    # Nothing may reach the crop's border: outside the crop there is no swapped face to show.
    border = torch.ones(1, 1, size, size, device=mask.device)
    border[..., 0, :] = border[..., -1, :] = 0
    border[..., :, 0] = border[..., :, -1] = 0
    return (mask * border).contiguous()

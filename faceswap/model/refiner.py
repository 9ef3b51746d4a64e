"""Identity refiner: the decoder's soft S-px face -> the same face at R*S px, sharp.

A 64 px decoder output pasted over a ~270 px face is blown up 4x and looks soft whatever the
autoencoder learns. The refiner is a small fully convolutional net per identity, trained on that
identity's own footage to turn its decoder's output into its real face at the extracted faces'
resolution: it learns where *this* person's eyelids, lips, nostrils and hairline edges are sharp.
It sees only the decoder's output (detached: it never changes what the autoencoder learns) and is
trained on patches, so a step costs a fraction of an autoencoder step (see `faceswap.train.loop`).

Shapes (``R`` = factor, 2 or 4)::

    faces (B, 3, S, S) in [0, 1] --> (B, 3, R*S, R*S) in [0, 1]

The net predicts a residual on a bicubic upscale, so an untrained refiner already gives the plain
upscale (its last conv starts at zero) and training only ever adds detail.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceswap.model.blocks import ConvAct, ResBlock, Upscale

FACTORS = (0, 2, 4)  # 0 = no refiner
WIDTH = 32  # channels at the input resolution; each 2x upscale halves them
RES_BLOCKS = 2
CONTEXT = 6  # input px each side a patch needs to see (the receptive field of the low-res layers)
PATCH = 24  # side of a training patch in input px (its hi-res target is R * PATCH)
PATCHES = 8  # training patches per identity and step


class Refiner(nn.Module):
    """`(B, 3, S, S)` -> `(B, 3, R*S, R*S)`; works on any S (fully convolutional)."""

    def __init__(self, factor: int, width: int = WIDTH, res_blocks: int = RES_BLOCKS):
        super().__init__()
        if factor not in FACTORS[1:]:
            raise ValueError(f"refiner factor must be one of {FACTORS[1:]}")
        self.factor = factor
        layers: list[nn.Module] = [ConvAct(3, width), *[ResBlock(width) for _ in range(res_blocks)]]
        ch = width
        # Most of the work at the input resolution; the last 2x comes from a pixel shuffle of the
        # output conv (ESPCN), because a 3x3 conv at 4x the side costs 16x its low-res price: a
        # conv stage at every scale measured 2.8x the FLOPs of this layout for the same patch.
        for _ in range(factor.bit_length() - 2):  # log2(factor) - 1 upscales
            layers += [Upscale(ch, ch // 2), ConvAct(ch // 2, ch // 2)]
            ch //= 2
        self.body = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.Conv2d(ch, 3 * 4, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.out[0].weight)
        nn.init.zeros_(self.out[0].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.factor, mode="bicubic", align_corners=False)
        h = self.body(x)
        if h.dtype != self.out[0].weight.dtype:  # fp32 output conv under autocast, as the decoder's
            with torch.autocast(h.device.type, enabled=False):
                return (base.float() + self.out(h.to(self.out[0].weight.dtype))).clamp(0, 1)
        return (base + self.out(h)).clamp(0, 1)


def crop_patches(x: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, side: int, margin: int = 0) -> torch.Tensor:
    """`(k, C, S, S)` -> `(k, C, side + 2 margin, side + 2 margin)`: image i cut at (y0[i], x0[i]) minus
    `margin` (replicate-padded where that reaches past the image)."""
    if margin:
        x = F.pad(x, (margin,) * 4, mode="replicate")
    return torch.stack([img[:, y : y + side + 2 * margin, xx : xx + side + 2 * margin]
                        for img, y, xx in zip(x, y0.tolist(), x0.tolist())])


def patch_side(size: int) -> int:
    """Training patch side for a `size`-px model: `PATCH`, or what fits inside `CONTEXT` px of margin."""
    return max(1, min(PATCH, size - 2 * CONTEXT))


def random_origins(k: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners `(k,)`, `(k,)` of `patch_side(size)` patches that keep `CONTEXT` px inside a `size`-px image
    (as near as a tiny image allows: `crop_patches` pads what falls outside)."""
    hi = max(1, size - patch_side(size) - 2 * CONTEXT + 1)
    y0 = torch.randint(hi, (k,), generator=gen, device=gen.device) + CONTEXT
    x0 = torch.randint(hi, (k,), generator=gen, device=gen.device) + CONTEXT
    return y0.cpu(), x0.cpu()


def refine_patches(refiner: "Refiner", decoded: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The refiner on `patch_side(S)` patches of (detached) decoder output `(k, 3, S, S)` -> `(k, 3, R*P, R*P)`;
    each patch is refined with `CONTEXT` px of its surroundings, then those are cut off."""
    r, side = refiner.factor, patch_side(decoded.shape[-1])
    out = refiner(crop_patches(decoded.detach(), y0, x0, side, CONTEXT))
    return out[:, :, CONTEXT * r : (CONTEXT + side) * r, CONTEXT * r : (CONTEXT + side) * r]


def default_factor(model_size: int, face_size: int) -> int:
    """The largest factor whose output the training faces can supervise (`face_size` = their side),
    at most 4; 0 when they are not at least twice the model's size."""
    for f in reversed(FACTORS[1:]):
        if model_size * f <= face_size:
            return f
    return 0

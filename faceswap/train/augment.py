"""Batch augmentation on the training device (kornia + one `grid_sample` per output).

For a batch of uint8 faces it makes:

* targets: colour jitter in L*a*b*, then a random similarity (rotate, zoom, shift) and a horizontal
  flip. The template masks (face, eyes+mouth) ride along through the same resample, so the loss
  weights stay on the face wherever the affine moved it.
* inputs: the same colour and the same affine, plus a smooth random warp (5x5 grid or thin-plate)
  *before* the affine. Reconstructing the clean target from a warped input is what forces the
  shared code to learn structure instead of copying pixels.

* hi-res target patches (`hires_patches`), for the refiner: the same colour and affine applied to
  the same faces at R times the size, cut to given patches, so a patch of the decoder's output and
  its hi-res target show the same skin.

All random numbers come from the caller's `torch.Generator`, so a saved generator state replays the
same augmentations after a resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

WARPS = ("grid", "tps", "none")


@dataclass
class AugmentConfig:
    rotate: float = 10.0  # max rotation, degrees
    zoom: float = 0.05  # max relative zoom in or out
    shift: float = 0.05  # max shift, fraction of the side
    flip: float = 0.5  # probability of a horizontal flip
    warp: str = "grid"  # "grid" (5x5 random grid, like deepfakes), "tps" (thin-plate spline) or "none"
    warp_strength: float = 0.02  # std of the warp's control-point offsets, fraction of the side
    lightness: float = 0.15  # max relative change of L* contrast, plus up to 40x this in L* units of shift
    color_ab: float = 6.0  # max shift of a* and b*


@dataclass
class Draw:
    """The random choices of one augmented batch: `theta` `(B, 2, 3)` (see `random_affine`) and the
    colour change (`None` when colour jitter is off): L* contrast, L* shift `(B, 1, 1)` each, a*/b* `(B, 2, 1, 1)`."""

    theta: torch.Tensor
    colour: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


def _uniform(n: int, lim: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=gen.device) * 2 - 1) * lim


class Augmenter:
    """Callable: `(B, 3, S, S)` uint8 -> inputs `(B, 3, S, S)`, targets `(B, 3, S, S)`, masks `(B, 2, S, S)`.

    `masks` holds the template face mask and eye/mouth mask moved with the targets.
    """

    def __init__(self, size: int, masks: torch.Tensor, cfg: AugmentConfig | None = None):
        self.size, self.cfg = size, cfg or AugmentConfig()
        if self.cfg.warp not in WARPS:
            raise ValueError(f"warp must be one of {WARPS}")
        self.masks = masks[None]  # (1, 2, S, S)
        # Pixel centres in grid_sample's normalised coordinates, (1, S, S, 2) as (x, y).
        self.base = kornia.utils.create_meshgrid(size, size, normalized_coordinates=True, device=masks.device)

    def __call__(self, faces: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.augment(faces, gen)[:3]

    def augment(self, faces: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Draw]:
        """As `__call__`, plus the `Draw` that `hires_patches` repeats at a higher resolution."""
        b, dev = faces.shape[0], faces.device
        params = self.colour_params(b, gen)
        x = self.apply_colour(faces.float().div_(255), params)
        theta = self.random_affine(b, gen).to(dev)
        tgt = self._resample(torch.cat([x, self.masks.expand(b, -1, -1, -1)], 1), self.base, theta)
        pts = self.base + self.random_flow(b, gen).to(dev) if self.cfg.warp != "none" else self.base
        inp = self._resample(x, pts, theta)
        return inp, tgt[:, :3], tgt[:, 3:], Draw(theta, params)

    def hires_patches(self, faces: torch.Tensor, draw: Draw, y0: torch.Tensor, x0: torch.Tensor, patch: int) -> torch.Tensor:
        """Targets of `augment` at the faces' resolution, cut to patches.

        Args:
            faces: `(k, 3, H, H)` uint8, the first k faces of the batch `draw` came from, H = R * size.
            y0, x0: `(k,)` int top-left corners of the patches in `size`-px target pixels.
            patch: patch side in `size`-px pixels.
        Returns:
            `(k, 3, R*patch, R*patch)` float in [0, 1]: pixel (i, j) covers the same part of the face
            as the R x R block at (y0 * R + i, x0 * R + j) of the upscaled target.
        """
        k, hi, s = faces.shape[0], faces.shape[-1], self.size
        r = hi // s
        dev = faces.device
        # Pixel centres -> fraction of the side u -> the low-res target's normalised coordinates
        # (align_corners=True at `size`), through theta, and back to normalised coordinates at H.
        steps = torch.arange(patch * r, device=dev, dtype=torch.float32)
        uy = ((y0.to(dev)[:, None] * r + steps) + 0.5) / hi  # (k, P*R)
        ux = ((x0.to(dev)[:, None] * r + steps) + 0.5) / hi
        to_n = lambda u: -1 + 2 * (u * s - 0.5) / (s - 1)  # noqa: E731
        ny, nx = to_n(uy), to_n(ux)
        pts = torch.stack(torch.broadcast_tensors(nx[:, None, :], ny[:, :, None]), -1)  # (k, P*R, P*R, 2) as (x, y)
        theta = draw.theta[:k].to(dev)
        src = torch.einsum("bij,bhwj->bhwi", theta[:, :, :2], pts) + theta[:, None, None, :, 2]
        u_src = ((src + 1) * (s - 1) / 2 + 0.5) / s
        grid = -1 + 2 * (u_src * hi - 0.5) / (hi - 1)
        x = F.grid_sample(faces.float().div_(255), grid, mode="bilinear", padding_mode="border", align_corners=True)
        if draw.colour is not None:
            x = self.apply_colour(x, tuple(t[:k] for t in draw.colour))
        return x

    @staticmethod
    def _resample(img: torch.Tensor, pts: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Sample `img` at `theta @ pts`: output pixel p shows source point A p + t (normalised coords)."""
        grid = torch.einsum("bij,bhwj->bhwi", theta[:, :, :2], pts.expand(len(img), -1, -1, -1)) + theta[:, None, None, :, 2]
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)

    def random_affine(self, b: int, gen: torch.Generator) -> torch.Tensor:
        """`(B, 2, 3)` output -> source maps in normalised coordinates: rotate, zoom, shift, flip."""
        c = self.cfg
        ang = _uniform(b, math.radians(c.rotate), gen)
        scale = 1 + _uniform(b, c.zoom, gen)
        shift = torch.stack([_uniform(b, 2 * c.shift, gen), _uniform(b, 2 * c.shift, gen)], 1)
        flip = torch.where(torch.rand(b, generator=gen, device=gen.device) < c.flip, -1.0, 1.0)
        cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
        # [[cos, -sin], [sin, cos]] @ diag(flip, 1): the flip mirrors x before rotating.
        return torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)

    def random_flow(self, b: int, gen: torch.Generator) -> torch.Tensor:
        """Smooth displacement `(B, S, S, 2)` in normalised coordinates (std = `warp_strength` of the side)."""
        std = 2 * self.cfg.warp_strength  # the side spans 2 normalised units
        if self.cfg.warp == "grid":
            coarse = torch.randn(b, 2, 5, 5, generator=gen, device=gen.device) * std
            return F.interpolate(coarse, size=(self.size, self.size), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        # Thin-plate spline through a 4x4 grid of jittered control points.
        lin = torch.linspace(-1, 1, 4, device=gen.device)
        ctrl = torch.stack(torch.meshgrid(lin, lin, indexing="xy"), -1).reshape(1, 16, 2).expand(b, -1, -1)
        moved = ctrl + torch.randn(b, 16, 2, generator=gen, device=gen.device) * std
        kernel, affine = kornia.geometry.transform.get_tps_transform(ctrl, moved)
        pts = self.base.to(gen.device).reshape(1, -1, 2).expand(b, -1, -1)
        warped = kornia.geometry.transform.warp_points_tps(pts, moved, kernel, affine)
        return (warped - pts).reshape(b, self.size, self.size, 2)

    def colour_params(self, b: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Random L* contrast/shift and a*/b* shifts for `b` faces (None when colour jitter is off)."""
        c = self.cfg
        if c.lightness <= 0 and c.color_ab <= 0:
            return None
        contrast = (1 + _uniform(b, c.lightness, gen)).view(b, 1, 1)
        l_shift = _uniform(b, 40 * c.lightness, gen).view(b, 1, 1)
        ab = _uniform(2 * b, c.color_ab, gen).view(b, 2, 1, 1)
        return contrast, l_shift, ab

    @staticmethod
    def apply_colour(x: torch.Tensor, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if params is None:
            return x
        dev = x.device
        contrast, l_shift, ab = (t.to(dev) for t in params)
        lab = kornia.color.rgb_to_lab(x)
        lum = ((lab[:, 0] - 50) * contrast + 50 + l_shift).clamp(0, 100)
        return kornia.color.lab_to_rgb(torch.cat([lum[:, None], lab[:, 1:] + ab], 1), clip=True)

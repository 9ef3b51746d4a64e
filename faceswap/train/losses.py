"""Reconstruction losses weighted by the template face mask.

The weight map is ``BACKGROUND + (1 - BACKGROUND) * face + eye_mouth_weight * eyes_mouth``,
normalised to mean 1 per image so loss values stay comparable across settings. The background keeps
a small weight so previews stay coherent; convert only pastes the face region.
"""

from __future__ import annotations

import kornia
import torch

from faceswap.errors import FaceswapError

LOSSES = ("l1", "mse", "ssim", "l1+ssim", "mse+ssim")
# Chosen by measurement: `lite` on the real A/B clips (faces extracted at 64 px), equal compute, then
# held-out face-region L1 and SSIM of A->A / B->B. At 286 iterations: ssim 0.058/0.063 L1, 0.64/0.61
# SSIM; l1+ssim 0.075/0.076, 0.57/0.55; l1 0.079/0.071, 0.51/0.50. At 1144 iterations: ssim
# 0.036/0.046 L1, 0.82/0.74 SSIM; l1+ssim 0.041/0.047, 0.77/0.72. SSIM wins on both metrics.
DEFAULT_LOSS = "ssim"
BACKGROUND = 0.1


def check_loss(kind: str) -> str:
    if kind not in LOSSES:
        raise FaceswapError(f"unknown loss {kind!r} (choose from {', '.join(LOSSES)})")
    return kind


def weight_map(masks: torch.Tensor, eye_mouth_weight: float) -> torch.Tensor:
    """`(B, 2, S, S)` face and eye/mouth masks -> `(B, 1, S, S)` per-pixel weights with mean 1 per image."""
    w = BACKGROUND + (1 - BACKGROUND) * masks[:, :1] + eye_mouth_weight * masks[:, 1:2]
    return w / w.mean((1, 2, 3), keepdim=True)


def ssim_window(size: int) -> int:
    return 11 if size >= 128 else 7  # ~the same face area at 64 and 128 px


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Weighted loss of `(B, 3, S, S)` predictions against targets; `weight` `(B, 1, S, S)`. Scalar."""
    total = pred.new_zeros(())
    if "l1" in kind:
        total = total + (weight * (pred - target).abs()).mean()
    if "mse" in kind:
        total = total + (weight * (pred - target).square()).mean()
    if "ssim" in kind:
        ssim = kornia.metrics.ssim(pred, target, ssim_window(pred.shape[-1]), padding="same")
        total = total + (weight * (1 - ssim) / 2).mean()  # DSSIM
    return total


def training_loss(out: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, kind: str, eye_mouth_weight: float) -> torch.Tensor:
    """Loss of one identity's decoder output `(B, 3 [+1], S, S)`; a 4th channel is trained on the face mask."""
    loss = reconstruction_loss(out[:, :3], target, weight_map(masks, eye_mouth_weight), kind)
    if out.shape[1] == 4:
        loss = loss + (out[:, 3:4] - masks[:, :1]).abs().mean()
    return loss


@torch.no_grad()
def face_ssim(pred: torch.Tensor, target: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (window 11) inside the face mask, per image: `(B, 3, S, S)` x2, `(B|1, 1, S, S)` -> `(B,)`."""
    ssim = kornia.metrics.ssim(pred, target, 11, padding="same").mean(1, keepdim=True)
    m = face_mask.expand_as(ssim)
    return (ssim * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1e-6)


def refiner_loss(pred: torch.Tensor, target: torch.Tensor, face_mask: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor,
                 patch: int) -> torch.Tensor:
    """L1 + DSSIM of refined patches `(k, 3, R*P, R*P)` against their hi-res targets, weighted by the
    template face mask `(k, 1, S, S)` (of the low-res targets) cut at the same corners and upscaled.

    L1 + SSIM rather than SSIM alone: at 4x the side, SSIM's window sees skin texture, and L1 keeps
    the colours of flat regions that SSIM leaves free."""
    from faceswap.model.refiner import crop_patches

    r = pred.shape[-1] // patch
    m = torch.nn.functional.interpolate(crop_patches(face_mask, y0, x0, patch), scale_factor=r, mode="nearest")
    w = BACKGROUND + (1 - BACKGROUND) * m
    return reconstruction_loss(pred, target, w / w.mean((1, 2, 3), keepdim=True), "l1+ssim")


@torch.no_grad()
def sharpness_ratio(pred: torch.Tensor, target: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """Variance of the Laplacian of the grey image inside `face_mask`, `pred` / `target`, per image:
    `(B, 3, S, S)` x2, `(B|1, 1, S, S)` -> `(B,)`. 1 = as sharp as the real face (bench/quality.py's
    sharpness figure, on aligned crops)."""
    def lap_var(x):
        grey = kornia.color.rgb_to_grayscale(x.float())
        lap = kornia.filters.laplacian(grey, 3)
        m = face_mask.expand_as(lap)
        mean = (lap * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1e-6)
        return ((lap - mean[:, None, None, None]) ** 2 * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1e-6)

    return lap_var(pred) / lap_var(target).clamp_min(1e-12)

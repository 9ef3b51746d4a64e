"""S1, self-consistency under a swap model: is this face one of the model's own outputs?

An autoencoder reconstructs what it was trained on well and the unfamiliar badly; a face that one
of our decoders produced already lies on that decoder's output manifold, so encoding and decoding it
again changes it *suspiciously little*. Per face x (at the model's size) and decoder k in {a, b}:

    s1_err_k = err(x, D_k(E(x)))                  low: x looks like decoder k's output
    s1_gap_k = err(y, D_k(E(y))),  y = D_k(E(x))  the fixed-point gap; low when x came from D_k

err(u, v) = mean over the levels of a 3-level Laplacian pyramid of |u - v| + (1 - SSIM(u, v)),
each a weighted mean inside the eroded template face mask (the region convert pastes, minus its
feathered edge, so the untouched background does not dilute the score).

Reported, not fused (`fusion.REPORTED_ONLY`). Measured on the shared clips' test split (M1 =
the `lite` model trained on clips A and B; real vs its swaps, lossless, single-signal ROC-AUC, and
the six real-vs-real clip pairs AvB AvC AvD BvC BvD CvD):

    s1_err_a 0.28  s1_err_b 0.38  s1_gap_a 0.37  s1_gap_b 0.52    (< 0.5: swaps score HIGHER)
    min_k err 0.29   min_k gap 0.49   gap/err of the better decoder 0.71   max_k err 0.15
    pairs: every one of these has a pair at 0.00-0.01 or 0.99-1.00 (A vs B: err_a 1.00, err_b 0.00)

A decoder rebuilds the real faces it was trained on (A, B) as well as its own outputs, and the
frame round trip (paste, codec, re-detection, resampling) moves a swap off the decoder's fixed
point, so on real data S1 mostly says which identity a face is. It stays useful on the model's
own raw outputs (tests) and as a per-face report.

Precision: bf16 autocast (what `resolve_precision("auto")` picks on this CPU, as convert does) was
measured against fp32 on 96 held-out real faces of clip A and 96 `lite` swaps of them, single
thread: 14.2 vs 19.6 ms per face, every S1 score correlated > 0.9999 with its fp32 value (median
relative difference <= 0.4 %), per-signal ROC-AUCs equal to 3 decimals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry.transform import build_laplacian_pyramid
from kornia.metrics import ssim

from faceswap.convert.mask import face_masks
from faceswap.detect.regions import masked_mean
from faceswap.train.losses import ssim_window

ERODE_PERCENT = 6.0  # of the crop side: keeps the score off the mask's feathered edge
PYRAMID_LEVELS = 3


def inner_face_mask(size: int, coverage: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """`(1, 1, S, S)` eroded template face mask in [0, 1]."""
    return face_masks(1, size, coverage, erode=ERODE_PERCENT, device=device)


def face_error(u: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Laplacian-pyramid L1 + (1 - SSIM) inside `mask`: `(B, 3, S, S)` x 2, `(1, 1, S, S)` -> `(B,)`."""
    pu, pv = build_laplacian_pyramid(u, PYRAMID_LEVELS), build_laplacian_pyramid(v, PYRAMID_LEVELS)
    lap = sum(masked_mean((a - b).abs(), mask) for a, b in zip(pu, pv)) / len(pu)
    dssim = 1.0 - masked_mean(ssim(u, v, ssim_window(u.shape[-1]), padding="same"), mask)
    return lap + dssim


@torch.no_grad()
def consistency_signals(model, faces: torch.Tensor, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """S1 scores of faces under a `SwapModel`.

    Args:
        model: a `faceswap.model.autoencoder.SwapModel` (put in eval mode here).
        faces: `(B, 3, S', S')` float in [0, 1] (or uint8), cropped with the model's coverage;
            resized to the model's size.
        precision: "fp32" or "bf16" (autocast; see `faceswap.convert.swap.resolve_precision`).
    Returns:
        `{"s1_err_a", "s1_err_b", "s1_gap_a", "s1_gap_b"}`, each `(B,)` float32 on the model's device.
    """
    model.eval()
    p = next(model.parameters())
    x = faces.to(p.device)
    x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
    if x.shape[-1] != model.size:
        x = F.interpolate(x, size=(model.size, model.size), mode="bilinear", antialias=True, align_corners=False)
    mask = inner_face_mask(model.size, model.coverage, p.device)
    out: dict[str, torch.Tensor] = {}
    autocast = lambda: torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")  # noqa: E731
    with autocast():
        code = model.encoder(x.to(p.dtype))
    for k in ("a", "b"):
        with autocast():
            y = model.decoders[k](code)[:, :3].float()
            z = model.decoders[k](model.encoder(y.to(p.dtype)))[:, :3].float()
        out[f"s1_err_{k}"] = face_error(x, y, mask)  # scores in fp32, outside autocast
        out[f"s1_gap_{k}"] = face_error(y, z, mask)
    return out

"""Known swaps made by the swap model itself, for fitting the fusion when no real swaps are given.

Like convert, per real face crop x (at the detector's size) and for each decoder k in {a, b}:
the model's output D_k(E(x)) at the model's size is upsampled to the crop, colour-matched to x
inside the template face mask (mean-std, convert's default) and pasted over x with that mask,
then rounded to 8 bit. Faces of A through decoder b are A->B swaps; through decoder a they are the
model's reconstructions: both are faces the model made. Not modelled: the frame round trip
(crop -> frame -> re-detected crop) and the video codec of a real convert run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from faceswap.convert.color import DEFAULT_COLOR, transfer_color
from faceswap.convert.mask import face_masks


@torch.no_grad()
def model_fakes(model, faces: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """`(B, 3, S, S)` uint8 real crops (model's coverage) -> `(2B, 3, S, S)` uint8 pasted swaps
    (first the B through decoder a, then the B through decoder b)."""
    model.eval()
    p = next(model.parameters())
    size = faces.shape[-1]
    x = faces.to(p.device).float().div(255)
    small = F.interpolate(x, size=(model.size, model.size), mode="bilinear", antialias=True, align_corners=False)
    mask = face_masks(len(x), size, model.coverage, device=p.device)
    out = []
    for k in ("a", "b"):
        with torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            y = model.decoders[k](model.encoder(small.to(p.dtype)))[:, :3].float()
        y = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        y = transfer_color(y, x, mask, DEFAULT_COLOR)
        out.append((mask * y + (1 - mask) * x).mul(255).round().clamp(0, 255).to(torch.uint8).cpu())
    return torch.cat(out)

"""The occlusion net: per pixel of an aligned face crop, how likely it is not the face but something
in front of it (a hand, a cup, hair, a glasses frame).

A small U-Net (`OcclusionNet`) over the source crop at `SIZE` px and, beside it, how far the swap
model's own reconstruction of that face (encode, decode with the same identity) is from it: the
autoencoder has only ever seen this person's face, so it paints face where a cup or a hand is, and
the difference marks what is not face whatever its colour or texture (the seeds' "reconstruction
error flags anomalies", per pixel). The net turns that noisy evidence, and the crop's own edges,
into a clean mask, calibrated on this model's usual error (eyes and teeth are never perfect). It is trained by
`faceswap train-occlusion` (`train.occlusion`) with synthetic occluders pasted over the user's own
training faces, so it needs no hand labels and no downloaded weights: it learns what these faces
look like and flags whatever does not belong. Convert multiplies its paste mask by `1 - p` (`--mask
occlusion`), so the source's occluder stays in front of the swap.

Saved beside the swap model as `occlusion.safetensors` (weights, their SHA-256, the crop size and
coverage it was trained for), read back with the same checks as the model's checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError

OCCLUSION_NAME = "occlusion.safetensors"
FORMAT = "faceswap-occlusion"
FORMAT_VERSION = 1
SIZE = 128  # crop side the net sees: a 2-3 px strand on a ~270 px face is still ~1 px here
# Channels per level, SIZE down to SIZE / 16. The full-size level is narrow: at 16 channels it took
# half the net's FLOPs and convert ran at 0.66x the landmark mask's frames/s (bench/occlusion.py).
WIDTHS = (8, 24, 32, 48, 64)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1, inplace=True))


IN_CHANNELS = 6  # the crop's RGB and |crop - the model's reconstruction of it|


def occlusion_input(crops: torch.Tensor, recon: torch.Tensor, side: int = SIZE) -> torch.Tensor:
    """The net's input: `(B, 3, S', S')` crops and the model's `(B, 3, s, s)` reconstructions of
    them, both in [0, 1] -> `(B, 6, side, side)` (crops area-resized, reconstructions bicubic)."""
    x = crops.float() if crops.shape[-1] == side else F.interpolate(crops.float(), size=(side, side), mode="area")
    r = recon.float() if recon.shape[-1] == side else F.interpolate(recon.float(), size=(side, side), mode="bicubic", align_corners=False)
    return torch.cat([x, (x - r.clamp(0, 1)).abs()], 1)


class OcclusionNet(nn.Module):
    """`(B, 6, S, S)` inputs (`occlusion_input`) -> `(B, 1, S, S)` occlusion logits (S divisible by 16).

    Encoder: two 3x3 convs per level, stride-2 between levels. Decoder: bilinear 2x up, concatenate
    the encoder's features of that level, two 3x3 convs. No normalisation layers: batch statistics
    would make a face's mask depend on the other faces in its batch.
    """

    def __init__(self, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        cin = IN_CHANNELS
        for i, w in enumerate(self.widths):
            self.down.append(nn.Sequential(_conv(cin, w, 1 if i == 0 else 2), _conv(w, w)))
            cin = w
        self.up = nn.ModuleList()
        for w_skip in reversed(self.widths[:-1]):
            self.up.append(nn.Sequential(_conv(cin + w_skip, w_skip), _conv(w_skip, w_skip)))
            cin = w_skip
        self.head = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :3] * 2.0 - 1.0, x[:, 3:] * 4.0], 1)  # errors are small: scaled up to the crop's range
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def occlusion_probs(net: OcclusionNet, crops: torch.Tensor, recon: torch.Tensor, size: int) -> torch.Tensor:
    """Occlusion probability of `(B, 3, S', S')` crops in [0, 1] given the swap model's
    reconstructions `(B, 3, s, s)` of them, `(B, 1, size, size)` float (resized bilinearly from
    the net's side, `net.size`)."""
    side = getattr(net, "size", SIZE)
    p = torch.sigmoid(net(occlusion_input(crops, recon, side)).float())
    return p if side == size else F.interpolate(p, size=(size, size), mode="bilinear", align_corners=False)


@dataclass
class OcclusionInfo:
    """What `occlusion.safetensors` records beside the weights."""

    size: int
    coverage: str
    iterations: int
    val_iou: float | None = None  # mean IoU on held-out faces with synthetic occluders at the last save
    faces: list[str] | None = None  # the face folders it learned from


def save_occlusion(model_dir: str | Path, net: OcclusionNet, info: OcclusionInfo) -> str:
    """Write `occlusion.safetensors` atomically; returns the weights' SHA-256. Refuses NaN/inf
    weights (a diverged run must not replace the last good save)."""
    from safetensors.torch import save

    from faceswap.model.autoencoder import first_nonfinite, weights_sha256

    weights = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    bad = first_nonfinite(weights)
    if bad is not None:
        raise FaceswapError(f"not saving the occlusion net: {bad} holds NaN/inf (training diverged)")
    digest = weights_sha256(weights)
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "weights_sha256": digest,
            "widths": json.dumps(list(net.widths)), "info": json.dumps(info.__dict__)}
    atomic_write_bytes(Path(model_dir) / OCCLUSION_NAME, save(weights, metadata=meta))
    return digest


def has_occlusion(model_dir: str | Path) -> bool:
    return (Path(model_dir) / OCCLUSION_NAME).is_file()


def load_occlusion(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[OcclusionNet, OcclusionInfo]:
    """Read and verify `occlusion.safetensors` (header, SHA-256, finite weights) into an eval-mode
    net on `device`; a one-line `FaceswapError` for a missing, foreign, corrupt or mismatched file."""
    from safetensors import safe_open

    from faceswap.model.autoencoder import first_nonfinite, weights_sha256

    path = Path(model_dir) / OCCLUSION_NAME
    if not path.is_file():
        raise FaceswapError(f"{model_dir} has no occlusion net ({OCCLUSION_NAME}); train one with "
                            f"`faceswap train-occlusion {model_dir}`")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise FaceswapError(f"{path} is not a faceswap occlusion net")
            weights = {k: f.get_tensor(k).clone() for k in f.keys()}
        widths = tuple(int(w) for w in json.loads(meta["widths"]))
        info = OcclusionInfo(**json.loads(meta["info"]))
        digest = meta["weights_sha256"]
    except FaceswapError:
        raise
    except Exception as exc:  # safetensors' own error types for truncated/garbled files, bad JSON
        raise FaceswapError(f"occlusion net {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    if weights_sha256(weights) != digest:
        raise FaceswapError(f"occlusion net {path} is corrupt: its weights do not match their recorded SHA-256")
    if first_nonfinite(weights) is not None:
        raise FaceswapError(f"occlusion net {path} holds NaN/inf weights")
    net = OcclusionNet(widths)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise FaceswapError(f"occlusion net {path} does not fit its recorded shape") from exc
    net.size = info.size
    return net.to(device).eval(), info


def forward_flops(net: OcclusionNet, size: int = SIZE) -> int:
    """FLOPs (2 per multiply-add) of one `size` px forward pass, as `model.autoencoder.forward_flops` counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        net(torch.zeros(1, IN_CHANNELS, size, size))
    return int(fc.get_total_flops())

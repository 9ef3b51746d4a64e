"""Pick the compute device once, in one place."""

from __future__ import annotations

import torch

from faceswap.errors import FaceswapError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when present, else CPU. `cuda` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FaceswapError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise FaceswapError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)

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


def set_torch_threads(threads: int | None) -> None:
    """`--threads N`: torch's CPU threads for this process (None leaves torch's default). One thread
    is much faster on a busy CPU: idle OpenMP threads spin while they wait."""
    if threads is not None:
        if threads < 1:
            raise FaceswapError(f"--threads {threads}: use 1 or more")
        torch.set_num_threads(threads)

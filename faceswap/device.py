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


def keep_freed_memory(keep: bool = True) -> None:
    """Let glibc's malloc keep and reuse freed memory instead of handing large blocks back to the
    kernel and faulting them in again on the next batch (frames, crops and activations are
    allocated anew every batch). extract on clip A: page faults 460 -> ~120 per frame, and the
    O-net and the large P-net levels no longer run 2-3x slower per item at larger batches. Peak
    memory went down (1382 -> ~1100 MiB): what is kept is reused. `keep=False` returns freed
    memory above 64 MiB to the kernel again, with the 32 MiB mmap threshold that glibc's own
    adaptive threshold reaches under tensor work (its static 128 KiB default faults every large
    tensor in anew: a conv loop ran 1.6x slower with 5x the page faults). No-op off glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded in this process
    except (OSError, AttributeError, TypeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    # Blocks below 32 MiB (glibc's largest threshold) from the heap; never shrink it for a freed
    # block (or only beyond 64 MiB free); grow it in 64 MiB steps (or glibc's 128 KiB).
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30 if keep else 64 << 20)
    mallopt(m_top_pad, 64 << 20 if keep else 128 << 10)

"""Pick the compute device once, in one place; and how many CPU threads torch gets."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

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


def _busy_and_own() -> tuple[float, float] | None:
    """(CPU-seconds all CPUs spent busy since boot, CPU-seconds this process used); None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    t = os.times()
    return (sum(fields[:8]) - idle) / tick, t.user + t.system


class LoadAwareThreads:
    """Torch's thread count from what else runs on the machine, re-checked as the work goes on.

    With every core busy elsewhere, torch's OpenMP threads wait on each other at every op for a
    thread the kernel has descheduled: measured on this 2-core box beside other jobs, lite training
    ran at 3.5 EG/s with 2 threads and 8.1 with 1. So: threads = CPUs minus the CPUs' worth of work
    other processes did over the last `interval` s (at least 1), measured from /proc/stat minus this
    process's own CPU time: no sampling sleep, `update()` only reads two counters.
    """

    def __init__(self, interval: float = 10.0, max_threads: int | None = None, fixed: int | None = None):
        """`max_threads`: the most it uses (default torch's current count); `fixed`: always that many."""
        if fixed is not None and fixed < 1:
            raise FaceswapError(f"--threads {fixed}: use 1 or more")
        self.interval, self.fixed = interval, fixed
        self.max_threads = max_threads or torch.get_num_threads()  # torch's default honours OMP_NUM_THREADS
        self._last = _busy_and_own()
        self._at = time.monotonic()
        self.threads = fixed or self.max_threads
        self.other_load = 0.0

    def start(self, probe: float = 0.2) -> int:
        """Measure the other load over `probe` s (once, at start) and set the threads; with
        `fixed` (the user's `--threads`) just set those."""
        if self.fixed is not None:
            torch.set_num_threads(self.fixed)
            return self.fixed
        time.sleep(probe)
        self._apply(force=True)
        return self.threads

    def update(self) -> int:
        """Call often from the thread that runs torch (OpenMP's count is per calling thread), e.g.
        every training step or batch; every `interval` s it re-checks the load."""
        if self.fixed is None and time.monotonic() - self._at >= self.interval:
            self._apply()
        return self.threads

    def _apply(self, force: bool = False) -> None:
        now, at = _busy_and_own(), time.monotonic()
        if now is None or self._last is None:
            return
        elapsed = max(at - self._at, 1e-6)
        busy, own = now[0] - self._last[0], now[1] - self._last[1]
        self._last, self._at = now, at
        self.other_load = max(0.0, (busy - own) / elapsed)
        threads = threads_for_load(self.max_threads, self.other_load)
        if force or threads != self.threads:
            self.threads = threads
            torch.set_num_threads(threads)


def threads_for_load(cpus: int, other_load: float) -> int:
    """Threads for `cpus` CPUs of which other processes keep `other_load` busy: the free ones, at
    least 1 (a CPU counts as taken once 0.4 of it is busy: a job at full tilt on one of two takes it)."""
    return max(1, min(cpus, int(cpus - other_load + 0.4)))


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


@contextmanager
def torch_threads(threads: int | None, interval: float = 10.0) -> Iterator[LoadAwareThreads]:
    """Torch's CPU threads for one stage: the user's `--threads`, or (None) as many as the other load
    on the machine leaves free (`LoadAwareThreads`; call `.update()` per batch). Restores torch's
    count afterwards, so a stage run from Python leaves the process as it found it."""
    before = torch.get_num_threads()
    policy = LoadAwareThreads(interval, fixed=threads)
    try:
        policy.start()
        yield policy
    finally:
        torch.set_num_threads(before)

"""The optimisation loop the detector's learned signals share (S2's autoencoder, S4's blend net)."""

from __future__ import annotations

import time
from typing import Callable

import torch


def optimise(loss_of: Callable[[], torch.Tensor], opt: torch.optim.Optimizer, sched, iterations: int,
             progress: Callable[[int, int, float], None] | None = None, minutes: float | None = None) -> None:
    """`iterations` steps of `opt` on `loss_of()` (a fresh batch's loss each call), `sched` (or None)
    stepped after each. `progress(iteration, total, smoothed loss)` every 10 steps and at the end;
    stops early after `minutes`."""
    t0, loss_avg = time.monotonic(), None
    for it in range(1, iterations + 1):
        loss = loss_of()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if progress and (it % 10 == 0 or it == iterations):
            progress(it, iterations, loss_avg)
        if minutes is not None and time.monotonic() - t0 > 60 * minutes:
            break

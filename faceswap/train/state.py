"""Training state <-> flat tensors + JSON, for the ``train/`` part of `model.safetensors` (no pickle)."""

from __future__ import annotations

import torch


def pack_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """`opt.state_dict()` as tensors ``optim/<param index>/<name>`` plus JSON for everything else."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim/{idx}/{name}"] = v
            else:
                scalars.setdefault(str(idx), {})[name] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unpack_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of `pack_optimizer`; raises ValueError when the state does not fit `opt`."""
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = meta["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        raise ValueError("optimizer state has a different number of parameters")
    opt.load_state_dict({"state": state, "param_groups": groups})


def pack_generators(states: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """One RNG state (uint8 tensor) per rank -> ``rng/<rank>``."""
    return {f"rng/{r}": s for r, s in enumerate(states)}


def unpack_generator(tensors: dict[str, torch.Tensor], rank: int) -> torch.Tensor | None:
    return tensors.get(f"rng/{rank}")

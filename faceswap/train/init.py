"""`train --init MODEL_DIR`: start a new model from an earlier one's weights.

The shared encoder has learnt faces in general (pose, expression, light), so it is always taken. A
decoder (and its refiner) is identity-specific: it is taken only for an identity whose face folder
holds the same faces as one of the earlier model's (compared by `faces_fingerprint`, recorded in
`config.json` by every training run), under whichever letter it had there, so a B->C model can
start from an A->B one with B's decoder. Nothing else carries over: optimizer, RNG and iteration
start fresh (a new model, not a resume).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from faceswap.errors import FaceswapError
from faceswap.faces.store import list_images


def faces_fingerprint(folder: str | Path) -> str:
    """SHA-256 of the names, sizes and contents' first 64 KiB of a folder's face images: the same
    faces extracted the same way match wherever the folder is; any added, removed or re-extracted
    face changes it. Reads at most 64 KiB per file (a 1,000-face folder in well under a second)."""
    h = hashlib.sha256()
    for path in list_images(Path(folder)):
        h.update(f"{path.name}|{path.stat().st_size}\n".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 16))
    return h.hexdigest()


@dataclass
class InitReport:
    """What `init_from` took: `decoders` maps this model's identity -> the earlier model's identity."""

    source: Path
    decoders: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        taken = ", ".join(f"decoder {k.upper()} (its {v.upper()}: same faces)" for k, v in sorted(self.decoders.items()))
        fresh = [k.upper() for k in ("a", "b") if k not in self.decoders]
        return (f"initialised from {self.source}: encoder" + (f", {taken}" if taken else "")
                + (f"; decoder {' and '.join(fresh)} new (faces differ from the earlier model's)" if fresh else ""))


def init_from(model, init_dir: Path, fingerprints: dict[str, str]) -> InitReport:
    """Copy the encoder, and each decoder (+ refiner) whose faces match, from the model in `init_dir`
    into `model` (a freshly built `SwapModel`), in place.

    Args:
        model: the new model.
        init_dir: an earlier model dir.
        fingerprints: this run's ``{"a": faces_fingerprint(A), "b": ...}``.
    Raises:
        FaceswapError when `init_dir` is not a readable model or its architecture (preset numbers,
        coverage, mask channel) differs from `model`'s; refiners are taken only when both have them
        at the same factor.
    """
    from faceswap.model.autoencoder import Preset, read_checkpoint, read_config

    init_dir = Path(init_dir)
    cfg = read_config(init_dir)
    try:
        arch = Preset.from_json(cfg["architecture"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FaceswapError(f"--init {init_dir}: its config.json does not describe a model ({exc})") from exc
    mine = model.preset
    if arch.to_json() | {"description": ""} != mine.to_json() | {"description": ""}:
        raise FaceswapError(f"--init {init_dir} is a {cfg.get('preset')!r} model of another architecture than --preset "
                            f"{mine.name}: pass --preset {cfg.get('preset')} (its weights only fit that)")
    if cfg.get("coverage") != model.coverage:
        raise FaceswapError(f"--init {init_dir} was trained on {cfg.get('coverage')!r} coverage faces, these are {model.coverage!r}")
    if bool(cfg.get("learn_mask")) != model.learn_mask:
        raise FaceswapError(f"--init {init_dir} was trained with{'' if cfg.get('learn_mask') else 'out'} --learn-mask: "
                            f"train this one the same way")
    weights = read_checkpoint(init_dir, with_train_state=False).weights
    faces = (cfg.get("train") or {}).get("faces") or {}
    theirs = {k: (faces.get(k) or {}).get("fingerprint") for k in ("a", "b")}
    same_refine = int(cfg.get("refine", 0)) == model.refine
    report = InitReport(init_dir)
    state = model.state_dict()
    take: dict[str, torch.Tensor] = {k: v for k, v in weights.items() if k.startswith("encoder.")}
    for ident in ("a", "b"):
        match = next((k for k in ("a", "b") if theirs[k] and theirs[k] == fingerprints.get(ident)), None)
        if match is None:
            continue
        report.decoders[ident] = match
        for prefix in ("decoders.", "refiners.") if same_refine else ("decoders.",):
            take |= {prefix + ident + k[len(prefix) + 1:]: v for k, v in weights.items() if k.startswith(prefix + match + ".")}
    missing = [k for k in take if k not in state or state[k].shape != take[k].shape]
    if missing:
        raise FaceswapError(f"--init {init_dir}: weights {missing[0]!r} do not fit this model")
    model.load_state_dict(take, strict=False)
    return report

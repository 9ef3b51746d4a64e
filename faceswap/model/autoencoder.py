"""Shared-encoder / two-decoder face autoencoder.

One encoder is shared by identities A and B; each identity has its own decoder. Training
reconstructs each identity through its own decoder; a swap encodes a face of A and decodes it with
B's decoder (``"a2b"``), so the shared code has to carry pose, expression and light, and the decoder
adds the identity.

Shapes (``S`` = preset size, ``L`` = latent channels)::

    faces (B, 3, S, S) --encoder--> code (B, L/2, 8, 8) --decoder--> (B, 3 [+1 mask], S, S)

Encoder: stride-2 convs down to 4x4, flatten, dense bottleneck, dense back to 4x4xL, one upscale.
Decoder: upscales (3x3 conv to 4x channels + pixel shuffle) to S, optional residual blocks, then a
conv with sigmoid for RGB and, with ``learn_mask``, one more channel trained against the template
face mask.

Model dir (see `load_model`)::

    config.json          what the model is and what its training runs used (JSON, written atomically)
    model.safetensors    weights (keys ``encoder.*``, ``decoders.a.*``, ``decoders.b.*``) and, under
                         ``train/``, the optimizer and RNG state a resume needs; metadata holds the
                         iteration, the training state JSON, ``weights_sha256`` (the SHA-256 of the
                         weights: the model id) and ``train_sha256`` (the SHA-256 of the ``train/``
                         tensors and every other metadata field, so a damaged Adam state or iteration
                         is refused on resume). One file, so one `os.replace` commits a save: a kill
                         leaves the previous save or the new one, never a mix. Nothing non-finite is
                         ever saved or loaded.
    log.csv, loss.png    training curves;  previews/  preview grids
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError
from faceswap.model.blocks import ConvAct, ResBlock, Upscale
from faceswap.model.refiner import FACTORS, Refiner, refine_patches

DIRECTIONS = {"a2b": "b", "b2a": "a"}  # direction -> decoder used


@dataclass(frozen=True)
class Preset:
    """An architecture by numbers; `config.json` stores it, so old models load after presets change."""

    name: str
    size: int  # input and output side, px
    enc: tuple[int, ...]  # channels of the stride-2 encoder convs (size / 2**len(enc) must be 4)
    enc_kernel: int  # kernel of those convs
    dense: int  # bottleneck width
    latent: int  # channels of the 4x4 map the bottleneck is expanded to
    dec: tuple[int, ...]  # channels after each decoder upscale
    out_kernel: int  # kernel of the final RGB(+mask) conv
    res_blocks: int = 0  # residual blocks after each decoder upscale
    lr: float = 5e-5  # Adam learning rate that suits it
    description: str = field(default="", compare=False)

    def __post_init__(self):
        if self.size != 4 * 2 ** len(self.enc) or self.size != 8 * 2 ** len(self.dec):
            raise ValueError(f"preset {self.name}: size {self.size} does not match {len(self.enc)} downs / {len(self.dec)} ups")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Preset":
        d = dict(d)
        d["enc"], d["dec"] = tuple(d["enc"]), tuple(d["dec"])
        return cls(**d)


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "original", 64, enc=(128, 256, 512, 1024), enc_kernel=5, dense=1024, latent=1024,
            dec=(256, 128, 64), out_kernel=5, lr=5e-5,
            description="the classic deepfakes 64 px model",
        ),
        # CPU-first: 3x3 convs, narrow high-resolution layers and a 256-wide bottleneck: 1/7 of
        # original's FLOPs. Chosen on the real A/B clips at equal compute against a 2x wider variant
        # (1.0 GFLOP): same held-out SSIM (0.57/0.55 vs 0.54/0.56), at twice the examples per second, so
        # more iterations fit in a 30-minute CPU run. Recognisable reconstructions after ~1100 iterations.
        Preset(
            "lite", 64, enc=(64, 128, 256, 512), enc_kernel=3, dense=256, latent=256,
            dec=(128, 64, 32), out_kernel=3, lr=3e-4,
            description="CPU-first 64 px model",
        ),
        Preset(
            "hq", 128, enc=(128, 256, 512, 1024, 1024), enc_kernel=5, dense=1024, latent=1024,
            dec=(512, 256, 128, 64), out_kernel=5, res_blocks=1, lr=5e-5,
            description="128 px model for GPUs",
        ),
        # 256 px for GPUs (DeepFaceLab's and faceswap's users train 128-640): 31.6 GFLOP per example
        # forward, 140 M parameters; the narrow last stages keep the 128/256 px layers affordable.
        # Not yet trained on a GPU (bench/gpu_check.sh runs it for 2 minutes when one is lent).
        Preset(
            "hd", 256, enc=(64, 128, 256, 512, 1024, 1024), enc_kernel=5, dense=1024, latent=1024,
            dec=(512, 256, 128, 64, 32), out_kernel=5, res_blocks=1, lr=5e-5,
            description="256 px model for GPUs",
        ),
    ]
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise FaceswapError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]


class Encoder(nn.Module):
    """`(B, 3, S, S)` in [0, 1] -> code `(B, latent/2, 8, 8)`."""

    def __init__(self, p: Preset):
        super().__init__()
        chans = (3, *p.enc)
        self.convs = nn.Sequential(*[ConvAct(a, b, p.enc_kernel, stride=2) for a, b in zip(chans, chans[1:])])
        # No activation around the dense pair: the classic model's linear bottleneck.
        self.dense1 = nn.Linear(4 * 4 * p.enc[-1], p.dense)
        self.dense2 = nn.Linear(p.dense, 4 * 4 * p.latent)
        self.up = Upscale(p.latent, p.latent // 2)
        self.latent = p.latent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x).flatten(1)
        x = self.dense2(self.dense1(x)).view(-1, self.latent, 4, 4)
        return self.up(x)


class Decoder(nn.Module):
    """Code `(B, latent/2, 8, 8)` -> `(B, 3 + mask, S, S)` in [0, 1] (RGB, then the mask channel if any)."""

    def __init__(self, p: Preset, out_channels: int):
        super().__init__()
        chans = (p.latent // 2, *p.dec)
        layers: list[nn.Module] = []
        for a, b in zip(chans, chans[1:]):
            layers.append(Upscale(a, b))
            layers += [ResBlock(b) for _ in range(p.res_blocks)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(p.dec[-1], out_channels, p.out_kernel, padding=p.out_kernel // 2)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.body(code)
        if h.dtype != self.out.weight.dtype:
            # Under autocast the output conv still runs in fp32: bf16's 8-bit mantissa would quantise
            # pixels coarser than the 8-bit images we train on. It is a tiny share of the FLOPs.
            with torch.autocast(h.device.type, enabled=False):
                return torch.sigmoid(self.out(h.to(self.out.weight.dtype)))
        return torch.sigmoid(self.out(h))


class SwapModel(nn.Module):
    """Encoder shared by identities ``a`` and ``b`` plus one decoder each.

    Attributes:
        encoder: `Encoder`.
        decoders: `nn.ModuleDict` with keys ``"a"`` and ``"b"``.
        preset: the `Preset` the model was built from; ``size`` = ``preset.size``.
        coverage: face coverage of the crops it was trained on (see `faceswap.faces.align`).
        learn_mask: whether decoders emit a 4th (mask) channel.
        refine: factor of the identity refiners (`faceswap.model.refiner`, keys ``refiners.a/b``), 0 = none;
            ``out_size`` = ``size * refine`` (or ``size``) is the side of what `swap` returns.
    """

    def __init__(self, preset: Preset, coverage: str = "face", learn_mask: bool = False, refine: int = 0):
        super().__init__()
        if refine not in FACTORS:
            raise FaceswapError(f"refine factor {refine!r} is not one of {FACTORS}")
        self.preset, self.size, self.coverage, self.learn_mask, self.refine = preset, preset.size, coverage, learn_mask, refine
        self.out_size = preset.size * (refine or 1)
        out = 4 if learn_mask else 3
        self.encoder = Encoder(preset)
        self.decoders = nn.ModuleDict({"a": Decoder(preset, out), "b": Decoder(preset, out)})
        if refine:
            self.refiners = nn.ModuleDict({"a": Refiner(refine), "b": Refiner(refine)})

    def forward(self, faces_a: torch.Tensor, faces_b: torch.Tensor, patches: dict | None = None) -> tuple[torch.Tensor, ...]:
        """Training pass: both identities through the shared encoder in one batch, each through its decoder.

        `(Ba, 3, S, S)`, `(Bb, 3, S, S)` -> `(Ba, C, S, S)`, `(Bb, C, S, S)` with C = 3 (+1 mask).
        With refiners and `patches` (identity -> `(y0, x0)` patch corners of its first k faces, see
        `refiner.random_origins`), also each identity's refined patches of its detached decoder output,
        `(k, 3, R*PATCH, R*PATCH)`: in this one call, so DDP sees every parameter used in its forward.
        """
        code = self.encoder(torch.cat([faces_a, faces_b]))
        out_a, out_b = self.decoders["a"](code[: len(faces_a)]), self.decoders["b"](code[len(faces_a):])
        if not patches or not self.refine:
            return out_a, out_b
        refined = [refine_patches(self.refiners[k], out[: len(patches[k][0]), :3], *patches[k]) for k, out in (("a", out_a), ("b", out_b))]
        return out_a, out_b, *refined

    def _prepare(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.dim() != 4 or faces.shape[1] != 3 or faces.shape[2] != faces.shape[3]:
            raise FaceswapError(f"expected faces of shape (B, 3, S, S), got {tuple(faces.shape)}")
        p = next(self.parameters())
        faces = faces.to(device=p.device, dtype=p.dtype)
        if faces.shape[-1] != self.size:
            faces = F.interpolate(faces, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return faces

    @torch.no_grad()
    def reconstruct(self, faces: torch.Tensor, identity: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode and decode with `identity`'s decoder (``"a"`` or ``"b"``).

        Args:
            faces: `(B, 3, S', S')` float in [0, 1], aligned with the model's coverage; resized to
                `size` when S' differs.
        Returns:
            images `(B, 3, size, size)` in [0, 1], and the learned mask `(B, 1, size, size)` or None.
        """
        if identity not in self.decoders:
            raise FaceswapError(f"unknown identity {identity!r} (use 'a' or 'b')")
        out = self.decoders[identity](self.encoder(self._prepare(faces)))
        return out[:, :3], (out[:, 3:4] if self.learn_mask else None)

    def _target(self, direction: str) -> str:
        if direction not in DIRECTIONS:
            raise FaceswapError(f"unknown swap direction {direction!r} (use 'a2b' or 'b2a')")
        return DIRECTIONS[direction]

    def _render(self, code: torch.Tensor, target: str, refine: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An encoding through `target`'s decoder (and refiner, with `refine`): images and learned mask."""
        out = self.decoders[target](code)
        rgb = self.refiners[target](out[:, :3]) if refine and self.refine else out[:, :3]
        return rgb, (out[:, 3:4] if self.learn_mask else None)

    @torch.no_grad()
    def swap(self, faces: torch.Tensor, direction: str, refine: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``"a2b"``: faces of A rendered as B (encode, decode with B); ``"b2a"`` the other way.

        Same shapes as `reconstruct`; with `refine` (and refiners) the images are `(B, 3, out_size,
        out_size)` from the target identity's refiner (the mask stays at `size`).
        """
        target = self._target(direction)
        return self._render(self.encoder(self._prepare(faces)), target, refine)

    @torch.no_grad()
    def swap_and_reconstruct(self, faces: torch.Tensor, direction: str, refine: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`swap`, plus the source identity's own reconstruction of the faces `(B, 3, size, size)`
        from the same encoding (what the occlusion net compares the source with)."""
        target = self._target(direction)
        code = self.encoder(self._prepare(faces))
        rgb, mask = self._render(code, target, refine)
        return rgb, mask, self.decoders["a" if target == "b" else "b"](code)[:, :3]

    def describe(self) -> dict:
        """What `config.json` records about the architecture."""
        return {"preset": self.preset.name, "size": self.size, "coverage": self.coverage,
                "learn_mask": self.learn_mask, "refine": self.refine, "architecture": self.preset.to_json(),
                "parameters": count_parameters(self), "forward_flops_per_example": forward_flops(self)}


def build_model(preset: str | Preset, coverage: str = "face", learn_mask: bool = False, refine: int = 0) -> SwapModel:
    return SwapModel(get_preset(preset) if isinstance(preset, str) else preset, coverage, learn_mask, refine)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: SwapModel) -> int:
    """FLOPs (2 per multiply-add) of one example through the encoder and one decoder.

    A training step costs about 3x this per example (forward + backward for inputs and weights).
    """
    from torch.utils.flop_counter import FlopCounterMode

    p = next(model.parameters())
    x = torch.zeros(1, 3, model.size, model.size, device=p.device, dtype=p.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model.decoders["a"](model.encoder(x))
    return int(fc.get_total_flops())


# --- model dir -------------------------------------------------------------------------------------

FORMAT = "faceswap-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRAIN_PREFIX = "train/"  # checkpoint keys that are training state, not weights


def _hash_tensors(h, tensors: dict[str, torch.Tensor]) -> None:
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy


def weights_sha256(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the weights, in name order."""
    h = hashlib.sha256()
    _hash_tensors(h, weights)
    return h.hexdigest()


def train_sha256(meta: dict[str, str], train_tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a checkpoint's training part: every metadata field but ``train_sha256`` itself
    (iteration, training state JSON, the weights' SHA-256, ...) and the ``train/``-prefixed tensors.
    Kept apart from `weights_sha256` so the model id does not change with each save's Adam state."""
    h = hashlib.sha256()
    for k in sorted(meta):
        if k != "train_sha256":
            h.update(f"{k}={meta[k]}\n".encode())
    _hash_tensors(h, train_tensors)
    return h.hexdigest()


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """Name of the first floating-point tensor holding a NaN or inf (None when all are finite)."""
    for k, t in tensors.items():
        if t.is_floating_point() and t.numel():
            # min and max propagate NaN: one pass, no bool copy (7x faster than isfinite().all() on CPU)
            lo, hi = torch.aminmax(t.detach().reshape(-1))
            if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
                return k
    return None


def read_config(model_dir: str | Path) -> dict:
    """`config.json` of a model dir, checked to be ours; FaceswapError otherwise."""
    model_dir = Path(model_dir)
    path = model_dir / CONFIG_NAME
    if not model_dir.is_dir():
        raise FaceswapError(f"model dir {model_dir} does not exist")
    if not path.is_file():
        raise FaceswapError(f"{model_dir} is not a faceswap model dir (no {CONFIG_NAME})")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FaceswapError(f"{path} is unreadable or not JSON ({exc})") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise FaceswapError(f"{path} is not a faceswap model config")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise FaceswapError(f"{model_dir} has model format {cfg.get('format_version')!r}; this faceswap reads {FORMAT_VERSION}")
    return cfg


def save_checkpoint(model_dir: Path, model: SwapModel, iteration: int, train_tensors: dict[str, torch.Tensor] | None = None,
                    train_meta: dict | None = None) -> str:
    """Write `model.safetensors` atomically: weights + optional training state. Returns the weights' SHA-256.

    Raises FaceswapError, writing nothing, when a weight or training tensor is NaN/inf: a diverged
    run must not replace the last good save.
    """
    from safetensors.torch import save

    weights = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tensors = dict(weights)
    for k, v in (train_tensors or {}).items():
        tensors[TRAIN_PREFIX + k] = v.detach().to("cpu").contiguous()
    bad = first_nonfinite(tensors)
    if bad is not None:
        raise FaceswapError(f"not saving iteration {iteration}: {bad} holds NaN/inf (training diverged); "
                            f"{model_dir / WEIGHTS_NAME} keeps the last good save")
    digest = weights_sha256(weights)
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "preset": model.preset.name,
            "iteration": str(iteration), "weights_sha256": digest, "train_state": json.dumps(train_meta or {})}
    meta["train_sha256"] = train_sha256(meta, {k: v for k, v in tensors.items() if k.startswith(TRAIN_PREFIX)})
    atomic_write_bytes(model_dir / WEIGHTS_NAME, save(tensors, metadata=meta))
    return digest


@dataclass
class Checkpoint:
    """A verified `model.safetensors`: weights, training state (keys without the ``train/`` prefix), metadata.

    train_verified: False for a checkpoint written before ``train_sha256`` existed (its weights are
    verified, its training state cannot be), or when the training state was not read.
    """

    weights: dict[str, torch.Tensor]
    train_tensors: dict[str, torch.Tensor]
    iteration: int
    sha256: str
    train_meta: dict
    train_verified: bool = False


def read_checkpoint(model_dir: str | Path, with_train_state: bool = True) -> Checkpoint:
    """Read and verify `model.safetensors`. Never unpickles.

    Always: header, metadata, the weights' SHA-256, finite weights. With `with_train_state`: also the
    ``train_sha256`` over the training tensors and metadata (when the checkpoint has one: older ones
    load with ``train_verified=False``) and finite training tensors. Without it the ``train/``
    tensors are not read (inference needs only the weights, and they are verified).
    Tensors are copied out of safetensors' memory map: the bytes hashed are the bytes used, a later
    in-place change of the file cannot reach them, and a resumed run no longer keeps the file it
    replaces mapped (its disk space was held until the run ended).
    """
    from safetensors import safe_open

    path = Path(model_dir) / WEIGHTS_NAME
    if not path.is_file():
        raise FaceswapError(f"{model_dir} holds no trained weights yet ({WEIGHTS_NAME} is missing)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise FaceswapError(f"{path} is not a faceswap checkpoint")
            keys = list(f.keys())
            weights = {k: f.get_tensor(k).clone() for k in keys if not k.startswith(TRAIN_PREFIX)}
            train = {k: f.get_tensor(k).clone() for k in keys if with_train_state and k.startswith(TRAIN_PREFIX)}
        iteration, digest, train_meta = int(meta["iteration"]), meta["weights_sha256"], json.loads(meta["train_state"])
    except FaceswapError:
        raise
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise FaceswapError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from exc
    if weights_sha256(weights) != digest:
        raise FaceswapError(f"checkpoint {path} is corrupt: its weights do not match their recorded SHA-256")
    verified = False
    if with_train_state and "train_sha256" in meta:
        if train_sha256(meta, train) != meta["train_sha256"]:
            raise FaceswapError(f"checkpoint {path} is corrupt: its training state (optimizer/RNG/iteration) "
                                f"does not match its recorded SHA-256")
        verified = True
    bad = first_nonfinite({**weights, **train})
    if bad is not None:
        raise FaceswapError(f"checkpoint {path} holds NaN/inf values ({bad}): it was saved by a diverged training run")
    train = {k[len(TRAIN_PREFIX):]: v for k, v in train.items()}
    return Checkpoint(weights, train, iteration, digest, train_meta, verified)


def model_from_config(cfg: dict) -> SwapModel:
    """An untrained `SwapModel` with the architecture `config.json` records."""
    try:
        preset = Preset.from_json(cfg["architecture"])
        return SwapModel(preset, cfg["coverage"], bool(cfg["learn_mask"]), int(cfg.get("refine", 0)))  # no key: before refiners
    except (KeyError, TypeError, ValueError) as exc:
        raise FaceswapError(f"model config does not describe a buildable model ({exc})") from exc


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> SwapModel:
    """Load a trained model for inference (eval mode, on `device`); see `load_model_with_id`."""
    return load_model_with_id(model_dir, device)[0]


def load_model_with_id(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[SwapModel, str]:
    """Load a trained model for inference (eval mode, on `device`) and its id (`model_id`), from one
    verified read of the checkpoint (reading it twice could pair an id with a later save's weights).

    Raises `FaceswapError` with a one-line reason when the dir is missing, not a model dir, written
    by an incompatible version, holds no weights yet, or its checkpoint is corrupt, truncated or
    holds NaN/inf weights (a diverged run: it would swap in black boxes). The model's `size` and `coverage` tell callers how to crop faces for it.
    """
    cfg = read_config(model_dir)
    ckpt = read_checkpoint(model_dir, with_train_state=False)
    model = model_from_config(cfg)
    try:
        model.load_state_dict(ckpt.weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise FaceswapError(f"weights in {model_dir} do not fit its config ({first[1].strip() if len(first) > 1 else first[0]})") from exc
    return model.to(device).eval(), ckpt.sha256


def model_id(model_dir: str | Path) -> str:
    """Identity of a trained model: SHA-256 of its weights (hex). Verified against the checkpoint."""
    return read_checkpoint(model_dir, with_train_state=False).sha256

"""The detector: signals S1 (optional swap model), S2 (one-class AE), S3 (spectrum), S4 (blend net) and their fusion.

Detector dir::

    detector.safetensors   one file, so one rename commits a save: the S2 weights (`oneclass.*`),
                           the S3 reference (`spectral.mean`, `spectral.std`), the S4 weights
                           (`blend.*`; absent in detectors made before S4); its metadata holds
                           `detector` = the JSON below and the SHA-256 of the tensors.
    detector.json          the same JSON, pretty-printed for people (never read back)

    {"format": "faceswap-detector", "format_version": 1, "size": 128, "coverage": "face",
     "model": null | {"id": <SHA-256 of the swap model's weights>, "size": 64, "coverage": "face", "preset": "lite"},
     "oneclass": OneClassConfig, "blend": BlendConfig | null, "fusion": Fusion (names, z-score stats, weights, threshold, fpr,
     calibration logits, supervised), "training": what `faceswap detect train` saw and measured}

A detector calibrated with S1 from a swap model is only valid with that exact model (its id), and
one calibrated without a model never takes one: `Detector.load` refuses both mismatches.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from faceswap.atomic import atomic_write_bytes
from faceswap.detect.blend import BlendConfig, BlendNet, blend_signals
from faceswap.detect.consistency import consistency_signals
from faceswap.detect.fusion import Fusion
from faceswap.detect.oneclass import OneClassAE, OneClassConfig, oneclass_signals
from faceswap.detect.regions import check_coverage
from faceswap.detect.spectral import SpectralReference, band_signals, spectral_signals, tile_signals
from faceswap.errors import FaceswapError

FORMAT = "faceswap-detector"
FORMAT_VERSION = 1
WEIGHTS_NAME = "detector.safetensors"
JSON_NAME = "detector.json"


class Detector:
    """Scores aligned face crops. Faces: `(B, 3, S, S)` uint8 (or float in [0, 1]) at `size` px with
    `coverage` (other sizes are resized)."""

    def __init__(self, size: int, coverage: str, oneclass: OneClassAE, spectral: SpectralReference, fusion: Fusion | None = None,
                 model=None, model_id: str | None = None, training: dict | None = None, precision: str = "auto",
                 blend: BlendNet | None = None):
        from faceswap.convert.swap import resolve_precision

        check_coverage(size, coverage)
        self.size, self.coverage = size, coverage
        self.oneclass, self.spectral, self.fusion = oneclass.eval(), spectral, fusion
        self.blend = blend.eval() if blend is not None else None
        self.model, self.model_id = model, model_id
        self.training = training or {}
        # S1's model arithmetic, chosen like convert's (bf16 where the hardware has it; see consistency.py).
        self.precision = resolve_precision(precision, next(model.parameters()).device) if model is not None else "fp32"

    @property
    def device(self) -> torch.device:
        return next(self.oneclass.parameters()).device

    def _faces(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces.to(self.device)
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def signals(self, faces: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every raw signal, `{name: (B,) float32 CPU}`; the S1 keys only with a swap model, S4's with a blend net."""
        x = self._faces(faces)
        out = {}
        if self.model is not None:
            out.update(consistency_signals(self.model, x, self.precision))
        out.update(oneclass_signals(self.oneclass, x, self.coverage))
        out.update(spectral_signals(self.spectral, x))
        out.update(band_signals(x, self.coverage))
        out.update(tile_signals(x, self.coverage))
        if self.blend is not None:
            out.update(blend_signals(self.blend, x))
        return {k: v.float().cpu() for k, v in out.items()}

    def score(self, faces: torch.Tensor, fpr: float | None = None) -> dict[str, torch.Tensor]:
        """Signals plus `logit` `(B,)` (higher = more likely swapped) and `flagged` `(B,)` bool,
        thresholded at the calibrated FPR (or at `fpr`, from the stored calibration logits)."""
        if self.fusion is None:
            raise FaceswapError("this detector has no fitted fusion")
        out = self.signals(faces)
        out["logit"] = self.fusion.logit(out).float()
        out["flagged"] = out["logit"] > self.threshold(fpr)
        return out

    def threshold(self, fpr: float | None = None) -> float:
        return self.fusion.threshold if fpr is None else self.fusion.threshold_for(fpr)

    # -- files ---------------------------------------------------------------------------------------
    def header(self) -> dict:
        from faceswap import __version__

        model = None
        if self.model is not None:
            model = {"id": self.model_id, "size": self.model.size, "coverage": self.model.coverage, "preset": self.model.preset.name}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "tool": f"faceswap {__version__}", "size": self.size,
                "coverage": self.coverage, "model": model, "oneclass": self.oneclass.cfg.to_json(),
                "blend": self.blend.cfg.to_json() if self.blend is not None else None,
                "fusion": self.fusion.to_json() if self.fusion else None, "training": self.training}

    def save(self, detdir: str | Path) -> None:
        """Write the detector dir (created if needed); each file atomically."""
        from safetensors.torch import save

        from faceswap.model.autoencoder import weights_sha256

        detdir = Path(detdir)
        detdir.mkdir(parents=True, exist_ok=True)
        tensors = {f"oneclass.{k}": v.detach().cpu().contiguous() for k, v in self.oneclass.state_dict().items()}
        tensors["spectral.mean"], tensors["spectral.std"] = self.spectral.mean.cpu(), self.spectral.std.cpu()
        if self.blend is not None:
            tensors.update({f"blend.{k}": v.detach().cpu().contiguous() for k, v in self.blend.state_dict().items()})
        header = self.header()
        meta = {"format": FORMAT, "detector": json.dumps(header), "sha256": weights_sha256(tensors)}
        atomic_write_bytes(detdir / WEIGHTS_NAME, save(tensors, metadata=meta))
        atomic_write_bytes(detdir / JSON_NAME, (json.dumps(header, indent=2) + "\n").encode())

    @classmethod
    def load(cls, detdir: str | Path, model_dir: str | Path | None = None, device: str | torch.device = "cpu",
             precision: str = "auto") -> "Detector":
        """Read a detector dir; with S1, attach the swap model from `model_dir`, which must be the
        very model it was calibrated with. One-line `FaceswapError` for anything else."""
        detdir = Path(detdir)
        header, tensors = read_detector(detdir)
        try:
            cfg = OneClassConfig(**header["oneclass"])
            ae = OneClassAE(cfg)
            ae.load_state_dict({k[len("oneclass."):]: v for k, v in tensors.items() if k.startswith("oneclass.")}, strict=True)
            spectral = SpectralReference(tensors["spectral.mean"], tensors["spectral.std"])
            blend = None
            if header.get("blend") is not None:
                blend = BlendNet(BlendConfig(**header["blend"]))
                blend.load_state_dict({k[len("blend."):]: v for k, v in tensors.items() if k.startswith("blend.")}, strict=True)
            fusion = Fusion.from_json(header["fusion"])
            size, coverage = int(header["size"]), str(header["coverage"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise FaceswapError(f"{detdir / WEIGHTS_NAME} does not describe a usable detector ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
        model, mid = _attach_model(detdir, header.get("model"), model_dir, device)
        return cls(size, coverage, ae.to(device), spectral, fusion, model, mid, header.get("training"), precision,
                   blend.to(device) if blend is not None else None)


def read_detector(detdir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Header JSON and tensors of `detector.safetensors`, verified (format, version, SHA-256)."""
    from safetensors import safe_open

    from faceswap.model.autoencoder import weights_sha256

    path = detdir / WEIGHTS_NAME
    if not detdir.is_dir():
        raise FaceswapError(f"detector dir {detdir} does not exist (make one with `faceswap detect train`)")
    if not path.is_file():
        raise FaceswapError(f"{detdir} is not a detector dir (no {WEIGHTS_NAME}; make one with `faceswap detect train`)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        header = json.loads(meta["detector"])
        digest = meta["sha256"]
    except Exception as exc:  # safetensors raises its own types for truncated or garbled files
        raise FaceswapError(f"{path} is corrupt or not a detector ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != FORMAT or header.get("format") != FORMAT:
        raise FaceswapError(f"{path} is not a faceswap detector")
    if header.get("format_version") != FORMAT_VERSION:
        raise FaceswapError(f"{path} has detector format {header.get('format_version')!r}; this faceswap reads {FORMAT_VERSION}")
    if weights_sha256(tensors) != digest:
        raise FaceswapError(f"{path} is corrupt: its tensors do not match their recorded SHA-256")
    return header, tensors


def _attach_model(detdir: Path, recorded: dict | None, model_dir, device):
    """The swap model for S1, checked against what the detector was calibrated with."""
    from faceswap.model.autoencoder import load_model_with_id, read_config

    if recorded is None:
        if model_dir is not None:
            raise FaceswapError(f"detector {detdir} was calibrated without a swap model (no S1): drop -m, "
                                f"or train a detector with -m {model_dir}")
        return None, None
    want = recorded["id"]
    if model_dir is None:
        raise FaceswapError(f"detector {detdir} uses S1 of swap model {want[:12]} ({recorded['preset']}, {recorded['size']} px): "
                            f"pass that model's dir with -m")
    cfg = read_config(model_dir)
    if int(cfg.get("size", -1)) != int(recorded["size"]) or cfg.get("coverage") != recorded["coverage"]:
        raise FaceswapError(f"model {model_dir} is {cfg.get('size')} px / {cfg.get('coverage')} coverage; detector {detdir} was "
                            f"calibrated with a {recorded['size']} px / {recorded['coverage']} model ({want[:12]})")
    model, mid = load_model_with_id(model_dir, device)
    if mid != want:
        raise FaceswapError(f"model {model_dir} ({mid[:12]}) is not the swap model detector {detdir} was calibrated with "
                            f"({want[:12]}): scores would be meaningless; retrain the detector with -m {model_dir}")
    return model, mid

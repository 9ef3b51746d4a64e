"""S3, spectral: the azimuthally averaged power spectrum of a face, against real faces'.

A decoder that upsamples by pixel shuffle, and a 64 px face pasted into a larger frame, change the
top of the spectrum: periodic traces at fractions of the sampling rate, or missing detail. Per face:

    grey (B, S, S) -> minus its mean, times a 2-D Hann window -> |FFT|^2 -> mean power in rings of
    integer radius r = 0 .. S/2 - 1 (cycles per crop) -> log10            = `radial_spectrum` (B, S/2)

`SpectralReference` holds the per-ring mean and std of real faces' spectra. Scores, over the
high-frequency rings r >= S/4 (the upper half of the usable band):

    s3_spec = mean_r z_r^2   anomaly in either direction (`spectral_score`)
    s3_hf   = mean_r z_r     signed: < 0 when the face has less fine detail than real faces
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import kornia
import torch


@lru_cache(maxsize=8)
def _rings(size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Hann window `(S, S)`, ring index per FFT bin `(S*S,)` (bins outside the inscribed circle -> the
    extra last ring, dropped), number of rings S // 2."""
    win = torch.hann_window(size, periodic=False)
    f = torch.fft.fftfreq(size) * size
    r = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).floor().long()
    bins = size // 2
    return win[:, None] * win[None, :], r.clamp(max=bins).reshape(-1), bins


def radial_spectrum(faces: torch.Tensor) -> torch.Tensor:
    """`(B, 3, S, S)` float RGB in [0, 1] -> `(B, S // 2)` log10 mean power per frequency ring."""
    size = faces.shape[-1]
    win, ring, bins = _rings(size)
    grey = kornia.color.rgb_to_grayscale(faces.float())[:, 0]
    grey = (grey - grey.mean((1, 2), keepdim=True)) * win.to(grey.device)
    power = torch.fft.fft2(grey).abs().square().reshape(len(faces), -1)
    ring = ring.to(power.device)
    sums = torch.zeros(len(faces), bins + 1, device=power.device).index_add_(1, ring, power)
    counts = torch.bincount(ring, minlength=bins + 1).to(power.dtype)
    return torch.log10(sums[:, :bins] / counts[:bins] + 1e-12)


@dataclass
class SpectralReference:
    """Per-ring statistics of real faces' `radial_spectrum` at one crop size: mean, std `(S // 2,)`."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, faces: torch.Tensor, batch: int = 256) -> "SpectralReference":
        """From real faces `(N, 3, S, S)` (uint8 or float in [0, 1])."""
        spectra = torch.cat([radial_spectrum(_as_float(faces[i : i + batch])) for i in range(0, len(faces), batch)])
        return cls(spectra.mean(0), spectra.std(0).clamp_min(1e-3))

    @property
    def high(self) -> slice:
        """The high-frequency rings the scores use: r >= S/4."""
        return slice(len(self.mean) // 2, len(self.mean))

    def z(self, faces: torch.Tensor) -> torch.Tensor:
        """`(B, 3, S, S)` -> per-ring z-scores `(B, S // 2)`."""
        return (radial_spectrum(_as_float(faces)) - self.mean.to(faces.device)) / self.std.to(faces.device)


def spectral_score(ref: SpectralReference, faces: torch.Tensor) -> torch.Tensor:
    """s3_spec `(B,)`: mean squared z of the high-frequency rings (0 ~ typical of real faces)."""
    return ref.z(faces)[:, ref.high].square().mean(1)


def spectral_signals(ref: SpectralReference, faces: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both S3 scores `{"s3_spec": (B,), "s3_hf": (B,)}` from one spectrum per face."""
    z = ref.z(faces)[:, ref.high]
    return {"s3_spec": z.square().mean(1), "s3_hf": z.mean(1)}


def _as_float(faces: torch.Tensor) -> torch.Tensor:
    return faces.float().div(255) if faces.dtype == torch.uint8 else faces.float()

"""S3, spectral: the azimuthally averaged power spectrum of a face, against real faces'.

A decoder that upsamples by pixel shuffle, and a 64 px face pasted into a larger frame, change the
top of the spectrum: periodic traces at fractions of the sampling rate, or missing detail. Per face:

    grey (B, S, S) -> minus its mean, times a 2-D Hann window -> |FFT|^2 -> mean power in rings of
    integer radius r = 0 .. S/2 - 1 (cycles per crop) -> log10            = `radial_spectrum` (B, S/2)

`SpectralReference` holds the per-ring mean and std of real faces' spectra. Scores, over the
high-frequency rings r >= S/4 (the upper half of the usable band):

    s3_spec = mean_r z_r^2   anomaly in either direction (`spectral_score`)
    s3_hf   = mean_r z_r     signed: < 0 when the face has less fine detail than real faces

These two compare a face with *other* real faces, so they also tell one camera, clip or codec
from another: on the shared clips' held-out real faces, real A vs real B ROC-AUC was 0.002 (s3_spec)
and 1.000 (s3_hf). The self-referenced scores compare the pasted inner face with the same crop's
untouched outer ring (`regions.py`), so sharpness and codec common to the crop cancel:

    s3_band{l} = log(E_l(inner face) / E_l(outer ring)),  l = 0, 1, 2     (`band_signals`)
                 E_l = mean squared level l of the grey Laplacian pyramid (l = 0: the finest octave)
    s3_tile_hf    = hf(face tiles) - hf(corner tiles)                      (`tile_signals`)
    s3_tile_slope = [hf - mid](face tiles) - [hf - mid](corner tiles)
                 hf / mid = mean log10 power of the upper half / rings 2-3 of the tiles' radial
                 spectra (same-size tiles, so the rings are the same frequencies)

All but s3_band2 are lower for a pasted decoder output that is blurrier than its surroundings
(the coarser octaves separate little: s3_band1 0.65, s3_band2 0.62 with swaps higher). Measured on the shared clips' test split, lossless (`bench/detect.py`
data; single-signal ROC-AUC real vs `lite` swaps, and real-vs-real for the six clip pairs
AvB AvC AvD BvC BvD CvD):

    s3_tile_slope  0.993 (CRF 35: 0.955)   pairs 0.21 0.97 0.98 1.00 1.00 0.26
    s3_tile_hf     0.964 (CRF 35: 0.806)   pairs 0.27 0.00 0.04 0.01 0.24 0.99
    s3_band0       0.867                   pairs 0.92 0.00 0.01 0.00 0.00 1.00
    s3_spec        0.987                   pairs 0.00 0.02 0.22 0.62 0.98 0.97  (not self-referenced)
    s3_hf          0.993                   pairs 1.00 0.98 1.00 0.58 0.99 1.00  (not self-referenced)

None is clip-invariant alone: what surrounds a face differs between scenes (hair, a plain or busy
background; clip C's ring is unlike the others'). They differ in different directions, though,
which the source-balanced fusion uses (`fusion.py`): fused, the pairs are 0.50 0.57 0.41 0.64
0.48 0.24 and the detection AUCs 1.000.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import kornia
import torch
from kornia.geometry.transform import build_laplacian_pyramid

from faceswap.detect.consistency import inner_face_mask
from faceswap.detect.regions import corner_tiles, face_tiles, log_ratio, outer_ring_mask

BANDS = 3  # Laplacian levels compared: 128, 64, 32 px at the default crop


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


def band_signals(faces: torch.Tensor, coverage: str) -> dict[str, torch.Tensor]:
    """`(B, 3, S, S)` float in [0, 1] -> `{"s3_band0": (B,), ...}`: inner face / outer ring energy per octave."""
    grey = kornia.color.rgb_to_grayscale(_as_float(faces))
    inner = inner_face_mask(grey.shape[-1], coverage, grey.device)
    ring = outer_ring_mask(grey.shape[-1], coverage, grey.device)
    out = {}
    for level, band in enumerate(build_laplacian_pyramid(grey, BANDS + 1)[:BANDS]):
        out[f"s3_band{level}"] = log_ratio(band.square(), inner, ring)
    return out


def tile_signals(faces: torch.Tensor, coverage: str) -> dict[str, torch.Tensor]:
    """`(B, 3, S, S)` -> `{"s3_tile_hf", "s3_tile_slope"}` `(B,)`: face tiles' spectrum against the corners'."""
    x = _as_float(faces)

    def profile(tiles: torch.Tensor) -> torch.Tensor:  # (B, 4, 3, t, t) -> (B, t // 2) mean log10 spectrum
        b, n = tiles.shape[:2]
        return radial_spectrum(tiles.flatten(0, 1)).reshape(b, n, -1).mean(1)

    face, corner = profile(face_tiles(x, coverage)), profile(corner_tiles(x, coverage))
    hi = slice(face.shape[1] // 2, None)
    hf = lambda p: p[:, hi].mean(1)  # noqa: E731
    mid = lambda p: p[:, 2:4].mean(1)  # noqa: E731
    return {"s3_tile_hf": hf(face) - hf(corner), "s3_tile_slope": (hf(face) - mid(face)) - (hf(corner) - mid(corner))}


def _as_float(faces: torch.Tensor) -> torch.Tensor:
    return faces.float().div(255) if faces.dtype == torch.uint8 else faces.float()

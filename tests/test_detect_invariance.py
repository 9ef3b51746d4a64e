"""The detector's self-referenced signals and the source-balanced fusion, on synthetic faces:
a sharpness change of the whole crop (camera, codec) leaves the tile spectrum where it was and
moves the other self-referenced signals far less than a blurrier pasted inner face does. (The
fused score also weighs the absolute S2/S3 scores, which a whole-crop blur does move: fusion.py.)"""

from __future__ import annotations

import kornia
import pytest
import torch

from faceswap.detect.fusion import REPORTED_ONLY, Fusion
from faceswap.detect.oneclass import OneClassConfig, oneclass_signals, train_oneclass
from faceswap.detect.regions import check_coverage, corner_tiles, face_tiles, outer_ring_mask
from faceswap.detect.spectral import band_signals, tile_signals
from faceswap.errors import FaceswapError
from faceswap.faces.align import template_face_mask
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch

SIZE = 128


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * int(3 * sigma + 0.5) + 1
    return kornia.filters.gaussian_blur2d(x, (k, k), (sigma, sigma), border_type="reflect")


@pytest.fixture(scope="module")
def crops():
    """Faces of two identities with a camera's grain over the whole frame; the same crops blurred
    as a whole (a softer camera or codec), and with only the inner face blurred and pasted back
    through convert's template mask (a blurrier decoder output)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([face_batch(IDENTITY_A, 8, SIZE, seed=1), face_batch(IDENTITY_B, 8, SIZE, seed=2)]).float() / 255
    x = (x + 0.03 * torch.randn(len(x), 1, SIZE, SIZE, generator=gen)).clamp(0, 1)
    mask = template_face_mask(SIZE, "face")[None]
    return {"orig": x, "whole": _blur(x, 1.0), "pasted": x * (1 - mask) + _blur(x, 1.0) * mask}


def test_regions_keep_the_ring_outside_the_paste_and_refuse_tight_crops():
    paste = template_face_mask(SIZE, "face")[None]
    ring = outer_ring_mask(SIZE, "face")
    assert (ring * (paste > 0)).sum() == 0 and ring.mean() > 0.25
    x = torch.rand(2, 3, SIZE, SIZE)
    corners_inside = (corner_tiles(paste.expand(2, 3, -1, -1), "face") > 0).any()
    assert not corners_inside and (face_tiles(paste.expand(2, 3, -1, -1), "face") == 1).all()
    assert face_tiles(x, "face").shape == corner_tiles(x, "face").shape == (2, 4, 3, 24, 24)
    with pytest.raises(FaceswapError, match="coverage 'tight'"):
        check_coverage(SIZE, "tight")


def test_tile_spectrum_ignores_whole_crop_sharpness_but_sees_a_blurred_paste(crops):
    sig = {k: tile_signals(v, "face") for k, v in crops.items()}
    for name in ("s3_tile_hf", "s3_tile_slope"):
        whole = (sig["whole"][name] - sig["orig"][name]).abs()
        pasted = sig["pasted"][name] - sig["orig"][name]
        assert whole.max() < 0.2, (name, whole)  # log10 power: a whole-crop blur cancels
        assert (pasted < -1.0).all(), (name, pasted)  # > 10x less fine detail than the crop's own corners


def test_self_referenced_signals_drop_for_a_blurred_paste_not_for_a_blurred_crop(crops):
    ae = train_oneclass((crops["orig"] * 255).round().byte(), OneClassConfig(size=64, width=8, code=4, iterations=30, batch_size=8))
    sig = {k: {**band_signals(v, "face"), **oneclass_signals(ae, v, "face")} for k, v in crops.items()}
    for name in ("s3_band0", "s2_rel_err", "s2_rel_res"):
        pasted = sig["pasted"][name] - sig["orig"][name]
        assert (pasted < -0.5).all(), (name, pasted)
        assert (sig["pasted"][name] < sig["whole"][name] - 0.5).all(), name  # a paste, not the camera


def test_fusion_levels_the_real_sources_when_they_are_known():
    """Signal `u` only tells the two real sources apart (and the fakes happen to resemble source 1);
    `v` tells real from fake in both. Balanced, the fusion leaves `u` out and keeps `v`."""
    gen = torch.Generator().manual_seed(0)
    n = 2000
    src = torch.arange(2 * n) >= n
    real = {"u": torch.randn(2 * n, generator=gen) + 3.0 * src, "v": torch.randn(2 * n, generator=gen)}
    fake = {"u": torch.randn(n, generator=gen) + 3.0, "v": torch.randn(n, generator=gen) + 3.0}
    gap = lambda f: (f.logit(real)[src].mean() - f.logit(real)[~src].mean()).abs().item()  # noqa: E731
    plain, balanced = Fusion.fit(real, fake), Fusion.fit(real, fake, sources=src.tolist())
    assert gap(plain) > 1.0 and gap(balanced) < 0.1 * gap(plain), (gap(plain), gap(balanced))
    assert abs(balanced.weight[0]) < 0.1 * abs(balanced.weight[1])
    from faceswap.detect import metrics

    scores = torch.cat([balanced.logit(real), balanced.logit(fake)]).numpy()
    assert metrics.roc_auc(scores, [0] * 2 * n + [1] * n) > 0.95
    with pytest.raises(FaceswapError, match="source labels"):
        Fusion.fit(real, fake, sources=[0, 1])


def test_s1_is_reported_but_not_fused_by_default():
    real = {n: torch.randn(50) for n in (*REPORTED_ONLY, "s3_tile_hf", "s2_rel_err")}
    assert Fusion.fit(real).names == ["s3_tile_hf", "s2_rel_err"]
    assert Fusion.fit(real, names=["s1_err_a", "s3_tile_hf"]).names == ["s1_err_a", "s3_tile_hf"]

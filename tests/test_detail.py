"""Detail transfer: the source's band above the model's resolution, added to the swap."""

from __future__ import annotations

import kornia
import torch

from faceswap.convert.detail import high_band, transfer_detail


def _textured(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = kornia.filters.gaussian_blur2d(torch.rand(2, 3, 64, 64, generator=g), (31, 31), (8.0, 8.0))
    return (smooth * 0.6 + 0.2 + 0.1 * (torch.rand(2, 1, 64, 64, generator=g) - 0.5)).clamp(0, 1)


def test_the_swap_gains_the_originals_fine_grain_where_they_agree_and_only_there():
    original = _textured(0)  # fine grain (+-0.05) over smooth shading
    swap = kornia.filters.gaussian_blur2d(original, (31, 31), (6.0, 6.0))  # what a model renders: the same face, smooth
    sigma = 2.0
    assert high_band(swap, sigma).abs().mean() < 0.1 * high_band(original, sigma).abs().mean()
    out = transfer_detail(swap, original, factor=4, strength=1.0)
    # the grain is within the clip: it arrives nearly whole
    gain = (high_band(out, sigma) * high_band(original, sigma)).sum() / high_band(original, sigma).square().sum()
    assert 0.6 < gain < 1.05, gain
    # colour is untouched: the band is added equally to R, G and B
    d = out - swap
    inner = ((out > 0.01) & (out < 0.99)).all(1)
    assert torch.allclose(d[:, 0][inner], d[:, 1][inner], atol=1e-5)
    # where the swap shows something else at the model's scale (a dark mouth over skin), no band
    other = swap.clone()
    other[..., 20:44, 20:44] = 0.05
    out2 = transfer_detail(other, original, factor=4, strength=1.0)
    assert (out2 - other)[..., 26:38, 26:38].abs().max() < 0.2 * d[..., 26:38, 26:38].abs().max()


def test_feature_edges_are_not_copied_only_grain():
    original = torch.full((1, 3, 64, 64), 0.6)
    original[..., 32:, :] = 0.2  # a strong edge (a lip line): 0.4 of a swing
    swap = kornia.filters.gaussian_blur2d(original, (31, 31), (6.0, 6.0))
    added = transfer_detail(swap, original, factor=4, strength=1.0) - swap
    assert added.abs().max() <= 0.031  # soft-clipped at CLIP, far below the edge's own band
    assert high_band(original, 2.0).abs().max() > 0.1


def test_off_when_disabled_or_nothing_to_fill():
    a, b = _textured(2), _textured(3)
    assert torch.equal(transfer_detail(a, b, factor=4, strength=0), a)
    assert torch.equal(transfer_detail(a, b, factor=1), a)  # pasted at the model's own size: no empty band
    half = transfer_detail(a, b, factor=4, strength=0.5) - a
    full = transfer_detail(a, b, factor=4, strength=1.0) - a
    inner = ((a + full) > 0.01) & ((a + full) < 0.99)
    assert torch.allclose(half[inner], full[inner] / 2, atol=1e-5)

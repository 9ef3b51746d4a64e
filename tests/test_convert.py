"""Convert's building blocks: paste-back geometry, masks, colour transfer, landmark smoothing."""

from __future__ import annotations

import kornia
import numpy as np
import pytest
import torch

from faceswap.convert.blend import mask_support, paste_faces, paste_regions, warp_back
from faceswap.convert.color import hist_match, masked_mean_std, mean_std_transfer, transfer_color
from faceswap.convert.mask import face_masks
from faceswap.convert.smooth import LandmarkSmoother, local_fit, mean_displacement
from faceswap.errors import FaceswapError
from faceswap.faces.align import alignment_matrices, template_points, warp_faces
from faceswap.provenance import payload_bits
from faceswap.synthetic import IDENTITY_A, Pose, render_face


def _rotated_landmarks(centre=(171.3, 118.6), iod=52.0, angle=17.0) -> np.ndarray:
    """Template landmarks placed in a frame with rotation, scale and a sub-pixel offset, `(1, 5, 2)`."""
    t = template_points(4)  # crop of side 4 = face units + (2, 1.5)
    units = t - np.array([2.0, 1.5])
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (units @ rot.T * iod + np.array(centre))[None]


@pytest.mark.parametrize("size", [64, 256])
def test_inverse_warp_puts_the_face_back_within_one_pixel(size):
    # A frame whose pixels hold their own coordinates: crop, warp back, read where each pixel came from.
    h, w = 240, 320
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    frame = torch.stack([xs / w, ys / h, torch.zeros_like(xs)])[None]
    m = alignment_matrices(_rotated_landmarks(), size)
    crop = warp_faces(frame, m, size)
    masks = face_masks(1, size, "face")
    boxes = paste_regions(m, mask_support(masks), (h, w))
    back = warp_back(crop.float(), masks, m, boxes)[0].double()
    x0, y0, x1, y1 = boxes[0]
    inside = back[3, : y1 - y0, : x1 - x0] > 0.99
    assert inside.sum() > 2000
    got_x = back[0, : y1 - y0, : x1 - x0][inside] * w
    got_y = back[1, : y1 - y0, : x1 - x0][inside] * h
    err = torch.hypot(got_x - xs[y0:y1, x0:x1][inside], got_y - ys[y0:y1, x0:x1][inside])
    assert err.max() < 1.0, f"max displacement {err.max():.3f} px"
    assert err.mean() < 0.1


def test_paste_of_the_unchanged_crop_restores_the_frame():
    frame, lm = render_face(IDENTITY_A, Pose(roll=12, scale=48, centre=(150, 110)), size=(240, 320))
    m = alignment_matrices(lm[None], 256)
    t = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    crop = warp_faces(t, m, 256)
    masks = face_masks(1, 256, "face")
    out = [frame.copy()]
    paste_faces(out, [0], crop, masks, m, "alpha")
    diff = np.abs(out[0].astype(int) - frame).max(-1)
    assert np.mean(diff) < 0.4 and np.percentile(diff, 99) <= 12  # only resampling blur at edges/features
    changed = np.argwhere(diff > 0)
    # Pixels outside the face's region are not touched at all.
    assert np.array_equal(out[0][:20], frame[:20]) and len(changed) > 100


def test_poisson_blend_stays_in_place():
    frame, lm = render_face(IDENTITY_A, Pose(scale=48, centre=(150, 110)), size=(240, 320))
    m = alignment_matrices(lm[None], 128)
    crop = warp_faces(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255, m, 128)
    out = [frame.copy()]
    paste_faces(out, [0], crop, face_masks(1, 128, "face"), m, "poisson")
    assert np.abs(out[0].astype(int) - frame).mean() < 0.4  # 0.7 when the clone lands 1.5 px off


def test_mask_erode_blur_and_ranges():
    base = face_masks(1, 64, "face")
    eroded, grown = face_masks(1, 64, "face", erode=5), face_masks(1, 64, "face", erode=-5)
    blurred = face_masks(1, 64, "face", blur=5)
    assert eroded.sum() < base.sum() < grown.sum()
    assert ((blurred > 0.02) & (blurred < 0.98)).sum() > ((base > 0.02) & (base < 0.98)).sum()  # a wider feather
    assert base[..., 0, :].max() == 0 and grown[..., :, -1].max() == 0  # never reaches the crop border
    with pytest.raises(FaceswapError):
        face_masks(1, 64, "face", erode=80)


def _lab_stats(rgb, mask):
    return masked_mean_std(kornia.color.rgb_to_lab(rgb), mask)


def test_mean_std_transfer_moves_the_masked_statistics_to_the_target():
    g = torch.Generator().manual_seed(0)
    size = 64
    mask = face_masks(2, size, "face")
    source = (torch.tensor([0.75, 0.55, 0.45]).view(1, 3, 1, 1) + 0.08 * torch.randn(2, 3, size, size, generator=g)).clamp(0, 1)
    target = (torch.tensor([0.45, 0.35, 0.30]).view(1, 3, 1, 1) + 0.06 * torch.randn(2, 3, size, size, generator=g)).clamp(0, 1)
    target = torch.where(mask > 0, target, torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1))  # outside the mask: must not count
    out = mean_std_transfer(source, target, mask)
    mu_o, sd_o = _lab_stats(out, mask)
    mu_t, sd_t = _lab_stats(target, mask)
    mu_s, _ = _lab_stats(source, mask)
    assert (mu_o - mu_t).abs().max() < 0.5 < (mu_s - mu_t).abs().max()  # L*a*b* units
    assert ((sd_o - sd_t).abs() / sd_t).max() < 0.05
    assert torch.equal(transfer_color(source, target, mask, "none"), source)


def test_mean_std_transfer_never_amplifies_colour_and_caps_lightness_contrast():
    g = torch.Generator().manual_seed(2)
    mask = face_masks(1, 64, "face")
    flat = (torch.tensor([0.7, 0.55, 0.45]).view(1, 3, 1, 1) + 0.01 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    busy = (torch.tensor([0.45, 0.35, 0.30]).view(1, 3, 1, 1) + 0.15 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    out = mean_std_transfer(flat, busy, mask)
    (mu_o, sd_o), (mu_t, _), (_, sd_s) = _lab_stats(out, mask), _lab_stats(busy, mask), _lab_stats(flat, mask)
    assert (mu_o - mu_t).abs().max() < 1.0  # means still matched
    assert sd_o[0, 0] < 1.6 * sd_s[0, 0]  # lightness spread: at most 1.5x (it would be ~10x)
    assert (sd_o[0, 1:] < 1.1 * sd_s[0, 1:]).all()  # colour spread: never amplified


def test_shading_transfer_takes_the_originals_light_and_keeps_the_swaps_detail():
    size = 64
    mask = torch.ones(1, 1, size, size)
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    stripes = 0.05 * torch.sin(x * 60)  # fine detail of the swap
    swap = (0.55 + 0.2 * x + stripes).expand(1, 3, size, size).clamp(0, 1)  # lit from the right
    original = (0.55 + 0.2 * (1 - x)).expand(1, 3, size, size).clamp(0, 1)  # lit from the left
    out = transfer_color(swap, original, mask, "shading")
    lum = lambda t: kornia.color.rgb_to_lab(t)[:, 0]  # noqa: E731
    band = (slice(None), slice(8, -8), slice(8, -8))
    left, right = out[..., :, 8:16], out[..., :, -16:-8]
    assert lum(left).mean() > lum(right).mean() + 5  # the original's light, not the swap's
    # the stripes survive: the swap's fine structure is still there
    detail = lum(out) - kornia.filters.gaussian_blur2d(lum(out)[:, None], (9, 9), (3.0, 3.0))[:, 0]
    ref = lum(swap) - kornia.filters.gaussian_blur2d(lum(swap)[:, None], (9, 9), (3.0, 3.0))[:, 0]
    assert torch.corrcoef(torch.stack([detail[band].flatten(), ref[band].flatten()]))[0, 1] > 0.9


def test_hist_match_matches_masked_quantiles():
    g = torch.Generator().manual_seed(1)
    mask = face_masks(1, 64, "face")
    source = torch.rand(1, 3, 64, 64, generator=g) ** 2
    target = 0.3 + 0.4 * torch.rand(1, 3, 64, 64, generator=g)
    out = hist_match(source, target, mask)
    inside = mask[0, 0] > 0.5
    for c in range(3):
        q = torch.tensor([0.1, 0.5, 0.9])
        assert torch.allclose(out[0, c][inside].quantile(q), target[0, c][inside].quantile(q), atol=0.02)


def _track(n, noise, seed=0):
    """A face moving along a curve, `(n, 5, 2)` truth and noisy observations."""
    t = np.arange(n, dtype=np.float64)
    centre = np.stack([100 + 2.0 * t + 0.05 * t**2, 80 + 10 * np.sin(t / 8)], 1)
    truth = centre[:, None, :] + template_points(4)[None] * 15
    rng = np.random.default_rng(seed)
    return truth, truth + rng.normal(0, noise, truth.shape)


def test_smoother_removes_noise_without_lag_and_streams():
    truth, noisy = _track(60, noise=1.0)
    sm = LandmarkSmoother(lookahead=4)
    out = {}
    for i, lm in enumerate(noisy):
        ready = sm.push(i, [lm])
        # A frame comes out exactly when the lookahead after it is in: no peeking further.
        assert [k for k, _ in ready] == ([i - 4] if i >= 4 else [])
        out.update({k: faces[0] for k, faces in ready})
    out.update({k: faces[0] for k, faces in sm.flush()})
    smoothed = np.stack([out[i] for i in range(60)])
    raw_err = np.linalg.norm(noisy - truth, axis=-1).mean()
    err = np.linalg.norm(smoothed - truth, axis=-1).mean()
    assert err < 0.7 * raw_err
    assert mean_displacement(smoothed) - mean_displacement(truth) < 0.3 * (mean_displacement(noisy) - mean_displacement(truth))
    # Zero phase: a noiseless smooth path comes through unchanged (x is quadratic: exact; y a slow sine).
    clean = LandmarkSmoother(lookahead=4)
    got = [f for i, lm in enumerate(truth) for _, f in clean.push(i, [lm])] + [f for _, f in clean.flush()]
    assert np.abs(np.stack([f[0] for f in got])[4:-4] - truth[4:-4]).max() < 0.01


def test_smoother_keeps_two_faces_apart_and_passes_through_when_off():
    truth_a, noisy_a = _track(20, 0.5, seed=1)
    noisy_b = noisy_a + np.array([150.0, 0.0])
    sm = LandmarkSmoother(lookahead=2)
    frames = [r for i in range(20) for r in sm.push(i, [noisy_b[i], noisy_a[i]] if i % 2 else [noisy_a[i], noisy_b[i]])]
    frames += sm.flush()
    assert [k for k, _ in frames] == list(range(20))
    for i, faces in frames:
        first_is_b = bool(i % 2)
        assert abs(faces[0][0, 0] - noisy_b[i][0, 0] if first_is_b else faces[0][0, 0] - noisy_a[i][0, 0]) < 5
    off = LandmarkSmoother(lookahead=0)
    assert np.array_equal(off.push(0, [noisy_a[0]])[0][1][0], noisy_a[0])


def test_local_fit_degrades_gracefully():
    assert local_fit(np.array([0]), np.array([[3.0]]), 4, 2)[0] == 3.0
    # One-sided window (end of a track): a line, not an extrapolated parabola.
    assert local_fit(np.array([-2, -1, 0]), np.array([[0.0], [1.0], [2.0]]), 4, 2)[0] == pytest.approx(2.0)


def test_learned_mask_is_used_when_the_model_has_one():
    from faceswap.convert.swap import ConvertConfig, FaceSwapper, StageTimer
    from faceswap.model.autoencoder import Preset, SwapModel

    tiny = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
    torch.manual_seed(0)
    model = SwapModel(tiny, learn_mask=True).eval()
    with torch.no_grad():
        model.decoders["b"].out.bias[3] = -30.0  # a learned mask of ~0 everywhere: nothing may be pasted
    frame, lm = render_face(IDENTITY_A, Pose(scale=40, centre=(160, 100)), size=(240, 320))

    def run(mask):
        cfg = ConvertConfig(input=None, output=None, model_dir=None, mask=mask)
        return FaceSwapper(model, cfg, torch.device("cpu"), StageTimer(), payload_bits("0" * 64)).swap([frame], [[lm.astype(np.float64)]])[0]

    assert np.array_equal(run("auto"), frame) and np.array_equal(run("learned"), frame)
    assert np.abs(run("template").astype(int) - frame).mean() > 1

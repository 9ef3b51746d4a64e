"""Identity refiners: the net, its training patches, its place in train and convert."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from faceswap.cli import main
from faceswap.errors import FaceswapError
from faceswap.faces.align import template_eye_mouth_mask, template_face_mask
from faceswap.model.autoencoder import CONFIG_NAME, FORMAT, FORMAT_VERSION, PRESETS, Preset, SwapModel, load_model, read_checkpoint, save_checkpoint
from faceswap.model.refiner import CONTEXT, Refiner, crop_patches, default_factor, patch_side, random_origins, refine_patches
from faceswap.synthetic import IDENTITY_A, face_batch
from faceswap.train import TrainConfig, train
from faceswap.train.augment import AugmentConfig, Augmenter, Draw
from faceswap.train.losses import sharpness_ratio
from faceswap.video import FrameReader

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", TINY)


@pytest.mark.parametrize("factor", [2, 4])
def test_untrained_refiner_is_the_bicubic_upscale(factor):
    x = torch.rand(2, 3, 20, 20)
    r = Refiner(factor)
    y = r(x)
    assert y.shape == (2, 3, 20 * factor, 20 * factor)
    bicubic = F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(y, bicubic, atol=1e-6)
    with pytest.raises(ValueError):
        Refiner(3)


def test_default_factor_follows_the_faces_resolution():
    assert [default_factor(64, s) for s in (256, 200, 128, 100, 64)] == [4, 2, 2, 0, 0]
    assert default_factor(128, 256) == 2 and default_factor(128, 1024) == 4
    with pytest.raises(FaceswapError):
        SwapModel(TINY, refine=3)


def test_patches_stay_inside_and_refine_patches_matches_the_whole_image():
    gen = torch.Generator().manual_seed(0)
    y0, x0 = random_origins(64, 64, gen)
    side = patch_side(64)
    assert int(y0.min()) >= CONTEXT and int(y0.max()) + side + CONTEXT <= 64 and int(x0.min()) >= CONTEXT
    torch.manual_seed(1)
    r = Refiner(2)
    torch.nn.init.normal_(r.out[0].weight, std=0.05)  # a non-trivial refiner
    img = torch.rand(3, 3, 64, 64)
    # Refining a patch with CONTEXT px of surroundings gives what refining the whole image gives
    # there, away from the image border (the low-res receptive field fits in CONTEXT).
    whole = r(img)
    y0, x0 = torch.tensor([20, 12, 30]), torch.tensor([15, 30, 22])
    part = refine_patches(r, img, y0, x0)
    assert part.shape == (3, 3, 2 * side, 2 * side)
    assert torch.allclose(part, crop_patches(whole, 2 * y0, 2 * x0, 2 * side), atol=1e-5)
    # A tiny model still gets patches (padded at its border), no crash.
    y0, x0 = random_origins(4, 32, gen)
    assert refine_patches(r, torch.rand(4, 3, 32, 32), y0, x0).shape == (4, 3, 2 * patch_side(32), 2 * patch_side(32))


def _aug(size, **kw):
    masks = torch.cat([template_face_mask(size, "face"), template_eye_mouth_mask(size, "face")])
    return Augmenter(size, masks, AugmentConfig(**kw))


def test_hires_patches_without_augmentation_are_the_faces_own_pixels():
    hi = face_batch(IDENTITY_A, 4, 128, seed=0)
    plain = _aug(32, rotate=0, zoom=0, shift=0, flip=0, lightness=0, color_ab=0, warp="none")
    gen = torch.Generator().manual_seed(0)
    *_, draw = plain.augment(F.avg_pool2d(hi.float(), 4).round().byte(), gen)
    y0, x0 = torch.tensor([3, 5, 0, 7]), torch.tensor([6, 1, 8, 2])
    got = plain.hires_patches(hi, draw, y0, x0, 16)
    assert torch.allclose(got, crop_patches(hi.float() / 255, 4 * y0, 4 * x0, 64), atol=1e-5)
    flipped = Draw(draw.theta * torch.tensor([[-1.0, 1, 1], [1, 1, 1]]), None)  # mirror x
    got = plain.hires_patches(hi, flipped, y0, x0, 16)
    assert torch.allclose(got, crop_patches(hi.flip(-1).float() / 255, 4 * y0, 4 * x0, 64), atol=1e-5)


def test_hires_patches_follow_the_random_affine_and_colour():
    """Area-reduced to the model's size, a hi-res target patch is the low-res target patch."""
    hi = face_batch(IDENTITY_A, 8, 128, seed=1)
    lo = F.avg_pool2d(hi.float(), 4).round().byte()
    aug = _aug(32, rotate=15, zoom=0.1, shift=0.08)
    gen = torch.Generator().manual_seed(2)
    _, target, _, draw = aug.augment(lo, gen)
    y0, x0 = random_origins(8, 32, gen)
    side = patch_side(32)
    down = F.avg_pool2d(aug.hires_patches(hi, draw, y0, x0, side), 4)
    err = (down - crop_patches(target, y0, x0, side)).abs().mean()
    shifted = (down - crop_patches(target, y0 + 1, x0, side)).abs().mean()
    assert err < 0.02 and err < shifted / 3, (err, shifted)


def test_a_refiner_learns_detail_the_bicubic_upscale_lacks():
    from skimage import data

    torch.manual_seed(0)
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255  # a real photo: edges and texture
    ys, xs = torch.randint(0, 512 - 64, (16,)).tolist(), torch.randint(0, 512 - 64, (16,)).tolist()
    hi = torch.stack([img[:, y : y + 64, x : x + 64] for y, x in zip(ys, xs)])
    lo = F.avg_pool2d(hi, 2)
    r = Refiner(2)
    opt = torch.optim.Adam(r.parameters(), lr=2e-3)
    for _ in range(150):
        loss = (r(lo) - hi).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        bicubic = (F.interpolate(lo, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1) - hi).abs().mean()
        refined = r(lo)
    assert (refined - hi).abs().mean() < 0.95 * bicubic  # measured 0.90 after these 150 steps
    m = torch.ones(1, 1, 64, 64)
    up = F.interpolate(lo, scale_factor=2, mode="bicubic", align_corners=False)
    assert sharpness_ratio(refined, hi, m).median() > sharpness_ratio(up, hi, m).median()


# --- train and convert --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_face_dirs(tmp_path_factory):
    """Faces at 64 px for the 32 px tiny preset: auto refine = 2."""
    from faceswap.faces.store import write_face_png
    from faceswap.synthetic import IDENTITY_B

    root = tmp_path_factory.mktemp("bigfaces")
    dirs = []
    for name, ident, seed in (("a", IDENTITY_A, 1), ("b", IDENTITY_B, 2)):
        d = root / name
        d.mkdir()
        for i, img in enumerate(face_batch(ident, 20, 64, seed=seed).permute(0, 2, 3, 1).numpy()):
            write_face_png(d / f"{name}_{i:03d}.png", img, {"coverage": "face", "size": 64})
        dirs.append(d)
    return dirs


def _cfg(dirs, model_dir, **kw):
    opts = dict(preset="tiny", batch_size=8, save_every=1000, preview_every=1000, log_every=1000, quiet=True, seed=3, threads=1)
    opts.update(kw)
    return TrainConfig(dirs[0], dirs[1], model_dir, **opts)


def test_training_with_refiners_resumes_exactly_and_records_them(big_face_dirs, tmp_path):
    whole = train(_cfg(big_face_dirs, tmp_path / "whole", iterations=10, save_every=4, log_every=5, preview_every=10))
    train(_cfg(big_face_dirs, tmp_path / "part", iterations=6, save_every=4, log_every=5, preview_every=10))
    train(_cfg(big_face_dirs, tmp_path / "part", iterations=10, save_every=4, log_every=5, preview_every=10))
    assert whole.iteration == 10
    cfg = json.loads((tmp_path / "whole" / CONFIG_NAME).read_text())
    assert cfg["refine"] == 2
    a, b = read_checkpoint(tmp_path / "whole"), read_checkpoint(tmp_path / "part")
    assert any(k.startswith("refiners.b.") for k in a.weights)
    for k in a.weights:  # bit for bit, refiners included
        assert torch.equal(a.weights[k], b.weights[k]), k
    # The refiners were trained (no longer the zero-initialised residual).
    assert a.weights["refiners.b.out.0.weight"].abs().max() > 0
    log = (tmp_path / "whole" / "log.csv").read_text().splitlines()
    assert "val_ssim_hr_b" in log[0] and len(log) == 3 and log[1].split(",")[-1] != ""
    assert (tmp_path / "whole" / "preview_hr.png").is_file()
    model = load_model(tmp_path / "whole")
    assert model.out_size == 64
    assert model.swap(torch.rand(2, 3, 32, 32), "a2b", refine=True)[0].shape == (2, 3, 64, 64)
    assert model.swap(torch.rand(2, 3, 32, 32), "a2b")[0].shape == (2, 3, 32, 32)
    with pytest.raises(FaceswapError, match="refine factor 2"):
        train(_cfg(big_face_dirs, tmp_path / "whole", iterations=12, refine=0))
    with pytest.raises(FaceswapError, match="--refine must be"):
        train(_cfg(big_face_dirs, tmp_path / "new", iterations=2, refine=3))


def test_refine_0_trains_no_refiner(big_face_dirs, tmp_path):
    train(_cfg(big_face_dirs, tmp_path / "m", iterations=2, refine=0))
    assert json.loads((tmp_path / "m" / CONFIG_NAME).read_text())["refine"] == 0
    assert not any(k.startswith("refiners.") for k in read_checkpoint(tmp_path / "m").weights)


def test_convert_pastes_the_refined_faces(photo_clip, tmp_path):
    torch.manual_seed(0)
    d = tmp_path / "model"
    d.mkdir()
    model = SwapModel(TINY, refine=4).eval()
    for r in model.refiners.values():
        torch.nn.init.normal_(r.out[0].weight, std=0.2)  # detail the bicubic upscale does not have
    (d / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **model.describe()}))
    save_checkpoint(d, model, iteration=1)
    outs = {}
    for flag in ("--refine", "--no-refine"):
        out = tmp_path / f"out{flag}.mp4"
        result = CliRunner().invoke(main, ["convert", str(photo_clip), "-m", str(d), "-o", str(out), "--crf", "0", "--end", "4", "--quiet", flag])
        assert result.exit_code == 0, result.stderr
        outs[flag] = np.stack([f for _, f in FrameReader(out)]).astype(int)
    src = np.stack([f for i, f in FrameReader(photo_clip) if i < 4]).astype(int)
    changed = np.abs(outs["--refine"] - src).max(-1) > 0
    assert changed.mean() > 0.02  # a face was pasted
    # The refined paste has the refiner's fine detail: far more high-frequency energy in the face.
    lap = lambda v: np.abs(v[:, 2:, 1:-1] + v[:, :-2, 1:-1] + v[:, 1:-1, 2:] + v[:, 1:-1, :-2] - 4 * v[:, 1:-1, 1:-1]).mean(-1)  # noqa: E731
    inner = changed[:, 1:-1, 1:-1]
    assert lap(outs["--refine"])[inner].mean() > 1.5 * lap(outs["--no-refine"])[inner].mean()

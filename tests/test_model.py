"""The autoencoder presets and the model dir format (load_model, model_id)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from torch import nn

from faceswap.errors import FaceswapError
from faceswap.model.autoencoder import (
    CONFIG_NAME, FORMAT, FORMAT_VERSION, PRESETS, WEIGHTS_NAME, Preset, SwapModel, build_model, count_parameters,
    forward_flops, load_model, model_id, save_checkpoint,
)

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_shapes(name):
    # Meta tensors: real shapes and FLOP counts without spending CI time on 100M-parameter inits.
    with torch.device("meta"):
        model = build_model(name, learn_mask=True)
        s = model.size
        x = torch.empty(2, 3, s, s)
        assert model.encoder(x).shape == (2, PRESETS[name].latent // 2, 8, 8)
        rec_a, rec_b = model(x, x[:1])
        img, mask = model.swap(x, "a2b")
    assert rec_a.shape == (2, 4, s, s) and rec_b.shape == (1, 4, s, s)
    assert img.shape == (2, 3, s, s) and mask.shape == (2, 1, s, s)
    assert forward_flops(model) > 0


def test_swap_is_encode_then_decode_with_the_other_identity():
    torch.manual_seed(0)
    model = SwapModel(TINY, learn_mask=True).eval()
    x = torch.rand(2, 3, 32, 32)
    img, mask = model.swap(x, "a2b")
    assert 0 <= img.min() and img.max() <= 1 and 0 <= mask.min() and mask.max() <= 1
    assert torch.equal(img, model.decoders["b"](model.encoder(x))[:, :3])
    assert torch.equal(img, model.reconstruct(x, "b")[0])
    assert not torch.allclose(img, model.swap(x, "b2a")[0])
    with pytest.raises(FaceswapError):
        model.swap(x, "a2c")


def test_original_matches_the_classic_layout():
    """5x5 stride-2 convs 128..1024, dense 1024, dense 4x4x1024, upscale to 8x8x512, decoder 256/128/64 + 5x5."""
    with torch.device("meta"):
        m = build_model("original")
        lite = build_model("lite")
    convs = [c for c in m.encoder.convs.modules() if isinstance(c, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (128, (5, 5), (2, 2)), (256, (5, 5), (2, 2)), (512, (5, 5), (2, 2)), (1024, (5, 5), (2, 2))]
    assert (m.encoder.dense1.out_features, m.encoder.dense2.out_features) == (1024, 4 * 4 * 1024)
    assert isinstance(m.encoder.up[2], nn.PixelShuffle) and m.encoder.up[0].out_channels == 4 * 512
    dec = m.decoders["a"]
    assert [u[0].out_channels // 4 for u in dec.body] == [256, 128, 64]
    assert dec.out.kernel_size == (5, 5) and dec.out.out_channels == 3
    assert not any(isinstance(mod, nn.ConvTranspose2d) for mod in m.modules())
    # Hand count of multiply-adds: 4 encoder convs + 2 dense + 4 upscale convs + output conv.
    macs = (32 * 32 * 128 * 3 * 25 + 16 * 16 * 256 * 128 * 25 + 8 * 8 * 512 * 256 * 25 + 4 * 4 * 1024 * 512 * 25
            + 2 * 16384 * 1024 + 4 * 4 * 2048 * 1024 * 9 + 8 * 8 * 1024 * 512 * 9 + 16 * 16 * 512 * 256 * 9
            + 32 * 32 * 256 * 128 * 9 + 64 * 64 * 3 * 64 * 25)
    assert forward_flops(m) == pytest.approx(2 * macs, rel=0.01)
    assert count_parameters(m) == 69_662_976 + 2 * 6_199_747  # hand count: encoder + 2 decoders
    assert count_parameters(m) > count_parameters(lite)


def _tiny_dir(tmp_path, seed=0):
    torch.manual_seed(seed)
    model = SwapModel(TINY, "face", learn_mask=False)
    d = tmp_path / f"m{seed}"
    d.mkdir()
    cfg = {"format": FORMAT, "format_version": FORMAT_VERSION, **model.describe()}
    (d / CONFIG_NAME).write_text(json.dumps(cfg))
    save_checkpoint(d, model, 7, {"optim/0/exp_avg": torch.ones(3)}, {"note": 1})
    return d, model


def test_load_model_round_trip_and_model_id(tmp_path):
    d, model = _tiny_dir(tmp_path)
    loaded = load_model(d, "cpu")
    assert (loaded.size, loaded.coverage, loaded.learn_mask) == (32, "face", False)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.swap(x, "a2b")[0], model.swap(x, "a2b")[0])
    assert loaded.swap(x, "a2b")[1] is None
    # Inputs of another size are resized to the model's.
    assert loaded.reconstruct(torch.rand(1, 3, 48, 48), "a")[0].shape == (1, 3, 32, 32)
    mid = model_id(d)
    assert len(mid) == 64 and mid == model_id(d)
    d2, _ = _tiny_dir(tmp_path, seed=1)
    assert model_id(d2) != mid  # other weights, other id (training state is not part of it)


def test_load_model_refuses_bad_dirs(tmp_path):
    with pytest.raises(FaceswapError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(FaceswapError, match="not a faceswap model dir"):
        load_model(tmp_path)
    d, _ = _tiny_dir(tmp_path)
    blob = (d / WEIGHTS_NAME).read_bytes()

    (d / WEIGHTS_NAME).write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(FaceswapError, match="corrupt or truncated"):
        load_model(d)
    flipped = bytearray(blob)
    flipped[-100] ^= 0xFF  # a flipped bit inside the tensor data: only the hash notices
    (d / WEIGHTS_NAME).write_bytes(bytes(flipped))
    with pytest.raises(FaceswapError, match="SHA-256"):
        load_model(d)
    (d / WEIGHTS_NAME).write_bytes(pickle.dumps({"encoder.w": torch.zeros(1)}))  # never unpickled
    with pytest.raises(FaceswapError, match="corrupt"):
        load_model(d)
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(FaceswapError, match="no trained weights"):
        load_model(d)

    (d / WEIGHTS_NAME).write_bytes(blob)
    cfg = json.loads((d / CONFIG_NAME).read_text())
    (d / CONFIG_NAME).write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(FaceswapError, match="format"):
        load_model(d)
    arch = {**cfg["architecture"], "dense": 64}  # weights of another shape than the config says
    (d / CONFIG_NAME).write_text(json.dumps({**cfg, "architecture": arch}))
    with pytest.raises(FaceswapError, match="do not fit"):
        load_model(d)
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(FaceswapError, match="not JSON"):
        load_model(d)

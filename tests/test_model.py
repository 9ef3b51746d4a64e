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


def _data_spans(blob: bytes) -> tuple[int, dict[str, tuple[int, int]]]:
    """Header length and each tensor's absolute byte span in a safetensors file."""
    import struct

    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    return n, {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"}


def test_a_flipped_bit_anywhere_in_the_tensor_data_is_refused(tmp_path):
    """Weights are checked by every load; the training state (2/3 of a real checkpoint: Adam moments,
    RNG) by the loads that use it (resume). It used to be unhashed, so most flips loaded."""
    from faceswap.model.autoencoder import read_checkpoint

    d, model = _tiny_dir(tmp_path)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))[0].mean().backward()
    opt.step()
    from faceswap.train.state import pack_optimizer

    tensors, opt_meta = pack_optimizer(opt)
    save_checkpoint(d, model, 7, {**tensors, "rng/0": torch.Generator().get_state()}, {"optimizer": opt_meta})
    blob = (d / WEIGHTS_NAME).read_bytes()
    _, spans = _data_spans(blob)
    train_keys = [k for k in spans if k.startswith("train/")]
    assert sum(b - a for k, (a, b) in spans.items() if k in train_keys) > 0.6 * (len(blob) - min(a for a, _ in spans.values()))
    start, end = min(a for a, _ in spans.values()), len(blob)
    hit = set()
    for off in [start, end - 1, *range(start, end, (end - start) // 24)]:  # the data section's ends and 24 offsets between
        key = next(k for k, (a, b) in spans.items() if a <= off < b)
        damaged = bytearray(blob)
        damaged[off] ^= 0x04
        (d / WEIGHTS_NAME).write_bytes(bytes(damaged))
        if key in train_keys:
            hit.add("train")
            with pytest.raises(FaceswapError, match="training state .* SHA-256"):
                read_checkpoint(d)
            load_model(d)  # inference needs only the weights, and they are intact (and verified)
        else:
            hit.add("weights")
            for load in (load_model, model_id, lambda x: read_checkpoint(x, with_train_state=False), read_checkpoint):
                with pytest.raises(FaceswapError, match="weights do not match"):
                    load(d)
    assert hit == {"train", "weights"}
    # Metadata is covered too: an iteration rewritten in place (same header length) is refused on resume.
    (d / WEIGHTS_NAME).write_bytes(blob.replace(b'"iteration":"7"', b'"iteration":"9"'))
    assert (d / WEIGHTS_NAME).read_bytes() != blob
    with pytest.raises(FaceswapError, match="training state"):
        read_checkpoint(d)
    (d / WEIGHTS_NAME).write_bytes(blob)
    ck = read_checkpoint(d)
    assert ck.train_verified and ck.iteration == 7 and "optim/0/exp_avg" in ck.train_tensors


def test_checkpoint_tensors_are_copied_out_of_the_file(tmp_path):
    """safetensors hands out tensors backed by a memory map of the file: the hash would vouch for
    bytes a later in-place write can change, and a resumed run pinned the replaced file's disk space."""
    from faceswap.model.autoencoder import read_checkpoint

    d, model = _tiny_dir(tmp_path)
    ck = read_checkpoint(d)
    before = {k: v.clone() for k, v in {**ck.weights, **ck.train_tensors}.items()}
    blob = (d / WEIGHTS_NAME).read_bytes()
    _, spans = _data_spans(blob)
    with open(d / WEIGHTS_NAME, "r+b") as f:  # in place, not a rename
        for a, b in spans.values():
            f.seek(a)
            f.write(bytes(b - a))
    for k, v in {**ck.weights, **ck.train_tensors}.items():
        assert torch.equal(v, before[k]), k


def _write_raw_checkpoint(d, weights, train, iteration=1):
    """A checkpoint with valid hashes around whatever tensors it is given (what a diverged run saved)."""
    from safetensors.torch import save

    from faceswap.model.autoencoder import train_sha256, weights_sha256

    tensors = {**weights, **{"train/" + k: v for k, v in train.items()}}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "preset": "tiny", "iteration": str(iteration),
            "weights_sha256": weights_sha256(weights), "train_state": "{}"}
    meta["train_sha256"] = train_sha256(meta, {k: v for k, v in tensors.items() if k.startswith("train/")})
    (d / WEIGHTS_NAME).write_bytes(save(tensors, metadata=meta))


def test_non_finite_weights_are_neither_saved_nor_loaded(tmp_path):
    from faceswap.model.autoencoder import read_checkpoint

    d, model = _tiny_dir(tmp_path)
    good = (d / WEIGHTS_NAME).read_bytes()
    with torch.no_grad():
        model.decoders["b"].out.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(FaceswapError, match="NaN/inf"):
        save_checkpoint(d, model, 8)
    with torch.no_grad():
        model.decoders["b"].out.weight[0, 0, 0, 0] = 0.0
    with pytest.raises(FaceswapError, match="NaN/inf"):
        save_checkpoint(d, model, 8, {"optim/0/exp_avg_sq": torch.tensor([1.0, float("inf")])})
    assert (d / WEIGHTS_NAME).read_bytes() == good and not list(d.glob(".*.tmp"))

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights["decoders.a.out.bias"][0] = float("nan")  # convert would paste black boxes
    _write_raw_checkpoint(d, weights, {"optim/0/exp_avg": torch.ones(3)})
    for load in (load_model, model_id, read_checkpoint):
        with pytest.raises(FaceswapError, match=r"NaN/inf values \(decoders.a.out.bias\)"):
            load(d)
    _write_raw_checkpoint(d, model.state_dict(), {"optim/0/exp_avg": torch.tensor([1.0, float("nan")])})
    with pytest.raises(FaceswapError, match=r"NaN/inf values \(train/optim/0/exp_avg\)"):
        read_checkpoint(d)  # a resume refuses it
    assert load_model(d).size == 32  # the weights are fine


def test_checkpoints_without_a_training_state_hash_still_load(tmp_path):
    """Checkpoints written before `train_sha256`: weights verified as before, training state flagged unverified."""
    from safetensors.torch import save

    from faceswap.model.autoencoder import read_checkpoint, weights_sha256

    d, model = _tiny_dir(tmp_path)
    weights = dict(model.state_dict())
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "preset": "tiny", "iteration": "3",
            "weights_sha256": weights_sha256(weights), "train_state": "{}"}
    (d / WEIGHTS_NAME).write_bytes(save({**weights, "train/optim/0/exp_avg": torch.ones(2)}, metadata=meta))
    ck = read_checkpoint(d)
    assert not ck.train_verified and ck.iteration == 3 and torch.equal(ck.train_tensors["optim/0/exp_avg"], torch.ones(2))
    assert model_id(d) == weights_sha256(weights)

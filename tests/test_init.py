"""`train --init`: a new model from an earlier one's encoder and the decoders of matching faces."""

from __future__ import annotations

import json

import pytest
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.store import write_face_png
from faceswap.model.autoencoder import PRESETS, Preset, read_checkpoint
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch, random_identity
from faceswap.train import TrainConfig, train
from faceswap.train.init import faces_fingerprint

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
TINY2 = Preset("tiny2", 32, enc=(8, 16, 16), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", TINY)
    monkeypatch.setitem(PRESETS, "tiny2", TINY2)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("people")
    out = {}
    for name, ident, seed in (("a", IDENTITY_A, 1), ("b", IDENTITY_B, 2), ("c", random_identity(7), 3)):
        d = root / name
        d.mkdir()
        for i, img in enumerate(face_batch(ident, 16, 48, seed=seed).permute(0, 2, 3, 1).numpy()):
            write_face_png(d / f"{name}_{i:03d}.png", img, {"coverage": "face", "size": 48})
        out[name] = d
    return out


def _cfg(a, b, model_dir, **kw):
    opts = dict(preset="tiny", batch_size=8, save_every=1000, preview_every=1000, log_every=1000, quiet=True, seed=3, threads=1)
    opts.update(kw)
    return TrainConfig(a, b, model_dir, **opts)


def _prefixed(weights, prefix):
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def test_fingerprint_follows_the_faces_not_the_folder(dirs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dirs["a"], copy)
    assert faces_fingerprint(copy) == faces_fingerprint(dirs["a"]) != faces_fingerprint(dirs["b"])
    (copy / "a_000.png").unlink()
    assert faces_fingerprint(copy) != faces_fingerprint(dirs["a"])


def test_init_takes_the_encoder_and_the_decoders_of_matching_faces(dirs, tmp_path):
    train(_cfg(dirs["a"], dirs["b"], tmp_path / "ab", iterations=6))
    old = read_checkpoint(tmp_path / "ab").weights
    # B -> C from A -> B: encoder, and the earlier B decoder as this model's A; C's decoder is new.
    train(_cfg(dirs["b"], dirs["c"], tmp_path / "bc", iterations=0, init=tmp_path / "ab", seed=5))
    new = read_checkpoint(tmp_path / "bc").weights
    for k, v in _prefixed(old, "encoder.").items():
        assert torch.equal(new["encoder." + k], v), k
    for k, v in _prefixed(old, "decoders.b.").items():
        assert torch.equal(new["decoders.a." + k], v), k
    fresh = _prefixed(new, "decoders.b.")
    assert any(not torch.equal(fresh[k], v) for k, v in _prefixed(old, "decoders.a.").items())
    cfg = json.loads((tmp_path / "bc" / "config.json").read_text())
    assert "decoder A (its B: same faces)" in cfg["train"]["init_from"] and "decoder B new" in cfg["train"]["init_from"]
    # and it trains on from there
    assert train(_cfg(dirs["b"], dirs["c"], tmp_path / "bc", iterations=4)).iteration == 4


def test_bad_init_is_a_one_line_error_and_writes_nothing(dirs, tmp_path):
    train(_cfg(dirs["a"], dirs["b"], tmp_path / "ab", iterations=2))
    with pytest.raises(FaceswapError, match="does not exist"):
        train(_cfg(dirs["a"], dirs["b"], tmp_path / "x", iterations=1, init=tmp_path / "missing"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(FaceswapError, match="another architecture"):
        train(_cfg(dirs["a"], dirs["b"], tmp_path / "y", iterations=1, init=tmp_path / "ab", preset="tiny2"))
    assert not (tmp_path / "y").exists()
    with pytest.raises(FaceswapError, match="already holds one"):
        train(_cfg(dirs["a"], dirs["b"], tmp_path / "ab", iterations=4, init=tmp_path / "ab"))
    assert read_checkpoint(tmp_path / "ab").iteration == 2

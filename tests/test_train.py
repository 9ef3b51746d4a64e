"""Training: data loading, augmentation, the loop, resume, checkpoints, bad input, the CLI.

The loop tests use a tiny 32 px preset (registered for the test only) so they run in seconds; the
real presets' shapes are tested in test_model.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from faceswap.cli import main
from faceswap.errors import FaceswapError
from faceswap.faces.align import template_eye_mouth_mask, template_face_mask
from faceswap.faces.store import write_face_png
from faceswap.model.autoencoder import PRESETS, Preset, load_model, model_id, read_checkpoint
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch
from faceswap.train import TrainConfig, train
from faceswap.train.augment import AugmentConfig, Augmenter
from faceswap.train.data import load_faces

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
TINY_SRC = 'Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)'
N_FACES = 20


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    monkeypatch.setitem(PRESETS, "tiny", TINY)


@pytest.fixture(scope="module")
def face_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """A: aligned-face PNGs with metadata; B: plain JPEGs. 48 px, so loading resizes them to 32."""
    root = tmp_path_factory.mktemp("faces")
    a, b = root / "a", root / "b"
    a.mkdir(), b.mkdir()
    for i, img in enumerate(face_batch(IDENTITY_A, N_FACES, 48, seed=1).permute(0, 2, 3, 1).numpy()):
        write_face_png(a / f"a_{i:03d}.png", img, {"coverage": "face", "size": 48})
    for i, img in enumerate(face_batch(IDENTITY_B, N_FACES, 48, seed=2).permute(0, 2, 3, 1).numpy()):
        cv2.imwrite(str(b / f"b_{i:03d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    (a / "alignments.json").write_text("{}")  # extract's file: not a face, ignored
    return a, b


def _cfg(face_dirs, model_dir, **kw) -> TrainConfig:
    # One thread: a tiny model gains nothing from two, and a shared CI machine punishes oversubscription.
    opts = dict(preset="tiny", batch_size=8, save_every=1000, preview_every=1000, log_every=1000, quiet=True, seed=3, threads=1)
    opts.update(kw)
    return TrainConfig(face_dirs[0], face_dirs[1], model_dir, **opts)


def _state(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


# --- data and augmentation --------------------------------------------------------------------------


def test_load_faces_holds_out_the_last_tenth(face_dirs):
    fs = load_faces(face_dirs[0], 32, val_fraction=0.1)
    assert fs.train.shape == (18, 3, 32, 32) and fs.held_out.shape == (2, 3, 32, 32) and fs.train.dtype == torch.uint8
    assert fs.coverage == "face" and fs.notes == []
    # Held out = the last files by name, never among the training faces.
    last = cv2.cvtColor(cv2.imread(str(sorted(face_dirs[0].glob("*.png"))[-1])), cv2.COLOR_BGR2RGB)
    last = torch.from_numpy(cv2.resize(last, (32, 32), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)
    assert torch.equal(fs.held_out[-1], last)
    assert not any(torch.equal(t, last) for t in fs.train)
    small = load_faces(face_dirs[0], 32, max_bytes=10 * 3 * 32 * 32)  # memory budget: 10 faces
    assert len(small.train) + len(small.held_out) == 10 and "memory budget" in small.notes[0]


def test_load_faces_bad_folders(tmp_path, face_dirs):
    with pytest.raises(FaceswapError, match="does not exist"):
        load_faces(tmp_path / "missing", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FaceswapError, match="holds no face images"):
        load_faces(tmp_path / "empty", 32)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    img = face_batch(IDENTITY_A, 1, 48)[0].permute(1, 2, 0).numpy()
    cv2.imwrite(str(mixed / "0.png"), img)
    cv2.imwrite(str(mixed / "1.png"), cv2.resize(img, (40, 40)))
    fs = load_faces(mixed, 32)
    assert fs.train.shape[1:] == (3, 32, 32) and "mixed sizes" in fs.notes[0]
    write_face_png(mixed / "2.png", img, {"coverage": "head"})
    with pytest.raises(FaceswapError, match="mix coverages"):
        load_faces(mixed, 32)
    cv2.imwrite(str(mixed / "3.png"), img[:, :40])
    with pytest.raises(FaceswapError, match="not a square"):
        load_faces(mixed, 32)


def _masks(size=32):
    return torch.cat([template_face_mask(size), template_eye_mouth_mask(size)])


def test_augmentation_keeps_input_target_and_masks_aligned():
    # The "face" is the template mask itself: wherever the affine puts the target, the mask channel
    # that rides along must match it, and the unwarped input must equal the target.
    masks = _masks()
    faces = (masks[:1] * 255).round().byte().expand(6, 3, -1, -1).contiguous()
    no_colour = dict(lightness=0.0, color_ab=0.0)
    aug = Augmenter(32, masks, AugmentConfig(warp="none", rotate=20, shift=0.1, zoom=0.1, **no_colour))
    gen = torch.Generator().manual_seed(0)
    inp, tgt, m = aug(faces, gen)
    assert inp.shape == tgt.shape == (6, 3, 32, 32) and m.shape == (6, 2, 32, 32)
    assert torch.equal(inp, tgt)
    assert (tgt[:, 0] - m[:, 0]).abs().max() < 1 / 255 + 1e-4
    assert (tgt - faces.float() / 255).abs().mean() > 0.02  # the affine did move things

    for warp in ("grid", "tps"):
        aug = Augmenter(32, masks, AugmentConfig(warp=warp, **no_colour))
        inp, tgt, m = aug(faces, torch.Generator().manual_seed(1))
        assert (tgt[:, 0] - m[:, 0]).abs().max() < 1 / 255 + 1e-4
        diff = (inp - tgt).abs().mean().item()
        assert 0.001 < diff < 0.05  # warped, but only a little
        ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
        for a, b in zip(inp[:, 0], tgt[:, 0]):  # centroids within a pixel or two
            ca = torch.stack([(a * xs).sum() / a.sum(), (a * ys).sum() / a.sum()])
            cb = torch.stack([(b * xs).sum() / b.sum(), (b * ys).sum() / b.sum()])
            assert (ca - cb).norm() < 2.0


def test_augmentation_is_replayed_from_the_generator_state():
    faces = face_batch(IDENTITY_A, 4, 32)
    aug = Augmenter(32, _masks())
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    first = aug(faces, gen)
    gen.set_state(state)
    again = aug(faces, gen)
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert not torch.equal(first[0], aug(faces, gen)[0])
    # colour jitter changes colours, identically in input and target
    plain = Augmenter(32, _masks(), AugmentConfig(warp="none", rotate=0, zoom=0, shift=0, flip=0))
    inp, tgt, _ = plain(faces, torch.Generator().manual_seed(0))
    assert torch.equal(inp, tgt) and (tgt - faces.float() / 255).abs().mean() > 0.005


# --- the loop -------------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_the_model_dir(face_dirs, tmp_path):
    d = tmp_path / "m"
    first = train(_cfg(face_dirs, d, iterations=1, log_every=1))
    res = train(_cfg(face_dirs, d, iterations=80, log_every=40, preview_every=40, save_every=40))
    assert (first.iteration, res.iteration, res.stopped) == (1, 80, "iterations")
    for ident in "ab":
        assert res.val_loss[ident] < 0.75 * first.val_loss[ident]
        assert res.val_ssim[ident] > first.val_ssim[ident]
    rows = (d / "log.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [r.split(",")[0] for r in rows[1:]] == ["1", "40", "80"]
    for name in ("loss.png", "preview.png", "previews/0000040.png", "previews/0000080.png"):
        assert (d / name).is_file(), name
    preview = cv2.imread(str(d / "preview.png"))
    assert preview.shape[0] == 6 * 32  # rows A, A>A, A>B, B, B>B, B>A
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["preset"], cfg["size"], cfg["coverage"], cfg["learn_mask"]) == ("tiny", 32, "face", False)
    assert cfg["train"]["faces"]["a"]["held_out"] == 2 and len(cfg["runs"]) == 2
    model = load_model(d)
    assert model.swap(torch.rand(2, 3, 32, 32), "b2a")[0].shape == (2, 3, 32, 32)
    assert read_checkpoint(d).iteration == 80


def test_resume_equals_uninterrupted_training(face_dirs, tmp_path):
    whole = train(_cfg(face_dirs, tmp_path / "whole", iterations=12, save_every=5, learn_mask=True))
    part = train(_cfg(face_dirs, tmp_path / "part", iterations=7, save_every=5, learn_mask=True))
    assert part.iteration == 7
    rest = train(_cfg(face_dirs, tmp_path / "part", iterations=12, save_every=5, learn_mask=True))
    assert rest.iteration == 12 and whole.iteration == 12
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "part")
    assert a.keys() == b.keys() and any(k.startswith("train/optim/") for k in a)
    for k in a:  # weights, Adam moments and RNG state, bit for bit
        assert torch.equal(a[k], b[k]), k
    assert train(_cfg(face_dirs, tmp_path / "part", iterations=12, learn_mask=True)).stopped == "iterations"  # nothing to do


def test_ctrl_c_saves_and_resume_matches(face_dirs, tmp_path, monkeypatch):
    whole = train(_cfg(face_dirs, tmp_path / "whole", iterations=30))
    calls = {"n": 0}
    augment = Augmenter.augment  # what the loop calls per identity and step

    def augment_then_ctrl_c(self, faces, gen):  # the user presses Ctrl-C during the 11th iteration
        calls["n"] += 1
        if calls["n"] == 21:
            signal.raise_signal(signal.SIGINT)
        return augment(self, faces, gen)

    monkeypatch.setattr(Augmenter, "augment", augment_then_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    first = train(_cfg(face_dirs, tmp_path / "cut", iterations=10**6))
    monkeypatch.setattr(Augmenter, "augment", augment)
    assert (first.stopped, first.iteration) == ("interrupted", 11)
    assert read_checkpoint(tmp_path / "cut").iteration == 11
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    train(_cfg(face_dirs, tmp_path / "cut", iterations=30))
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "cut")
    assert whole.iteration == 30 and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_leaves_a_loadable_model(face_dirs, tmp_path):
    d = tmp_path / "m"
    script = textwrap.dedent(f"""
        from faceswap.model.autoencoder import PRESETS, Preset
        PRESETS["tiny"] = {TINY_SRC}
        from faceswap.train import TrainConfig, train
        train(TrainConfig({str(face_dirs[0])!r}, {str(face_dirs[1])!r}, {str(d)!r}, preset="tiny", batch_size=8,
                          save_every=1, preview_every=3, log_every=1, quiet=True, iterations=10**6, threads=1))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180  # generous: CI machines are shared
        while time.time() < deadline:  # kill once it has saved a few times (it saves every step)
            try:
                if read_checkpoint(d, with_train_state=False).iteration >= 5:
                    break
            except FaceswapError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail(f"trainer made no progress: {proc.stderr.read1().decode()[-500:] if proc.poll() is not None else ''}")
    finally:
        proc.kill()
        proc.wait()
    saved = read_checkpoint(d).iteration
    assert load_model(d).size == 32 and len(model_id(d)) == 64
    res = train(_cfg(face_dirs, d, iterations=saved + 2))  # resumes over whatever temp files the kill left
    assert res.iteration == saved + 2
    assert not list(d.glob(".*.tmp"))


def test_corrupt_checkpoint_is_refused_and_left_alone(face_dirs, tmp_path):
    d = tmp_path / "m"
    train(_cfg(face_dirs, d, iterations=2))
    path = d / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    with pytest.raises(FaceswapError, match="corrupt or truncated"):
        train(_cfg(face_dirs, d, iterations=4))
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_bad_model_dirs_and_small_sets(face_dirs, tmp_path):
    d = tmp_path / "m"
    train(_cfg(face_dirs, d, iterations=1))
    config = (d / "config.json").read_bytes()
    with pytest.raises(FaceswapError, match="holds a 'tiny' model, not 'lite'"):
        train(_cfg(face_dirs, d, preset="lite", iterations=2))
    with pytest.raises(FaceswapError, match="learned mask"):
        train(_cfg(face_dirs, d, learn_mask=True, iterations=2))
    assert (d / "config.json").read_bytes() == config
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FaceswapError, match="not a faceswap model dir"):
        train(_cfg(face_dirs, foreign, iterations=1))
    with pytest.raises(FaceswapError, match="does not exist"):
        train(_cfg((tmp_path / "nope", face_dirs[1]), tmp_path / "new", iterations=1))
    assert not (tmp_path / "new").exists()
    # Fewer training faces (18) than the batch: a smaller batch and a warning.
    res = train(_cfg(face_dirs, tmp_path / "big", iterations=1, batch_size=64))
    assert json.loads((tmp_path / "big" / "config.json").read_text())["train"]["batch_size_used"] == 18
    assert res.iteration == 1


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_builds_the_config_and_prints_one_line_errors(face_dirs, tmp_path, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(main, ["train", "--a", str(tmp_path / "missing"), "--b", str(face_dirs[1]), "-m", str(tmp_path / "m")])
    assert r.exit_code == 1 and r.output.strip().count("\n") == 0 and r.output.startswith("Error: A faces folder")
    assert "Traceback" not in r.output

    seen = {}
    monkeypatch.setattr("faceswap.train.train", lambda cfg: seen.setdefault("cfg", cfg))
    args = ["train", "--a", str(face_dirs[0]), "--b", str(face_dirs[1]), "--preset", "original", "--iterations", "7",
            "--minutes", "2.5", "--loss", "mse", "--eye-mouth-weight", "3", "--warp", "tps", "--learn-mask", "--seed", "9",
            "--overwrite"]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert (cfg.preset, cfg.iterations, cfg.minutes, cfg.loss, cfg.eye_mouth_weight, cfg.augment.warp, cfg.learn_mask, cfg.seed,
            cfg.overwrite) == ("original", 7, 2.5, "mse", 3.0, "tps", True, 9, True)
    assert cfg.model_dir == Path("models") / "original_a_b"


# --- checkpoint integrity ----------------------------------------------------------------------------


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_a_damaged_training_state_is_refused_and_left_alone(face_dirs, tmp_path):
    """A flipped bit in the Adam moments or RNG state (most of the file) used to resume and be overwritten."""
    import struct

    d = tmp_path / "m"
    train(_cfg(face_dirs, d, iterations=2))
    path = d / "model.safetensors"
    blob = path.read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    for key in ("train/optim/0/exp_avg_sq", "train/rng/0"):
        a, b = header[key]["data_offsets"]
        damaged = bytearray(blob)
        damaged[8 + n + (a + b) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        before = _files(d)
        with pytest.raises(FaceswapError, match="training state .* SHA-256.*train leaves it as it is"):
            train(_cfg(face_dirs, d, iterations=4))
        assert _files(d) == before


def test_train_takes_over_only_dirs_it_wrote(face_dirs, tmp_path):
    src = tmp_path / "src"
    train(_cfg(face_dirs, src, iterations=1))
    config = json.loads((src / "config.json").read_text())

    only_config = tmp_path / "only_config"  # e.g. a config.json copied without its weights
    only_config.mkdir()
    (only_config / "config.json").write_text(json.dumps(config))
    no_arch = tmp_path / "no_arch"  # weights, but a config.json that does not say what they are
    no_arch.mkdir()
    (no_arch / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    (no_arch / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "architecture"}))
    foreign = tmp_path / "foreign"  # somebody else's config.json
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"name": "my app"}))
    for d, match in ((only_config, "holds a config.json but no model.safetensors"), (no_arch, "does not describe a model faceswap wrote"),
                     (foreign, "not a faceswap model config")):
        before = _files(d)
        with pytest.raises(FaceswapError, match=f"{match}.*--overwrite"):
            train(_cfg(face_dirs, d, iterations=2))
        assert _files(d) == before, d
        res = train(_cfg(face_dirs, d, iterations=2, overwrite=True))  # asked for: a new model
        assert res.iteration == 2 and load_model(d).size == 32
        assert len(json.loads((d / "config.json").read_text())["runs"]) == 1
    # --overwrite also replaces a model that fails its checks, and starts a good one afresh.
    path = no_arch / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(FaceswapError, match="corrupt or truncated.*--overwrite"):
        train(_cfg(face_dirs, no_arch, iterations=3))
    assert train(_cfg(face_dirs, no_arch, iterations=1, overwrite=True)).iteration == 1
    assert read_checkpoint(no_arch).iteration == 1


def test_a_diverging_run_keeps_the_last_good_checkpoint(face_dirs, tmp_path):
    d = tmp_path / "m"
    train(_cfg(face_dirs, d, iterations=6, save_every=3, preview_every=3, log_every=3))
    before = _files(d)
    x = torch.rand(2, 3, 32, 32)
    good = load_model(d).swap(x, "a2b")[0]
    with pytest.raises(FaceswapError, match=r"diverged by iteration [7-9] \(NaN/inf in the .+\).*keeps iteration 6.*lower --lr"):
        train(_cfg(face_dirs, d, iterations=30, save_every=3, preview_every=3, log_every=3, lr=1e6))
    after = _files(d)
    assert after.pop("config.json") != before.pop("config.json")  # the run is recorded; nothing else changed
    assert after == before
    assert good.isfinite().all() and torch.equal(load_model(d).swap(x, "a2b")[0], good)
    assert read_checkpoint(d).iteration == 6
    # The check also covers what the loss does not show yet: weights that went non-finite in the last step.
    steps = []
    real_step = torch.optim.Adam.step

    def poisoning_step(self, *a, **k):
        out = real_step(self, *a, **k)
        steps.append(1)
        if len(steps) == 3:  # iteration 9, the one that is saved
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    try:
        torch.optim.Adam.step = poisoning_step
        with pytest.raises(FaceswapError, match="diverged by iteration 9 .*NaN/inf in the encoder"):
            train(_cfg(face_dirs, d, iterations=9, save_every=3))
    finally:
        torch.optim.Adam.step = real_step
    assert read_checkpoint(d).iteration == 6


def test_lr_must_be_a_positive_number(face_dirs, tmp_path):
    for lr in (0.0, -1e-4, float("nan"), float("inf")):
        with pytest.raises(FaceswapError, match="--lr must be a positive number"):
            train(_cfg(face_dirs, tmp_path / "m", iterations=1, lr=lr))
    assert not (tmp_path / "m").exists()
    r = CliRunner().invoke(main, ["train", "--a", str(face_dirs[0]), "--b", str(face_dirs[1]), "-m", str(tmp_path / "m"), "--lr", "-1"])
    assert r.exit_code == 1 and r.output.strip() == "Error: --lr must be a positive number (got -1)"


def test_a_kill_9_during_a_save_leaves_a_temp_that_the_next_run_removes(face_dirs, tmp_path):
    """A real kill -9 while `model.safetensors` is being written (held just before its rename)."""
    d = tmp_path / "m"
    script = textwrap.dedent(f"""
        import os, sys, time
        from faceswap.model.autoencoder import PRESETS, Preset
        PRESETS["tiny"] = {TINY_SRC}
        from faceswap.train import TrainConfig, train
        real_replace, saves = os.replace, []
        def replace(src, dst):
            if str(dst).endswith("model.safetensors"):
                saves.append(dst)
                if len(saves) == 3:  # the third save: its temp file is written and synced, the rename not done
                    print(src, flush=True)
                    time.sleep(600)
            return real_replace(src, dst)
        os.replace = replace
        train(TrainConfig({str(face_dirs[0])!r}, {str(face_dirs[1])!r}, {str(d)!r}, preset="tiny", batch_size=8,
                          save_every=1, preview_every=1000, log_every=1000, quiet=True, iterations=10**6, threads=1))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        temp = Path(proc.stdout.readline().decode().strip())  # blocks until the save is under way
    finally:
        proc.kill()
        proc.wait()
    assert temp.parent == d and temp.is_file(), proc.stderr.read().decode()[-500:]
    assert temp.stat().st_size > (d / "model.safetensors").stat().st_size / 2
    assert read_checkpoint(d).iteration == 1  # saves 0 and 1 made it; the killed one did not
    live = d / f".model.safetensors.{os.getpid()}-1.tmp"  # a save in flight in a live process: not touched
    live.write_bytes(b"x")
    res = train(_cfg(face_dirs, d, iterations=1))  # nothing to train, still cleans up
    assert res.iteration == 1 and not temp.exists() and live.exists()

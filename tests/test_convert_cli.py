"""`faceswap convert` end to end through the CLI, with a tiny untrained model (its swaps are noise,
which is all the plumbing needs) on clips made from a photo that ships in a wheel."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import photo_face
from faceswap.cli import main
from faceswap.convert import swap as swap_module
from faceswap.extract import ExtractConfig, run_extract
from faceswap.faces.store import read_png_meta
from faceswap.provenance import verify_file
from faceswap.model.autoencoder import CONFIG_NAME, FORMAT, FORMAT_VERSION, Preset, SwapModel, model_id, save_checkpoint
from faceswap.video import FrameReader, VideoWriter, probe, read_metadata

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def frames_of(path):
    return np.stack([f for _, f in FrameReader(path)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model")
    model = SwapModel(TINY).eval()
    (d / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **model.describe()}))
    save_checkpoint(d, model, iteration=1)
    return d


@pytest.fixture(scope="module")
def alignments(photo_clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    run_extract(ExtractConfig(inputs=[photo_clip], output=out, size=64), show_progress=False)
    return out / "alignments.json"


@pytest.fixture(scope="module")
def faceless_clip(tmp_path_factory):
    """8 frames of moving noise-free gradients: nothing MTCNN calls a face."""
    path = tmp_path_factory.mktemp("clips") / "faceless.mp4"
    y, x = np.mgrid[0:120, 0:160]
    frames = np.stack([np.stack([(x + 3 * i) % 256, y * 2, np.full_like(x, 90)], -1) for i in range(8)]).astype(np.uint8)
    with VideoWriter(path, 160, 120, 25.0, crf=18) as w:
        w.write(frames)
    return path


def test_round_trip_keeps_frames_fps_size_audio_and_labels(photo_clip, model_dir, alignments, tmp_path):
    out = tmp_path / "swapped.mp4"
    code, stdout, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--alignments", alignments, "--quiet")
    assert code == 0, stderr
    assert "24 frames, 24 faces swapped, 0 frames without a face" in stdout and "Warning" not in stderr
    src, dst = probe(photo_clip), probe(out)
    assert (dst.width, dst.height, dst.fps, dst.frame_count, dst.has_audio) == (src.width, src.height, src.fps, 24, True)
    tags = read_metadata(out)
    assert tags["comment"].startswith("synthetic: face swap made with faceswap")
    assert tags["faceswap_synthetic"] == "1" and tags["faceswap_version"]
    assert tags["faceswap_model_id"] == model_id(model_dir)
    assert dt.datetime.fromisoformat(tags["faceswap_created"]).year >= 2024
    assert json.loads(tags["faceswap_options"])["direction"] == "a2b"
    credentials = verify_file(out)  # provenance layer 3, attached as the last step
    assert credentials.status == "valid" and credentials.synthetic
    a, b = frames_of(photo_clip).astype(int), frames_of(out).astype(int)
    # The face changed; the background far from it did not (beyond H.264 re-encoding).
    face = json.loads(alignments.read_text())["sources"]
    (entry,) = face.values()
    x0, y0, x1, y1 = (int(v) for v in entry["frames"]["10"][0]["box"])
    assert np.abs(a[10, y0:y1, x0:x1] - b[10, y0:y1, x0:x1]).mean() > 10
    assert np.abs(a[:, -30:, -30:] - b[:, -30:, -30:]).mean() < 2
    assert list(tmp_path.iterdir()) == [out]  # no temp files left behind


def test_range_with_detection_on_the_fly(photo_clip, model_dir, tmp_path):
    out = tmp_path / "range.mkv"
    code, stdout, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--start", 4, "--end", 16, "--quiet",
                               "--direction", "b2a", "--color", "hist", "--blend", "poisson", "--mask-erode", 3, "--mask-blur", 2)
    assert code == 0, stderr
    assert "12 frames, 12 faces swapped" in stdout
    info = probe(out)
    assert info.frame_count == 12 and info.has_audio and abs(info.duration - 0.5) < 0.1
    # Output frame k is input frame 4 + k: compare the untouched corner (a moving gradient would tell).
    a, b = frames_of(photo_clip)[4:16].astype(int), frames_of(out).astype(int)
    assert np.abs(a[:, :20, -40:] - b[:, :20, -40:]).mean() < 2


def test_frames_without_faces_are_bit_identical_at_crf_0(photo_clip, model_dir, alignments, tmp_path):
    # Alignments that say frames 0-11 hold no face: those must come out exactly as decoded.
    al = json.loads(alignments.read_text())
    (entry,) = al["sources"].values()
    for i in range(12):
        entry["frames"][str(i)] = []
    edited = tmp_path / "alignments.json"
    edited.write_text(json.dumps(al))
    out = tmp_path / "lossless.mp4"
    code, stdout, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--alignments", edited, "--crf", 0, "--quiet")
    assert code == 0, stderr
    assert "12 faces swapped, 12 frames without a face" in stdout
    a, b = frames_of(photo_clip), frames_of(out)
    assert np.array_equal(a[:12], b[:12])
    assert all(not np.array_equal(a[i], b[i]) for i in range(12, 24))


def test_video_without_faces_warns_and_copies_through(faceless_clip, model_dir, tmp_path):
    out = tmp_path / "same.mp4"
    code, stdout, stderr = run("convert", faceless_clip, "-m", model_dir, "-o", out, "--crf", 0, "--quiet")
    assert code == 0, stderr
    assert "Warning: no face found in faceless.mp4" in stderr and "8 frames, 0 faces swapped" in stdout
    assert np.array_equal(frames_of(faceless_clip), frames_of(out))
    assert read_metadata(out)["faceswap_synthetic"] == "1"


def _one_line_error(code, stderr, needle):
    assert code == 1, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], stderr
    assert "Traceback" not in stderr


def test_bad_models_and_alignments_are_one_line_errors(photo_clip, faceless_clip, model_dir, alignments, tmp_path):
    out = tmp_path / "out.mp4"
    code, _, stderr = run("convert", photo_clip, "-m", tmp_path / "nope", "-o", out)
    _one_line_error(code, stderr, "does not exist")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:500])
    code, _, stderr = run("convert", photo_clip, "-m", broken, "-o", out)
    _one_line_error(code, stderr, "corrupt or truncated")
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--mask", "learned")
    _one_line_error(code, stderr, "no learned mask")
    # Alignments of another video: refused, never applied to the wrong frames.
    code, _, stderr = run("convert", faceless_clip, "-m", model_dir, "-o", out, "--alignments", alignments)
    _one_line_error(code, stderr, "has no alignments for faceless.mp4")
    al = json.loads(alignments.read_text())
    (entry,) = al["sources"].values()
    entry["fingerprint"]["head_sha1"] = "0" * 40  # same path, different content
    other = tmp_path / "other.json"
    other.write_text(json.dumps(al))
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--alignments", other)
    _one_line_error(code, stderr, "another version")
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_unwritable_or_existing_outputs(photo_clip, model_dir, tmp_path):
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", tmp_path / "missing" / "out.mp4")
    _one_line_error(code, stderr, "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", blocker / "out.mp4")
    _one_line_error(code, stderr, "does not exist")
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", tmp_path / "out.gif")
    _one_line_error(code, stderr, "video file name")
    existing = tmp_path / "done.mp4"
    existing.write_bytes(b"earlier result")
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", existing)
    _one_line_error(code, stderr, "--overwrite")
    assert existing.read_bytes() == b"earlier result"


def test_interrupted_run_leaves_no_partial_output(photo_clip, model_dir, alignments, tmp_path, monkeypatch):
    real = swap_module.FaceSwapper.swap
    calls = []

    def swap_then_interrupt(self, frames, landmarks):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, frames, landmarks)

    monkeypatch.setattr(swap_module.FaceSwapper, "swap", swap_then_interrupt)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier result")
    code, _, stderr = run("convert", photo_clip, "-m", model_dir, "-o", out, "--alignments", alignments,
                          "--batch-size", 8, "--overwrite", "--quiet")
    assert code == 130 and stderr.strip() == "Error: interrupted"
    assert out.read_bytes() == b"earlier result" and list(tmp_path.iterdir()) == [out]


def test_image_folder_in_image_folder_out(model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    photo = photo_face()
    cv2.imwrite(str(src / "hopper.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    plain = np.full((90, 120, 3), 140, np.uint8)
    cv2.imwrite(str(src / "wall.png"), plain)
    out = tmp_path / "out"
    code, stdout, stderr = run("convert", src, "-m", model_dir, "-o", out, "--quiet")
    assert code == 0, stderr
    assert "2 frames, 1 faces swapped, 1 frames without a face" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["hopper.png", "wall.png"]
    swapped = cv2.cvtColor(cv2.imread(str(out / "hopper.png")), cv2.COLOR_BGR2RGB)
    decoded = cv2.cvtColor(cv2.imread(str(src / "hopper.jpg")), cv2.COLOR_BGR2RGB)
    assert swapped.shape == decoded.shape and np.abs(swapped.astype(int) - decoded).mean() > 1
    assert np.array_equal(cv2.imread(str(out / "wall.png")), plain)
    data = (out / "wall.png").read_bytes()
    assert b"tEXtfaceswap_synthetic\x001" in data and b"tEXtComment\x00synthetic: face swap" in data
    assert read_png_meta(data) is None  # not mistaken for an aligned face PNG

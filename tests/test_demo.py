"""The demo: its bundled synthetic samples (small, deterministic, faces MTCNN finds, two clearly
different people, audio) and `faceswap demo --quick` end to end."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from facenet_pytorch import MTCNN
from rich.console import Console

from faceswap import synthetic
from faceswap.cli import main
from faceswap.demo import DETECT_REPORT, MARKER, SAMPLE_A, SAMPLE_B, SWAPPED_NAME, DemoConfig, run_demo
from faceswap.errors import FaceswapError
from faceswap.video import FrameReader, probe

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def _make_samples_module():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_samples = _make_samples_module()


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # MTCNN and the lite model on a shared 2-core CPU: one thread avoids OpenMP spinning.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the samples ------------------------------------------------------------------------------


def test_samples_are_small_clips_with_audio():
    paths = [SAMPLES / SAMPLE_A, SAMPLES / SAMPLE_B]
    assert sum(p.stat().st_size for p in paths) < 5 * 2**20
    for path in paths:
        info = probe(path)
        assert (info.height, info.width) == make_samples.SIZE and info.fps == make_samples.FPS
        assert info.frame_count == int(make_samples.SECONDS * make_samples.FPS)
        assert info.has_audio, f"{path.name} has no audio track"


def test_generator_is_deterministic(tmp_path):
    make_samples.main(tmp_path / "one", seconds=0.4)
    make_samples.main(tmp_path / "two", seconds=0.4)
    for name in make_samples.CLIPS:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
        assert probe(tmp_path / "one" / name).has_audio


@pytest.mark.parametrize("name", list(make_samples.CLIPS))
def test_committed_samples_are_what_the_generator_renders(name):
    identity, seed, _ = make_samples.CLIPS[name]
    n = 10
    rendered = [f for f, _ in synthetic.render_clip(getattr(synthetic, identity), n, make_samples.SIZE, seed=seed, fps=make_samples.FPS)]
    decoded = [f for _, f in FrameReader(SAMPLES / name, end=n)]
    assert len(decoded) == n
    for a, b in zip(rendered, decoded):
        mse = np.mean((a.astype(np.float64) - b) ** 2)
        assert 10 * np.log10(255**2 / mse) > 30, f"{name}: PSNR {10 * np.log10(255**2 / mse):.1f} dB"


@pytest.fixture(scope="module")
def sample_detections() -> dict[str, list]:
    """MTCNN's confident faces (boxes) in every 5th frame of each committed sample."""
    mtcnn = MTCNN(keep_all=True, device="cpu")
    out = {}
    for name in (SAMPLE_A, SAMPLE_B):
        frames = [f for _, f in FrameReader(SAMPLES / name, every=5)]
        boxes, probs = mtcnn.detect(frames)
        out[name] = [(f, [] if p is None or p[0] is None else [b for b, q in zip(bx, p) if q >= 0.9])
                     for f, bx, p in zip(frames, boxes, probs)]
    return out


@pytest.mark.parametrize("name", [SAMPLE_A, SAMPLE_B])
def test_mtcnn_finds_one_face_in_the_samples(sample_detections, name):
    found = sample_detections[name]
    assert len(found) == 60
    rate = np.mean([len(boxes) == 1 for _, boxes in found])
    assert rate >= 0.95, f"{name}: one confident face in {rate:.0%} of frames"


def test_sample_identities_differ(sample_detections):
    def face_stats(name):
        # Mean colour of the face's centre and box aspect, over the frames with one face.
        colours, aspects = [], []
        for frame, boxes in sample_detections[name]:
            if len(boxes) != 1:
                continue
            x0, y0, x1, y1 = boxes[0]
            cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
            colours.append(frame[int(cy):int(cy + 0.15 * h), int(cx - 0.3 * w):int(cx - 0.15 * w)].reshape(-1, 3).mean(0))
            aspects.append(w / h)
        return np.mean(colours, 0), np.median(aspects)

    (skin_a, aspect_a), (skin_b, aspect_b) = face_stats(SAMPLE_A), face_stats(SAMPLE_B)
    assert np.linalg.norm(skin_a - skin_b) > 60, (skin_a, skin_b)  # light vs dark skin on the cheek
    # Whole frames differ everywhere (hair, clothes, background), not just in the face.
    frame_a, frame_b = sample_detections[SAMPLE_A][0][0], sample_detections[SAMPLE_B][0][0]
    assert np.abs(frame_a.astype(int) - frame_b).mean() > 25


# --- the demo end to end -----------------------------------------------------------------------


def _console() -> Console:
    return Console(file=io.StringIO(), width=160)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    console = _console()
    result = run_demo(DemoConfig(output=out, quick=True, device="cpu"), console)
    return result, console.file.getvalue()


def test_demo_swaps_sample_a_keeping_frames_and_audio(quick_demo):
    result, _ = quick_demo
    src, out = probe(SAMPLES / SAMPLE_A), probe(result.swapped_video)
    assert result.swapped_video.name == SWAPPED_NAME
    assert (out.frame_count, out.width, out.height, out.fps) == (src.frame_count, src.width, src.height, src.fps)
    assert out.has_audio
    # The face region changed, the corners (background) did not.
    a, b = next(iter(FrameReader(SAMPLES / SAMPLE_A, start=100, end=101)))[1], next(iter(FrameReader(result.swapped_video, start=100, end=101)))[1]
    diff = np.abs(a.astype(int) - b).mean(2)
    assert diff[100:220, 100:220].mean() > 8 and diff[:40, :40].mean() < 3


def test_demo_labels_the_swap_and_not_the_original(quick_demo):
    result, _ = quick_demo
    report = json.loads(result.inspect_report.read_text())
    swapped, original = report["files"]
    assert Path(swapped["file"]).name == SWAPPED_NAME and Path(original["file"]).name == SAMPLE_A
    assert swapped["synthetic"] and swapped["metadata"]["synthetic"]
    assert swapped["c2pa"]["status"] == "valid"
    assert swapped["watermark"]["found"] and swapped["watermark"]["matches_metadata"]
    assert not original["synthetic"]
    assert result.labelled == {SWAPPED_NAME: True, SAMPLE_A: False}


def test_demo_detects_the_swap_and_not_the_original(quick_demo):
    result, text = quick_demo
    assert result.detect_report.name == DETECT_REPORT
    report = json.loads(result.detect_report.read_text())
    by_name = {Path(s["source"]).name: s for s in report["sources"]}
    swapped, original = by_name[SWAPPED_NAME], by_name[SAMPLE_A]
    assert report["flagged"] and swapped["flagged"] and not original["flagged"]
    assert swapped["watermark"]["found"] and not original["watermark"]["found"]
    # The pixels alone tell them apart too (the detector has seen these samples: a sanity check, not a measurement).
    assert swapped["mean_logit"] > report["threshold"] >= original["mean_logit"]
    assert original["faces"] == 300 and swapped["faces"] >= 270
    assert report["detector"]["model_id"] and {"s1_err_b", "s2_oneclass", "s3_spec"} <= set(report["detector"]["signals"])
    assert set(result.verdicts) == {SWAPPED_NAME, SAMPLE_A}
    assert result.verdicts[SAMPLE_A].startswith("no swap detected")


def test_demo_writes_preview_loss_plot_and_prints_where(quick_demo):
    result, text = quick_demo
    preview = cv2.imread(str(result.preview))
    assert preview is not None and preview.shape[0] == 6 * 64  # rows A, A>A, A>B, B, B>B, B>A of 64 px faces
    assert cv2.imread(str(result.loss_plot)) is not None
    assert result.iterations == 40
    for path in (result.swapped_video, result.preview, result.loss_plot, result.detect_report, result.inspect_report):
        assert str(path) in text
    assert "SYNTHETIC" in text and "no synthetic label" in text


def test_demo_rerun_reuses_its_output(quick_demo):
    result, _ = quick_demo
    before = result.swapped_video.stat().st_mtime_ns
    console = _console()
    again = run_demo(DemoConfig(output=result.output, quick=True, device="cpu"), console)
    text = console.file.getvalue()
    assert "already extracted" in text and text.count("reusing it") == 2  # the detector and the swapped video
    assert again.iterations == result.iterations
    assert result.swapped_video.stat().st_mtime_ns == before
    # A full run into the quick demo's folder is refused, not mixed in.
    with pytest.raises(FaceswapError, match="quick demo.*--overwrite"):
        run_demo(DemoConfig(output=result.output, quick=False), _console())


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FaceswapError, match="not made by faceswap demo"):
            run_demo(DemoConfig(output=mine, quick=True, overwrite=overwrite), _console())
    assert (mine / "notes.txt").read_text() == "keep me" and not (mine / MARKER).exists()


def test_demo_cli_errors_are_one_line(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    res = CliRunner().invoke(main, ["demo", "--quick", "-o", str(target)])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [f"Error: {target} is a file; choose a folder for the demo's output with -o"]
    assert "--quick" in CliRunner().invoke(main, ["demo", "--help"]).output

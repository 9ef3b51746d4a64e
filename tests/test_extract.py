"""`faceswap extract` end to end through the CLI, on clips made from a photo that ships in a wheel."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import photo_face
from faceswap.cli import main
from faceswap.faces.align import template_points
from faceswap.faces.detect import FaceDetector
from faceswap.extract import ExtractConfig, run_extract
from faceswap.faces.store import ALIGNMENTS_NAME, Alignments, read_face_png
from faceswap.video import VideoWriter


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def faces_in(folder):
    return sorted(p.name for p in folder.glob("*.png"))


def test_extract_video_writes_aligned_faces_and_alignments(photo_clip, tmp_path):
    out = tmp_path / "faces"
    code, stdout, stderr = run("extract", photo_clip, "-o", out, "--size", 128)
    assert code == 0, stderr
    assert "24 frames read, 24 faces written, 0 frames without a face" in stdout
    names = faces_in(out)
    assert len(names) == 24 and names[0] == "photo_000000_0.png"
    al = json.loads((out / "alignments.json").read_text())
    assert (al["size"], al["coverage"]) == (128, "face")
    (entry,) = al["sources"].values()
    assert (entry["width"], entry["height"], entry["fps"], entry["frame_count"], entry["complete"]) == (320, 240, 24.0, 24, True)
    face = entry["frames"]["5"][0]
    image, meta = read_face_png(out / face["file"])
    assert image.shape == (128, 128, 3)
    assert meta["frame"] == 5 and meta["matrix"] == face["matrix"] and meta["coverage"] == "face"
    # The matrix maps the frame's landmarks onto the template.
    m = np.array(face["matrix"])
    mapped = np.array(face["landmarks"]) @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - template_points(128)).max() < 128 * 0.06


def test_options_every_start_end_and_reuse(photo_clip, tmp_path):
    out = tmp_path / "faces"
    code, stdout, _ = run("extract", photo_clip, "-o", out, "--every", 5, "--start", 2, "--end", 20, "--quiet")
    assert code == 0
    assert faces_in(out) == [f"photo_{i:06d}_0.png" for i in (2, 7, 12, 17)]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    code, stdout, stderr = run("extract", photo_clip, "-o", out, "--quiet")
    assert code == 0 and "already extracted" in stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before  # no face rewritten
    code, stdout, _ = run("extract", photo_clip, "-o", out, "--quiet", "--overwrite")
    assert code == 0 and len(faces_in(out)) == 24


def test_interrupted_run_resumes(photo_clip, tmp_path):
    out = tmp_path / "faces"
    assert run("extract", photo_clip, "-o", out, "--quiet")[0] == 0
    # Make it look like a run killed after frame 11: later frames missing, source incomplete.
    path = out / "alignments.json"
    al = json.loads(path.read_text())
    (entry,) = al["sources"].values()
    for i in range(12, 24):
        (out / entry["frames"].pop(str(i))[0]["file"]).unlink()
    entry.update(complete=False, next_frame=12)
    path.write_text(json.dumps(al))
    kept = (out / "photo_000003_0.png").stat().st_mtime_ns
    code, stdout, stderr = run("extract", photo_clip, "-o", out)
    assert code == 0 and "resuming at frame 12" in stderr
    assert "12 frames read, 12 faces written" in stdout
    assert len(faces_in(out)) == 24 and (out / "photo_000003_0.png").stat().st_mtime_ns == kept
    assert json.loads(path.read_text())["sources"][entry["path"]]["complete"] is True


def test_images_and_folders(tmp_path):
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "hopper.jpg"), cv2.cvtColor(photo_face(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), cv2.cvtColor(cv2.resize(photo_face(), (256, 300)), cv2.COLOR_RGB2BGR))
    out = tmp_path / "faces"
    code, stdout, stderr = run("extract", folder, single, "-o", out, "--max-faces", 1)
    assert code == 0, stderr
    assert faces_in(out) == ["astronaut_0.png", "hopper_0.png", "single_0.png"]


def test_bad_inputs_are_one_line_errors_and_the_rest_still_runs(photo_clip, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    out = tmp_path / "faces"
    code, stdout, stderr = run("extract", tmp_path / "missing.mp4", text, empty, no_images, photo_clip, "-o", out, "--quiet")
    assert code == 1
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 4
    assert "missing.mp4: no such file" in errors[0]
    assert "notes.mp4: not a video" in stderr and "empty.mp4: empty file" in stderr and "folder has no images" in stderr
    assert "Traceback" not in stderr
    assert len(faces_in(out)) == 24  # the good clip was still extracted


def test_truncated_video_keeps_its_frames(photo_clip, tmp_path):
    data = photo_clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    code, stdout, stderr = run("extract", cut, "-o", tmp_path / "faces", "--quiet")
    assert code == 0
    assert "Warning: cut.mp4 ended after" in stderr
    assert 0 < len(faces_in(tmp_path / "faces")) < 24


def test_no_faces_at_all_is_an_error(tmp_path):
    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 160, 120, 10.0) as w:
        w.write(np.full((10, 120, 160, 3), 128, np.uint8))
    code, _, stderr = run("extract", blank, "-o", tmp_path / "faces", "--quiet")
    assert code == 1 and "Error: no faces found in" in stderr


def test_unwritable_output_and_foreign_images_are_refused(photo_clip, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, stderr = run("extract", photo_clip, "-o", a_file / "faces")
    assert code == 1 and stderr.startswith("Error: cannot write to output folder")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "holiday.png").write_bytes(b"precious")
    code, _, stderr = run("extract", photo_clip, "-o", foreign)
    assert code == 1 and "did not write" in stderr
    assert (foreign / "holiday.png").read_bytes() == b"precious"


def test_real_process_prints_no_traceback(tmp_path):
    cmd = [sys.executable, "-m", "faceswap", "extract", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.mp4'}: no such file or folder"]
    proc = subprocess.run([sys.executable, "-m", "faceswap", "--debug", "extract", "--end", "0", "x", "-o", "y"],
                          capture_output=True, text=True)
    assert proc.returncode == 2  # click's usage error for a bad option value


def test_detector_downscale_maps_boxes_back():
    frame = cv2.resize(photo_face(), (1024, 1200))
    det = FaceDetector()
    (faces,) = det.detect(frame[None])
    assert len(faces) == 1
    assert det.scale_for(1200, 1024) < 0.25
    # Against a detection at a larger detect size: same face within a few percent of its size.
    from faceswap.faces.detect import DetectorConfig

    (big,) = FaceDetector(DetectorConfig(detect_size=800)).detect(frame[None])
    err = np.abs(faces[0].landmarks - big[0].landmarks).max()
    assert err < 0.05 * faces[0].size


def test_tracking_gives_full_detections_with_fewer_pyramid_levels(photo_clip, monkeypatch):
    from faceswap.faces.track import track_faces
    from faceswap.video import FrameReader

    from faceswap.faces.detect import DetectorConfig

    frames = np.concatenate([f for _, f in FrameReader(photo_clip).chunks(24)])
    detector = FaceDetector(DetectorConfig(min_face=12))  # fine levels to skip below the ~80 px face
    full = detector.detect(frames)
    levels = []  # max_scale of every frame the tracker detects
    detect = detector.detect_downscaled
    monkeypatch.setattr(detector, "detect_downscaled", lambda small, factors, max_scale=None: (
        levels.extend([max_scale] * len(small)), detect(small, factors, max_scale))[1])
    tracked = track_faces(detector, frames[:10], 8) + track_faces(detector, frames[10:], 8)
    assert [len(f) for f in tracked] == [len(f) for f in full] == [1] * 24
    for a, b in zip(full, tracked):  # every frame is a whole detection: nothing drifts
        np.testing.assert_allclose(b[0].landmarks, a[0].landmarks, atol=1e-3)
        np.testing.assert_allclose(b[0].box, a[0].box, atol=1e-3)
    # Each batch starts with a keyframe: frames 0, 8 | 10, 18 searched every level, the others fewer.
    assert levels.count(None) == 4 and len(levels) == 24
    assert all(0 < s < detector_first_level(detector, frames) for s in levels if s is not None)
    # Frames without a face are found empty, and searched with every level.
    levels.clear()
    blank = np.full_like(frames[:3], 128)
    assert track_faces(detector, blank, 8) == [[], [], []]
    assert levels == [None] * 3


@pytest.mark.parametrize("batch_size, redetect_every", [(3, 8), (16, 4)])  # (16, 4): the last batches are split in two
def test_batches_detected_side_by_side_come_back_in_order(photo_clip, tmp_path, batch_size, redetect_every):
    """extract detects several batches at once on two threads, and splits the last full batch at
    a keyframe over both: every frame's faces land under its own index, equal to detecting that
    frame alone."""
    from faceswap.faces.detect import DetectorConfig
    from faceswap.video import FrameReader

    frames = np.concatenate([f for _, f in FrameReader(photo_clip).chunks(24)])
    frames[5:8] = 128  # no face in frames 5-7: a misplaced batch would show
    clip = tmp_path / "clip.mp4"
    with VideoWriter(clip, frames.shape[2], frames.shape[1], 24, crf=0) as writer:
        writer.write(frames)
    config = ExtractConfig(inputs=[clip], output=tmp_path / "faces", batch_size=batch_size,
                           detector=DetectorConfig(redetect_every=redetect_every))
    run_extract(config, show_progress=False)
    (entry,) = Alignments.load(tmp_path / "faces" / ALIGNMENTS_NAME).sources.values()
    detector = FaceDetector()
    decoded = np.concatenate([f for _, f in FrameReader(clip).chunks(24)])
    for i, frame in enumerate(decoded):
        (alone,) = detector.detect(frame[None])
        saved = entry["frames"][str(i)]
        assert len(saved) == len(alone) == (0 if 5 <= i < 8 else 1)
        for face, record in zip(alone, saved):
            np.testing.assert_allclose(record["landmarks"], face.landmarks, atol=2e-3)


def detector_first_level(detector, frames):
    """Scale of the finest pyramid level the detector searches in these frames."""
    from faceswap.faces.cascade import pyramid_scales

    small, factor = detector.downscale(frames[:1])
    return pyramid_scales(*small.shape[1:3], detector.min_face_small(factor[None]))[0]


def test_tracking_finds_a_new_small_face_at_the_next_keyframe():
    """The price of skipping fine levels: a new face much smaller than those in view waits for the
    next keyframe (a face about as large or larger is found at once)."""
    from faceswap.faces.detect import DetectorConfig
    from faceswap.faces.track import track_faces

    photo = photo_face()
    scene = np.full((480, 720, 3), (90, 110, 130), np.uint8)
    scene[5:475, 10:411] = cv2.resize(photo, (401, 470), interpolation=cv2.INTER_AREA)  # a ~170 px face
    frames = np.stack([scene] * 20)
    frames[3:, 300:350, 560:603] = cv2.resize(photo, (43, 50), interpolation=cv2.INTER_AREA)  # + a ~20 px face
    detector = FaceDetector(DetectorConfig(detect_size=720, min_face=12))
    assert [len(f) for f in detector.detect(frames)] == [1] * 3 + [2] * 17
    counts = [len(f) for batch in (frames[:16], frames[16:]) for f in track_faces(detector, batch, 16)]
    assert counts == [1] * 16 + [2] * 4
    # All the frames of a batch search the levels the smallest face at any of its keyframes calls for.
    assert [len(f) for f in track_faces(detector, frames, 16)] == [1] * 3 + [2] * 17
    assert [len(f) for f in track_faces(detector, frames, 1)] == [1] * 3 + [2] * 17  # 1: every frame in full


def test_cut_faces_matches_warp_faces(photo_clip):
    """extract's OpenCV crops equal `warp_faces` on float frames to +-1 level, with and without its
    power-of-two reduction, for faces against the frame's edges too."""
    from faceswap.faces.align import cut_faces
    from faceswap.faces.align import alignment_matrices, warp_faces
    from faceswap.video import FrameReader

    frames = np.concatenate([f for _, f in FrameReader(photo_clip).chunks(24)])[:6]
    big = np.stack([cv2.resize(f, (960, 720)) for f in frames])
    edge = np.roll(frames, (-60, -110), axis=(1, 2))  # the face pushed against the top-left edge
    for batch in (frames, big, edge):
        faces = FaceDetector().detect(batch)
        owner = [i for i, fs in enumerate(faces) for _ in fs]
        landmarks = np.stack([f.landmarks for fs in faces for f in fs])
        for size in (64, 256):
            m = alignment_matrices(landmarks, size)
            got = cut_faces(batch, owner, m, size)
            assert got.shape == (len(owner), size, size, 3)
            for k, o in enumerate(owner):
                whole = torch.from_numpy(batch[o : o + 1]).permute(0, 3, 1, 2).float().div(255)
                ref = warp_faces(whole, m[k : k + 1], size).mul(255).round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
                diff = np.abs(got[k].astype(int) - ref)
                assert diff.max() <= 1 and diff.mean() < 0.25


def test_synthetic_faces_are_found_and_aligned(tmp_path):
    """Rendered faces with known landmarks: every frame found, and the crop matrix maps the true
    landmarks onto the template."""
    from faceswap.synthetic import IDENTITY_B, render_clip

    clip = tmp_path / "synthetic.mp4"
    truth = {}
    with VideoWriter(clip, 384, 288, 10.0, crf=16) as writer:
        for i, (frame, landmarks) in enumerate(render_clip(IDENTITY_B, 30, (288, 384), seed=3, fps=2.0)):
            writer.write(frame)
            truth[i] = landmarks
    out = tmp_path / "faces"
    code, stdout, stderr = run("extract", clip, "-o", out, "--size", 128, "--quiet")
    assert code == 0, stderr
    (entry,) = json.loads((out / "alignments.json").read_text())["sources"].values()
    assert all(len(entry["frames"][str(i)]) == 1 for i in range(30))
    errors = []
    for i in range(30):
        m = np.array(entry["frames"][str(i)][0]["matrix"])
        mapped = truth[i] @ m[:, :2].T + m[:, 2]
        errors.append(np.linalg.norm(mapped - template_points(128), axis=1).mean())
    assert np.median(errors) < 0.03 * 128, np.median(errors)

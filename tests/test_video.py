import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceswap.errors import FaceswapError
from faceswap.video import FrameReader, VideoWriter, ffmpeg_exe, ffmpeg_path, probe, probe_has_audio, read_metadata


def _gradient_frames(n, h=64, w=96):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(x * 2 + i * 5) % 256, (y * 3) % 256, np.full_like(x, i * 8 % 256)], -1) for i in range(n)]).astype(np.uint8)


def test_write_read_round_trip(tmp_path):
    frames = _gradient_frames(40)
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 96, 64, 25.0, crf=0, metadata={"comment": "synthetic", "faceswap_test": "yes"}) as w:
        w.write(frames[:10])
        for f in frames[10:]:
            w.write(f)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.frame_count, info.has_audio) == (96, 64, 25.0, 40, False)
    read = list(FrameReader(path))
    assert [i for i, _ in read] == list(range(40))
    got = np.stack([f for _, f in read])
    assert got.shape == frames.shape
    # yuv420p halves chroma resolution, so allow a small error even at CRF 0
    assert np.abs(got.astype(int) - frames).mean() < 3
    tags = read_metadata(path)
    assert tags["comment"] == "synthetic" and tags["faceswap_test"] == "yes"


def test_range_and_chunks(tmp_path):
    path = tmp_path / "clip.mp4"
    with VideoWriter(path, 96, 64, 30.0) as w:
        w.write(_gradient_frames(30))
    r = FrameReader(path, start=5, end=23, every=4)
    assert [i for i, _ in r] == [5, 9, 13, 17, 21]
    chunks = list(FrameReader(path).chunks(8))
    assert [len(c[0]) for c in chunks] == [8, 8, 8, 6]
    assert chunks[-1][1].shape == (6, 64, 96, 3)


def test_audio_copied_from_source(photo_clip, tmp_path):
    out = tmp_path / "with_audio.mp4"
    with VideoWriter(out, 96, 64, 24.0, audio_from=photo_clip) as w:
        w.write(_gradient_frames(24))
    assert probe_has_audio(photo_clip) and probe(out).has_audio


def test_failed_write_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with VideoWriter(path, 96, 64, 25.0) as w:
            w.write(_gradient_frames(3))
            raise RuntimeError("crash mid-way")
    assert path.read_bytes() == b"previous result"
    assert list(tmp_path.iterdir()) == [path]


def test_truncated_video_yields_its_frames_with_a_warning(tmp_path):
    path = tmp_path / "clip.mp4"
    noisy = _gradient_frames(50) + np.random.default_rng(0).integers(0, 40, (50, 64, 96, 3), dtype=np.uint8)
    with VideoWriter(path, 96, 64, 25.0, crf=18) as w:  # +faststart: the index is at the front
        w.write(noisy)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    r = FrameReader(cut)
    n = sum(1 for _ in r)
    assert 0 < n < 50
    assert r.warning and "truncated" in r.warning


@pytest.mark.parametrize("content,message", [(None, "no such file"), (b"", "empty file"),
                                             (b"this is a text file, not a video\n" * 10, "not a video")])
def test_bad_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FaceswapError, match=message):
        probe(path)


# --- file names ffmpeg could read as protocols ------------------------------------------------------

def _ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


@pytest.mark.parametrize("name", ["colon:name.mp4", "pipe:x.mp4", "concat:a.mp4", "http:x.mp4", "file:x.mp4",
                                  "subfile,,start,0,end,100,,:a.mp4", "spaced name ü 名.mp4"])
def test_names_that_look_like_protocols_are_plain_files(photo_clip, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # relative names, as a user types them
    with VideoWriter("a.mp4", 96, 64, 25.0) as w:  # a decoy that `concat:a.mp4` / `subfile,...:a.mp4` would open
        w.write(_gradient_frames(5))
    shutil.copy(photo_clip, name)
    info = probe(name)
    assert (info.width, info.height, info.frame_count, info.has_audio) == (320, 240, 24, True)
    frames = np.stack([f for _, f in FrameReader(name)])
    assert np.array_equal(frames, np.stack([f for _, f in FrameReader(photo_clip)]))
    assert probe_has_audio(name) and "encoder" in read_metadata(name)
    out = "out " + name
    with VideoWriter(out, 320, 240, 24.0, audio_from=name, metadata={"comment": "x"}) as w:
        w.write(frames)
    assert Path(out).is_file() and not list(tmp_path.glob(".*partial*"))
    got = probe(out)
    assert (got.frame_count, got.has_audio) == (24, True) and read_metadata(out)["comment"] == "x"
    assert ffmpeg_path(name) == "file:" + str(tmp_path / name)


# --- rotation metadata (phone clips) ----------------------------------------------------------------

def _upright_frames(n=6, h=96, w=64):
    """Portrait frames with a marked top-left corner: any wrong turn or flip shows."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([x * 4 % 256, y * 2 % 256, np.full_like(x, i * 30)], -1) for i in range(n)]).astype(np.uint8)
    frames[:, :20, :10] = 255
    return frames


@pytest.mark.parametrize("degrees,legacy", [(90, False), (180, False), (270, False), (90, True), (270, True)])
def test_rotated_clips_are_read_and_written_as_displayed(tmp_path, degrees, legacy):
    upright = _upright_frames()
    coded_path, path = tmp_path / "coded.mp4", tmp_path / ("legacy.mkv" if legacy else "rotated.mp4")
    if legacy:
        # The old `rotate` tag (clockwise); ffmpeg 9 keeps it only as a tag (MKV) and no longer applies it.
        coded = np.rot90(upright, degrees // 90, axes=(1, 2))
        args = ["-i", coded_path, "-c", "copy", "-metadata:s:v:0", f"rotate={degrees}", path]
    else:
        # -display_rotation is counter-clockwise: the coded picture is the upright one turned clockwise.
        coded = np.rot90(upright, -degrees // 90, axes=(1, 2))
        args = ["-display_rotation:v:0", degrees, "-i", coded_path, "-c", "copy", path]
    with VideoWriter(coded_path, coded.shape[2], coded.shape[1], 25.0, lossless=True) as w:
        w.write(coded)
    _ffmpeg(*args)
    info = probe(path)
    assert (info.width, info.height) == (64, 96)
    got = np.stack([f for _, f in FrameReader(path)])
    assert got.shape == upright.shape and np.array_equal(got, upright)
    # What convert does: the frames as read, written out; it plays the same way up (no rotation left).
    out = tmp_path / "out.mp4"
    with VideoWriter(out, info.width, info.height, info.fps, lossless=True) as w:
        w.write(got)
    back = probe(out)
    assert (back.width, back.height, back.rotation) == (64, 96, 0)
    assert np.array_equal(np.stack([f for _, f in FrameReader(out)]), upright)


# --- variable frame rate ----------------------------------------------------------------------------

def _frame_times(path):
    err = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo=checksum=0",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    return [float(t) for t in re.findall(r"pts_time:\s*(-?[0-9.]+)", err)]


def _beep_at(path):
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "f32le", "-ac", "1", "-ar", "8000", "-"],
                         capture_output=True, check=True).stdout
    return int(np.argmax(np.abs(np.frombuffer(raw, np.float32)) > 0.1)) / 8000


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """30 frames at 30 fps then 30 at 10 fps (frame k at k/30 s, then 1 + (k-30)/10 s), a beep at 2.5 s
    (when frame 45 shows)."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30:d=2", "-f", "lavfi",
            "-i", "aevalsrc=if(between(t\\,2.5\\,2.6)\\,sin(2*PI*1000*t)\\,0):d=4:s=44100",
            "-vf", "setpts='if(lt(N,30),N/30,1+(N-30)/10)/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-t", 4, path)
    return path


def test_vfr_clip_counts_its_frames_without_a_damage_warning(vfr_clip):
    info = probe(vfr_clip)
    assert (info.frame_count, info.nominal_frames) == (60, 60)
    r = FrameReader(vfr_clip, timestamps=True)
    assert sum(1 for _ in r) == 60 and r.warning is None
    times = [float(r.pts[i] * r.time_base) for i in range(60)]
    assert times[29] == pytest.approx(29 / 30, abs=1e-3) and times[45] == pytest.approx(2.5, abs=1e-3)


@pytest.mark.parametrize("start", [0, 20])
def test_vfr_timing_and_audio_kept_on_rewrite(vfr_clip, tmp_path, start):
    r = FrameReader(vfr_clip, start=start, timestamps=True)
    out = tmp_path / "out.mp4"
    # as convert does: audio whole, or from the first frame written to the last for a range
    with VideoWriter(out, 96, 64, probe(vfr_clip).fps, audio_from=vfr_clip, audio_start=None if start else 0.0) as w:
        for indices, frames in r.chunks(7):
            w.write(frames, pts=[r.pts[i] for i in indices], time_base=r.time_base)
    src, got = _frame_times(vfr_clip), _frame_times(out)
    assert len(got) == 60 - start
    shift = got[0] - src[start]  # a range starts near zero; the spacing is the source's
    assert np.allclose(np.array(got) - shift, src[start:], atol=1e-3)
    # frame 45 is on screen when the beep sounds, in the output as in the source (within a frame)
    assert abs((_beep_at(out) - got[45 - start]) - (_beep_at(vfr_clip) - src[45])) < 0.1
    if start == 0:
        assert got[45] == pytest.approx(2.5, abs=0.034)


# --- odd sizes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lossless", [False, True])
def test_odd_size_round_trip_keeps_the_size(tmp_path, lossless):
    frames = _gradient_frames(6, h=63, w=95)
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, 95, 63, 25.0, crf=0, lossless=lossless) as w:
        w.write(frames)
    info = probe(path)
    assert (info.width, info.height, info.frame_count) == (95, 63, 6)
    got = np.stack([f for _, f in FrameReader(path)])
    assert got.shape == frames.shape and np.abs(got.astype(int) - frames).mean() < (0.01 if lossless else 3)
    ok, frame = cv2.VideoCapture(str(path)).read()  # OpenCV's own ffmpeg build decodes it at that size too
    assert ok and frame.shape == (63, 95, 3)

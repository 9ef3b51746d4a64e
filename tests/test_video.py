import numpy as np
import pytest

from faceswap.errors import FaceswapError
from faceswap.video import FrameReader, VideoWriter, probe, probe_has_audio, read_metadata


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

import json

import numpy as np
import pytest

from faceswap.errors import FaceswapError
from faceswap.faces.store import (Alignments, encode_face_png, file_fingerprint, read_face_meta, read_face_png,
                                  write_face_png)


def test_face_png_metadata_round_trip(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    meta = {"source": "clip é.mp4", "frame": 12, "matrix": [[0.5, 0.1, -3.0], [-0.1, 0.5, 4.0]],
            "landmarks": [[1.5, 2.5]] * 5, "score": 0.999}
    path = tmp_path / "face.png"
    write_face_png(path, image, meta)
    back, back_meta = read_face_png(path)
    assert np.array_equal(back, image)  # lossless and RGB order kept
    assert back_meta == meta
    assert read_face_meta(path) == meta
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_plain_png_has_no_meta(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "plain.png"), np.zeros((8, 8, 3), np.uint8))
    image, meta = read_face_png(tmp_path / "plain.png")
    assert image.shape == (8, 8, 3) and meta is None


def test_unreadable_image_is_a_clear_error(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(FaceswapError, match="not a readable image"):
        read_face_png(tmp_path / "bad.png")


def test_alignments_round_trip_and_lookup(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x" * 1000)
    al = Alignments(tmp_path / "alignments.json", 256, "face")
    al.sources[str(video.resolve())] = {"path": str(video.resolve()), "kind": "video", "fingerprint": file_fingerprint(video),
                                        "frames": {"3": [{"file": "clip_000003_0.png", "box": [1, 2, 3, 4]}]}}
    al.save()
    back = Alignments.load(tmp_path / "alignments.json")
    assert (back.size, back.coverage, back.sources) == (256, "face", al.sources)
    assert back.face_files() == ["clip_000003_0.png"]
    moved = tmp_path / "moved.mp4"
    video.rename(moved)
    assert back.find_source(moved)[0] == str(video.resolve())  # found by fingerprint after a rename


def test_corrupt_alignments_are_refused(tmp_path):
    (tmp_path / "alignments.json").write_text("{broken")
    with pytest.raises(FaceswapError, match="not a valid alignments file"):
        Alignments.load(tmp_path / "alignments.json")
    (tmp_path / "alignments.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(FaceswapError, match="version"):
        Alignments.load(tmp_path / "alignments.json")


def test_encode_keeps_a_valid_png():
    import cv2

    data = encode_face_png(np.full((16, 16, 3), 7, np.uint8), {"a": 1})
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (16, 16, 3)


def test_face_png_is_lossless_at_odd_sizes_and_refuses_other_arrays():
    import cv2

    rng = np.random.default_rng(1)
    for h, w in [(1, 1), (3, 5), (37, 20)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        decoded = cv2.imdecode(np.frombuffer(encode_face_png(image, {}), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decoded[..., ::-1], image)  # libpng reads our Up-filtered rows exactly
    with pytest.raises(FaceswapError, match="uint8"):
        encode_face_png(np.zeros((4, 4), np.uint8), {})
    with pytest.raises(FaceswapError, match="uint8"):
        encode_face_png(np.zeros((4, 4, 3), np.float32), {})

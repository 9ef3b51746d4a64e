"""Integration: extract on the four real clips in ../shared/data/faces (never committed)."""

import numpy as np
import pytest

from conftest import REAL_CLIPS, requires_real_clips
from faceswap.extract import ExtractConfig, run_extract
from faceswap.faces.align import template_points
from faceswap.faces.detect import DetectorConfig, FaceDetector
from faceswap.faces.store import Alignments, read_face_png

pytestmark = [pytest.mark.integration, requires_real_clips()]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    out = tmp_path_factory.mktemp("real_faces")
    summary = run_extract(ExtractConfig(inputs=list(REAL_CLIPS.values()), output=out), show_progress=False)
    assert not summary.errors
    return out, summary


@pytest.mark.parametrize("clip", sorted(REAL_CLIPS))
def test_a_face_in_at_least_98_percent_of_frames(extracted, clip):
    out, _ = extracted
    al = Alignments.load(out / "alignments.json")
    entry = al.sources[str(REAL_CLIPS[clip].resolve())]
    with_face = sum(1 for faces in entry["frames"].values() if faces)
    assert len(entry["frames"]) == entry["frame_count"]  # every frame was read
    assert with_face / entry["frame_count"] >= 0.98, f"{clip}: {with_face}/{entry['frame_count']}"


def test_aligned_crops_put_landmarks_on_the_template(extracted):
    out, _ = extracted
    al = Alignments.load(out / "alignments.json")
    files = sorted(f for f in al.face_files())[::10]
    crops = np.stack([read_face_png(out / f)[0] for f in files])
    # Re-detect at full crop resolution, independent of the extraction's downscaling.
    detector = FaceDetector(DetectorConfig(detect_size=crops.shape[1], min_face=64))
    errors = []
    for i in range(0, len(crops), 16):
        for faces in detector.detect(crops[i : i + 16]):
            if faces:
                errors.append(np.linalg.norm(faces[0].landmarks - template_points(crops.shape[1]), axis=1).mean())
    assert len(errors) >= 0.95 * len(files)
    median = float(np.median(errors)) / crops.shape[1]
    print(f"median landmark error on re-detection: {median:.2%} of the crop size over {len(errors)} crops")
    assert median <= 0.03


def test_default_tracking_equals_full_detection_on_clip_a():
    """Clip A (head down, where an O-net-only tracker once drifted ~50 px): with the default
    keyframe interval every frame's faces and landmarks equal a whole-pyramid detection."""
    from faceswap.faces.track import track_faces
    from faceswap.video import FrameReader

    detector = FaceDetector()
    gaps = []
    for _, frames in FrameReader(REAL_CLIPS["A"]).chunks(ExtractConfig.batch_size):
        for full, tracked in zip(detector.detect(frames), track_faces(detector, frames, DetectorConfig().redetect_every)):
            assert len(full) == len(tracked)
            gaps += [np.abs(a.landmarks - b.landmarks).max() for a, b in zip(full, tracked)]
    assert len(gaps) >= 0.98 * 354
    assert max(gaps) < 0.5  # px on 512 px frames (measured: 0.0 on every frame)

"""Our batched MTCNN cascade (faces.cascade) against facenet-pytorch's own `detect_face`."""

import cv2
import numpy as np
import pytest
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
from facenet_pytorch.models.utils.detect_face import detect_face
from torch.nn.functional import interpolate

from conftest import moving_photo_frames, photo_face
from faceswap.faces.cascade import detect_faces, resample_images, resample_regions, summed_area
from faceswap.faces.detect import FaceDetector
from faceswap.synthetic import IDENTITY_A, render_clip

THRESHOLDS = (0.6, 0.7, 0.7)


@pytest.fixture(scope="module")
def eager_nets():
    return tuple(net().eval() for net in (PNet, RNet, ONet))


def _frames() -> np.ndarray:
    """`(9, 240, 320, 3)`: a photo moving over a plain background, the same face cut by the frame's
    top-left corner (facenet clips candidate crops to the frame), rendered faces, an empty frame."""
    frames = list(moving_photo_frames(4))
    corner = np.float32([[0.6, 0, -95], [0, 0.6, -80]])  # the face runs off the top-left corner
    frames.append(cv2.warpAffine(photo_face(), corner, (320, 240), borderValue=(90, 110, 130)))
    frames += [img for img, _ in render_clip(IDENTITY_A, 3, (240, 320), seed=5, fps=1.0)]
    frames.append(np.full((240, 320, 3), 128, np.uint8))
    return np.stack(frames)


def _facenet(frames, nets, min_face):
    with torch.inference_mode():
        boxes, points = detect_face(frames, min_face, *nets, list(THRESHOLDS), 0.709, "cpu")
    return boxes, points


def test_same_faces_boxes_and_landmarks_as_facenet(eager_nets):
    frames = _frames()
    for min_face in (20, 40):
        boxes, points = _facenet(frames, eager_nets, min_face)
        with torch.inference_mode():
            ours = detect_faces(frames, eager_nets, min_face, THRESHOLDS)
        assert sum(len(b) for b in boxes) >= 6  # faces were found (photo frames, the cut face, renders)
        for i, (b, p, det) in enumerate(zip(boxes, points, ours)):
            assert len(det.boxes) == len(b), f"frame {i}"
            if len(b):
                np.testing.assert_allclose(det.boxes, b[:, :4], atol=1e-3, err_msg=f"frame {i}")
                np.testing.assert_allclose(det.scores, b[:, 4], atol=1e-5)
                np.testing.assert_allclose(det.landmarks, p, atol=1e-3)
    assert len(ours[-1].boxes) == 0  # the empty frame


def test_detector_nets_give_facenets_results(eager_nets):
    """FaceDetector's CPU nets (a oneDNN graph when TorchScript allows) change nothing measurable."""
    frames = _frames()
    detector = FaceDetector()
    with torch.inference_mode():
        ref = detect_faces(frames, eager_nets, 20, THRESHOLDS)
        got = detect_faces(frames, detector.nets, 20, THRESHOLDS)
    for a, b in zip(ref, got):
        assert len(a.boxes) == len(b.boxes)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-2)


@pytest.mark.parametrize("size", [(154, 154), (37, 52), (240, 320), (13, 300)])
def test_area_resampling_equals_torch_interpolate(size):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 240, 320, 3), dtype=np.uint8)
    table = summed_area(images)
    ref = interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=size, mode="area")
    ours = resample_images(table, size) / 0.0078125 + 127.5
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)
    # Regions of different images, sizes and aspect ratios, each to a square.
    image, y0, x0, h, w = (np.array(v) for v in ([0, 2, 1, 2], [0, 10, 200, 3], [0, 77, 5, 300], [240, 31, 40, 5], [320, 31, 9, 20]))
    ours = resample_regions(table, image, y0, x0, h, w, 24) / 0.0078125 + 127.5
    for k in range(4):
        crop = torch.from_numpy(images[image[k], y0[k] : y0[k] + h[k], x0[k] : x0[k] + w[k]]).permute(2, 0, 1)[None].float()
        torch.testing.assert_close(ours[k : k + 1], interpolate(crop, size=(24, 24), mode="area"), atol=1e-3, rtol=0)


def test_skipping_fine_levels_keeps_large_faces_and_misses_small_ones():
    photo = photo_face()
    frame = np.full((480, 720, 3), (90, 110, 130), np.uint8)
    frame[5:475, 10:411] = cv2.resize(photo, (401, 470), interpolation=cv2.INTER_AREA)
    frame[300:350, 560:603] = cv2.resize(photo, (43, 50), interpolation=cv2.INTER_AREA)
    nets = FaceDetector().nets
    with torch.inference_mode():
        (full,) = detect_faces(frame[None], nets, 12, THRESHOLDS)
        (coarse,) = detect_faces(frame[None], nets, 12, THRESHOLDS, max_scale=48 / 171)
    sizes = sorted(float(max(b[2] - b[0], b[3] - b[1])) for b in full.boxes)
    assert len(sizes) == 2 and sizes[0] < 25 < 150 < sizes[1]  # a ~20 px and a ~170 px face
    big = int(np.argmax(full.boxes[:, 2] - full.boxes[:, 0]))
    assert len(coarse.boxes) == 1  # the fine levels that find the 20 px face were skipped
    np.testing.assert_allclose(coarse.boxes[0], full.boxes[big], atol=1e-3)
    np.testing.assert_allclose(coarse.landmarks[0], full.landmarks[big], atol=1e-3)


def test_detector_split_over_threads_gives_the_same_faces():
    frames = _frames()
    one, three = FaceDetector().detect(frames), FaceDetector(threads=3).detect(frames)
    assert [len(f) for f in one] == [len(f) for f in three]
    for a, b in zip(one, three):
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fb.landmarks, fa.landmarks, atol=1e-3)
    assert FaceDetector(threads=3).detect(frames[:1])[0][0].size == one[0][0].size  # fewer frames than threads

"""Paste masks: the landmark-fitted face ellipse (turned heads) and its use through face_masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceswap.convert.mask import crop_landmarks, face_masks, face_turn, landmark_face_masks
from faceswap.errors import FaceswapError
from faceswap.faces.align import FACE_ELLIPSE_CENTRE, alignment_matrices, face_units_to_crop, template_face_mask, template_points
from faceswap.synthetic import IDENTITY_A, Pose, render_face


def _template(size: int, coverage: str = "face", b: int = 1) -> torch.Tensor:
    return torch.tensor(template_points(size, coverage), dtype=torch.float64)[None].repeat(b, 1, 1)


def _turned_crop_landmarks(yaw: float, size: int = 64, roll: float = 0.0) -> torch.Tensor:
    """Crop-pixel landmarks `(1, 5, 2)` of the synthetic head turned by `yaw` degrees, aligned as convert does."""
    _, lm = render_face(IDENTITY_A, Pose(yaw=yaw, roll=roll), size=(240, 256))
    return crop_landmarks(lm[None], alignment_matrices(lm[None], size, "face"))


def _halves(mask: torch.Tensor, size: int) -> tuple[float, float]:
    """Mask mass left and right of the template ellipse's centre column."""
    cx = int(round(face_units_to_crop(np.array(FACE_ELLIPSE_CENTRE), size, "face")[0]))
    m = mask[0, 0]
    return float(m[:, :cx].sum()), float(m[:, cx + 1:].sum())


@pytest.mark.parametrize("coverage", ["tight", "face", "head"])
@pytest.mark.parametrize("size", [64, 128])
def test_template_landmarks_give_the_template_mask(size, coverage):
    got = landmark_face_masks(_template(size, coverage), size, coverage)
    assert got.shape == (1, 1, size, size) and got.dtype == torch.float32
    assert torch.allclose(got[0], template_face_mask(size, coverage), atol=1e-5)


def test_frontal_jitter_stays_close_to_the_template():
    # Half-pixel landmark noise at 128 px (a frontal face after convert's smoothing) barely moves the mask.
    g = torch.Generator().manual_seed(0)
    lm = _template(128, b=8) + 0.5 * torch.randn(8, 5, 2, generator=g, dtype=torch.float64)
    assert face_turn(lm).abs().max() < 0.05
    diff = (landmark_face_masks(lm, 128, "face") - template_face_mask(128, "face")).abs()
    assert diff.mean() < 0.01 and diff.amax((1, 2, 3)).max() < 0.5


@pytest.mark.parametrize("yaw", [20.0, -20.0, 30.0, -30.0])
def test_turned_head_shrinks_the_far_side_only(yaw):
    size = 64
    lm = _turned_crop_landmarks(yaw, size)
    assert math.copysign(1, face_turn(lm).item()) == math.copysign(1, yaw)  # + yaw: nose to the image right
    tl, tr = _halves(template_face_mask(size, "face")[None], size)
    nl, nr = _halves(landmark_face_masks(lm, size, "face"), size)
    far, near = (nr / tr, nl / tl) if yaw > 0 else (nl / tl, nr / tr)
    assert far < (0.85 if abs(yaw) < 25 else 0.75), f"far side kept {far:.2f} of the template"
    assert near > 0.995, f"near side kept only {near:.2f} of the template"


def test_far_side_narrows_steadily_with_the_turn_and_never_inside_the_far_eye():
    size = 128
    widths = []
    for shift in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):  # nose moved right by this many interocular distances
        lm = _template(size)
        lm[0, 2, 0] += shift * (lm[0, 1, 0] - lm[0, 0, 0])
        mask = landmark_face_masks(lm, size, "face")
        ny = round(float(lm[0, 2, 1]))
        row = mask[0, 0, ny]  # along the nose's row
        widths.append(int((row[size // 2:] > 0.5).sum()))
        ex, ey = (int(v) for v in lm[0, 1].round())
        assert mask[0, 0, ey, ex] == 1.0  # the far eye stays inside, the edge ~0.2 face units beyond it
        assert mask[0, 0, ey, ex + round(0.2 * size / 4)] > 0.4
        assert (row[: size // 2] > 0.5).sum() == (template_face_mask(size, "face")[0, ny, : size // 2] > 0.5).sum()
    assert widths == sorted(widths, reverse=True) and widths[0] - widths[-1] >= 8, widths
    assert widths[1] >= widths[0] - 1  # inside the dead zone: jitter, not a turn


@pytest.mark.parametrize("moved", [(0, 1), (3, 4)])
def test_gaze_or_a_twisted_mouth_alone_is_no_turn(moved):
    # MTCNN's eye points follow the pupils (cross-eyed, looking aside) and grimaces pull the mouth
    # sideways: either alone, with the nose in place, must keep the template, not cut into the cheek.
    size = 128
    lm = _template(size)
    lm[0, list(moved), 0] -= 0.17 * (lm[0, 1, 0] - lm[0, 0, 0])
    assert face_turn(lm).item() == 0.0
    assert torch.allclose(landmark_face_masks(lm, size, "face")[0], template_face_mask(size, "face"), atol=1e-5)
    lm[0, 2, 0] -= 0.3 * (lm[0, 1, 0] - lm[0, 0, 0])  # the nose off both: a real turn, to the left
    assert face_turn(lm).item() < -0.1


def test_tiny_turns_either_way_give_the_same_mask():
    lm = _template(64, b=2)
    iod = float(lm[0, 1, 0] - lm[0, 0, 0])
    lm[0, 2, 0] += 0.002 * iod
    lm[1, 2, 0] -= 0.002 * iod
    m = landmark_face_masks(lm, 64, "face")
    assert (m[0] - m[1]).abs().max() < 1e-3


def test_residual_roll_turns_the_ellipse():
    size, angle = 128, math.radians(8.0)
    lm = _template(size)
    c = torch.tensor(face_units_to_crop(np.array(FACE_ELLIPSE_CENTRE), size, "face"))
    rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64)
    lm = (lm - c) @ rot.T + c
    m = landmark_face_masks(lm, size, "face")[0, 0].double()
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    w = m / m.sum()
    mx, my = (w * xs).sum(), (w * ys).sum()
    cov = torch.tensor([[(w * (xs - mx) ** 2).sum(), (w * (xs - mx) * (ys - my)).sum()],
                        [(w * (xs - mx) * (ys - my)).sum(), (w * (ys - my) ** 2).sum()]])
    major = torch.linalg.eigh(cov).eigenvectors[:, -1]
    got = math.degrees(math.atan2(-float(major[0]), float(major[1])))  # angle of the long axis from vertical
    got = (got + 90) % 180 - 90
    assert abs(got - 8.0) < 1.0, got
    assert abs(float(mx) - float(c[0])) < 0.5 and abs(float(my) - float(c[1])) < 0.5  # turned about its centre


def test_batch_faces_are_independent_and_in_range():
    lms = torch.cat([_turned_crop_landmarks(25.0), _template(64), _turned_crop_landmarks(-15.0, roll=10.0)])
    together = landmark_face_masks(lms, 64, "face")
    assert together.shape == (3, 1, 64, 64)
    assert together.min() >= 0 and together.max() <= 1 and ((together > 0) & (together < 1)).any()  # feathered
    for i in range(3):
        assert torch.equal(together[i:i + 1], landmark_face_masks(lms[i:i + 1], 64, "face"))
    assert not torch.allclose(together[0], together[2])


def test_face_masks_uses_landmarks_with_erode_blur_and_border_rules():
    size = 64
    lm = _turned_crop_landmarks(25.0, size)
    template = face_masks(1, size, "face")
    base = face_masks(1, size, "face", landmarks=lm)
    assert torch.equal(base[..., 1:-1, 1:-1], landmark_face_masks(lm, size, "face")[..., 1:-1, 1:-1])
    assert base.sum() < 0.95 * template.sum()
    assert torch.equal(face_masks(1, size, "face", landmarks=_template(size)), template)  # template landmarks: no change
    eroded, grown = face_masks(1, size, "face", erode=5, landmarks=lm), face_masks(1, size, "face", erode=-5, landmarks=lm)
    blurred = face_masks(1, size, "face", blur=5, landmarks=lm.numpy())
    assert eroded.sum() < base.sum() < grown.sum()
    assert ((blurred > 0.02) & (blurred < 0.98)).sum() > ((base > 0.02) & (base < 0.98)).sum()
    assert grown[..., 0, :].max() == 0 and grown[..., :, -1].max() == 0 and blurred[..., -1, :].max() == 0
    learned = torch.full((1, 1, size, size), 0.5)
    assert torch.equal(face_masks(1, size, "face", learned=learned, landmarks=lm)[..., 1:-1, 1:-1], learned[..., 1:-1, 1:-1])
    with pytest.raises(FaceswapError):
        face_masks(2, size, "face", landmarks=lm)
    with pytest.raises(FaceswapError):
        landmark_face_masks(torch.zeros(1, 4, 2), size, "face")
    with pytest.raises(FaceswapError):
        landmark_face_masks(lm, size, "wide")


def test_crop_landmarks_land_on_the_template():
    # Template landmarks placed in a frame with rotation, scale and offset come back onto the template.
    a = math.radians(17.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    frame_lm = (template_points(4) - [2.0, 1.5]) @ rot.T * 52.0 + [171.3, 118.6]
    got = crop_landmarks(frame_lm[None], alignment_matrices(frame_lm[None], 128, "face"))
    assert got.shape == (1, 5, 2)
    assert np.abs(got[0].numpy() - template_points(128, "face")).max() < 1e-6

import math

import numpy as np
import pytest
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.align import (COVERAGES, alignment_matrices, invert_affine, template_eye_mouth_mask,
                                  template_face_mask, template_points, umeyama, warp_faces)


def _similarity(angle, scale, tx, ty):
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float64)


@pytest.mark.parametrize("angle,scale,tx,ty", [(0.0, 1.0, 0.0, 0.0), (0.4, 2.5, 10.0, -30.0), (-2.8, 0.3, 100.0, 7.5)])
def test_umeyama_recovers_known_similarity(angle, scale, tx, ty):
    rng = np.random.default_rng(1)
    src = torch.tensor(rng.uniform(0, 500, size=(3, 5, 2)))
    truth = _similarity(angle, scale, tx, ty)
    dst = src @ truth[:, :2].T + truth[:, 2]
    m = umeyama(src, dst)
    assert m.shape == (3, 2, 3)
    assert torch.allclose(m, truth.expand(3, 2, 3), atol=1e-4)


def test_umeyama_never_reflects():
    # A mirrored face is best matched by a rotation and scale, never by a flip.
    src = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 2.0], [0.5, 4.0], [2.0, 5.0]])
    mirrored = src * torch.tensor([-1.0, 1.0])
    m = umeyama(src, mirrored)
    assert torch.det(m[:, :2]) > 0


def test_template_points_follow_coverage():
    for cov, (span, _) in COVERAGES.items():
        pts = template_points(256, cov)
        assert np.isclose(pts[1, 0] - pts[0, 0], 256 / span)  # interocular distance = size / span
        assert np.isclose((pts[0, 0] + pts[1, 0]) / 2, 128)  # eyes centred horizontally
    with pytest.raises(FaceswapError):
        template_points(256, "nope")


@pytest.mark.parametrize("face_scale", [0.8, 3.3])  # 3.3 exercises the anti-alias pyramid path
def test_warp_puts_landmarks_on_template(face_scale):
    size = 128
    frame = torch.zeros(1, 1, 800, 900)
    lm = template_points(size) * face_scale + np.array([150.0, 60.0])
    rot = _similarity(0.3, 1.0, 0, 0)[:, :2].numpy()
    centre = lm.mean(0)
    lm = (lm - centre) @ rot.T + centre
    yy, xx = torch.meshgrid(torch.arange(800.0), torch.arange(900.0), indexing="ij")
    for x, y in lm:  # soft dots centred exactly on the landmarks
        frame[0, 0] += torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * (2.0 * face_scale) ** 2))
    m = alignment_matrices(lm[None], size)
    crop = warp_faces(frame, m, size)[0, 0]
    for tx, ty in template_points(size):
        x0, y0 = int(round(tx)), int(round(ty))
        win = crop[y0 - 4 : y0 + 5, x0 - 4 : x0 + 5]
        ys, xs = torch.meshgrid(torch.arange(y0 - 4.0, y0 + 5), torch.arange(x0 - 4.0, x0 + 5), indexing="ij")
        cx, cy = (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()
        assert abs(cx - tx) < 0.25 and abs(cy - ty) < 0.25
    back = invert_affine(m)
    pts = torch.tensor(template_points(size)) @ back[0, :, :2].T + back[0, :, 2]
    assert torch.allclose(pts, torch.tensor(lm), atol=1e-6)


def test_masks_cover_face_and_features():
    mask = template_face_mask(128)
    eyes_mouth = template_eye_mouth_mask(128)
    assert mask.shape == eyes_mouth.shape == (1, 128, 128)
    pts = template_points(128).round().astype(int)
    for x, y in pts:
        assert mask[0, y, x] == 1.0 and eyes_mouth[0, y, x] > 0.9 or (x, y) == tuple(pts[2])
    assert mask[0, 0, 0] == 0 and mask[0, -1, -1] == 0
    assert eyes_mouth[0, pts[2, 1], pts[2, 0]] == 0  # nose tip is neither eye nor mouth

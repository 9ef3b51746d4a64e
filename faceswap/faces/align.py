"""Face alignment: a fixed 5-point template, Umeyama similarity fits, and the crop warps.

The template lives in *face units*: the distance between the eye centres is 1, the origin is the
midpoint between the eyes, x grows to the image right and y grows down. MTCNN's landmark order is
kept everywhere: left eye, right eye, nose tip, left mouth corner, right mouth corner (left/right
as seen in the image).

A crop is a square of side `span` face units centred `centre_y` face units below the eyes; the
`coverage` names below choose how much of the head it shows:

========  =====  ========  =====================================================================
coverage   span  centre_y  what the crop shows
========  =====  ========  =====================================================================
tight      3.0     0.75     eyebrows to chin, cheek to cheek (like recognition crops)
face       4.0     0.50     hairline to chin with some background at the sides (default; swaps)
head       5.5     0.35     the whole head with hair and a little neck
========  =====  ========  =====================================================================
"""

from __future__ import annotations

import math

import cv2
import kornia
import numpy as np
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.coverage import COVERAGES, DEFAULT_COVERAGE

# Mean frontal face in face units (eye midpoint origin, interocular distance 1).
TEMPLATE_FACE_UNITS = np.array(
    [
        [-0.50, 0.00],  # left eye
        [0.50, 0.00],  # right eye
        [0.00, 0.58],  # nose tip
        [-0.41, 1.15],  # left mouth corner
        [0.41, 1.15],  # right mouth corner
    ],
    dtype=np.float64,
)

# The face ellipse of `template_face_mask` (convert pastes inside it), in face units.
FACE_ELLIPSE_CENTRE = (0.0, 0.62)
FACE_ELLIPSE_AXES = (1.08, 1.45)


def _coverage(coverage: str) -> tuple[float, float]:
    if coverage not in COVERAGES:
        raise FaceswapError(f"unknown coverage {coverage!r} (choose from {', '.join(COVERAGES)})")
    return COVERAGES[coverage]


def face_units_to_crop(points: np.ndarray, size: int, coverage: str = DEFAULT_COVERAGE) -> np.ndarray:
    """Map face-unit coordinates `(..., 2)` to pixel coordinates of a `size` x `size` crop."""
    span, centre_y = _coverage(coverage)
    scale = size / span
    out = np.asarray(points, dtype=np.float64) * scale
    out[..., 0] += size / 2.0
    out[..., 1] += size / 2.0 - centre_y * scale
    return out


def template_points(size: int, coverage: str = DEFAULT_COVERAGE) -> np.ndarray:
    """The 5 template landmarks in crop pixels, `(5, 2)` float64 (pixel centres at integers)."""
    return face_units_to_crop(TEMPLATE_FACE_UNITS, size, coverage)


def umeyama(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity transforms (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), batched and without reflections.

    Args:
        src: `(B, N, 2)` or `(N, 2)` points.
        dst: same shape as `src`.
    Returns:
        `(B, 2, 3)` (or `(2, 3)`) matrices M with dst ~= M[:, :2] @ src + M[:, 2].
    """
    squeeze = src.dim() == 2
    if squeeze:
        src, dst = src[None], dst[None]
    src = src.to(torch.float64)
    dst = dst.to(torch.float64)
    n = src.shape[1]
    mu_src, mu_dst = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = (src_c**2).sum((1, 2)) / n
    cov = dst_c.transpose(1, 2) @ src_c / n  # (B, 2, 2)
    u, s, vh = torch.linalg.svd(cov)
    # Flip the last singular direction where the best orthogonal map would be a reflection.
    d = torch.ones_like(s)
    d[:, -1] = torch.sign(torch.det(u) * torch.det(vh))
    rot = u @ torch.diag_embed(d) @ vh
    scale = (s * d).sum(1) / var_src.clamp_min(1e-12)
    linear = scale[:, None, None] * rot
    trans = mu_dst.transpose(1, 2) - linear @ mu_src.transpose(1, 2)
    m = torch.cat([linear, trans], dim=2)
    return m[0] if squeeze else m


def alignment_matrices(landmarks: torch.Tensor | np.ndarray, size: int, coverage: str = DEFAULT_COVERAGE) -> torch.Tensor:
    """Matrices that map frame pixels to aligned-crop pixels.

    Args:
        landmarks: `(B, 5, 2)` MTCNN landmarks in frame pixels.
    Returns:
        `(B, 2, 3)` float64 frame -> crop similarity transforms.
    """
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64))
    dst = torch.as_tensor(template_points(size, coverage)).expand_as(lm)
    return umeyama(lm, dst)


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """Invert `(B, 2, 3)` affine matrices (crop -> frame from frame -> crop)."""
    return kornia.geometry.transform.invert_affine_transform(m)


def matrix_scale(m: torch.Tensor) -> torch.Tensor:
    """Uniform scale of `(B, 2, 3)` similarity matrices, `(B,)`."""
    return torch.sqrt(torch.abs(torch.det(m[:, :, :2])))


def reduction_levels(scale: float) -> int:
    """How many times to halve a frame before warping it at `scale` (crop px per frame px): each
    halving doubles the scale; stop once it is above 0.5 (bilinear is fine there)."""
    return int(max(0, math.floor(-math.log2(max(scale, 1e-6)) - 1e-9)))


def warp_faces(frames: torch.Tensor, matrices: torch.Tensor, size: int) -> torch.Tensor:
    """Cut aligned square crops out of frames.

    Strong downscales are first area-reduced by powers of two (2x2 means, as OpenCV's INTER_AREA)
    so the crop does not alias; measured ~10x cheaper on CPU than a Gaussian pyramid of the frame.

    Args:
        frames: `(B, 3, H, W)` float images, one per face (repeat a frame for several faces).
        matrices: `(B, 2, 3)` frame -> crop matrices.
        size: crop side in pixels.
    Returns:
        `(B, 3, size, size)` crops, same dtype as `frames`.
    """
    m = matrices.to(frames.dtype)
    levels = reduction_levels(matrix_scale(m).max().item())
    if levels > 0:
        factor = 2**levels
        h, w = frames.shape[-2:]
        frames = torch.nn.functional.avg_pool2d(frames[..., : h - h % factor, : w - w % factor], factor)
        # A factor-f reduction maps pixel x (centres at integers) to (x + 0.5) / f - 0.5.
        pre = torch.tensor([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]], dtype=m.dtype)
        m = m @ torch.cat([pre, torch.tensor([[0.0, 0.0, 1.0]], dtype=m.dtype)])[None]
    return kornia.geometry.transform.warp_affine(
        frames, m, (size, size), mode="bilinear", padding_mode="border", align_corners=True
    )


def cut_faces(frames: np.ndarray, owner: list[int], matrices: torch.Tensor, size: int) -> np.ndarray:
    """Aligned crops of faces in uint8 frames, with `warp_faces`'s geometry done by OpenCV.

    As `warp_faces` does for one face: area-reduce the frame by the power of two that brings the
    crop's scale above 0.5, then warp bilinearly with the border replicated. OpenCV does both on
    the uint8 frame, which equals `warp_faces` on float frames to +-1 level of rounding
    (tests/test_extract.py) and measured ~10x cheaper on CPU: 6 -> 0.6 ms/frame on clip A
    (512 px), 20 -> 0.6 on clip D (720x1280), single thread.

    Args:
        frames: `(N, H, W, 3)` uint8 RGB.
        owner: per face, the index of its frame.
        matrices: `(F, 2, 3)` frame -> crop matrices.
    Returns:
        `(F, size, size, 3)` uint8 RGB crops.
    """
    m = matrices.to(torch.float64)
    factors = [2 ** reduction_levels(s) for s in matrix_scale(m).tolist()]
    h, w = frames.shape[1:3]
    crops = np.empty((len(owner), size, size, 3), np.uint8)
    reduced: dict[tuple[int, int], np.ndarray] = {}
    for k, (o, mk, f) in enumerate(zip(owner, m.numpy(), factors)):
        if f > 1:
            if (o, f) not in reduced:
                reduced[o, f] = cv2.resize(frames[o, : h - h % f, : w - w % f], (w // f, h // f), interpolation=cv2.INTER_AREA)
            # Pixel u of the reduced frame is the mean of frame pixels f*u .. f*u+f-1 (centre f*u + (f-1)/2).
            mk = np.concatenate([mk[:, :2] * f, mk[:, 2:] + mk[:, :2].sum(1, keepdims=True) * (f - 1) / 2], 1)
        src = reduced[o, f] if f > 1 else frames[o]
        crops[k] = cv2.warpAffine(src, mk, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crops


def _ellipse(size: int, coverage: str, centre: tuple[float, float], axes: tuple[float, float], feather: float) -> torch.Tensor:
    """A soft ellipse given in face units, rendered into a `(size, size)` crop; values in [0, 1]."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    c = face_units_to_crop(np.array(centre), size, coverage)
    span, _ = _coverage(coverage)
    px = size / span
    r = torch.sqrt(((xs - c[0]) / (axes[0] * px)) ** 2 + ((ys - c[1]) / (axes[1] * px)) ** 2)
    # 1 inside, 0 outside, a linear ramp `feather` (fraction of the radius) wide across the edge.
    return ((1.0 + feather / 2 - r) / max(feather, 1e-6)).clamp(0, 1)


def template_face_mask(size: int, coverage: str = DEFAULT_COVERAGE, feather: float = 0.15, radius: float = 1.0) -> torch.Tensor:
    """Soft mask of the face (brows to chin, cheek to cheek) on the template, `(1, size, size)` in [0, 1];
    `radius` scales the ellipse's axes."""
    axes = (FACE_ELLIPSE_AXES[0] * radius, FACE_ELLIPSE_AXES[1] * radius)
    return _ellipse(size, coverage, centre=FACE_ELLIPSE_CENTRE, axes=axes, feather=feather)[None]


def template_eye_mouth_mask(size: int, coverage: str = DEFAULT_COVERAGE) -> torch.Tensor:
    """Soft mask of the eyes and mouth on the template, `(1, size, size)` in [0, 1]."""
    left = _ellipse(size, coverage, (-0.5, 0.0), (0.32, 0.2), 0.3)
    right = _ellipse(size, coverage, (0.5, 0.0), (0.32, 0.2), 0.3)
    mouth = _ellipse(size, coverage, (0.0, 1.15), (0.62, 0.32), 0.3)
    return torch.maximum(torch.maximum(left, right), mouth)[None]

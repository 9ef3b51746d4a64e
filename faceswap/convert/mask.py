"""Where the swapped face is pasted: a soft mask per face, in aligned-crop pixels.

The base mask is the template face ellipse of `faces.align` (brows to chin, feathered), the same
ellipse fitted to each face's own landmarks (`landmark_face_masks`: on a turned head the far-side
edge comes in so it stays on the visible cheek), or the model's learned mask when it has one.
`erode` and `blur` are percentages of the crop side, so they mean the same on a 64 px and a 128 px
model: erode > 0 shrinks the mask towards the face centre (hides the swap's edge), < 0 grows it;
blur widens the feathered edge (a softer seam).
"""

from __future__ import annotations

import functools
import math

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from faceswap.choices import MASK_SOURCES  # noqa: F401  (re-exported: convert validates against it)
from faceswap.errors import FaceswapError
from faceswap.faces.align import FACE_ELLIPSE_AXES, FACE_ELLIPSE_CENTRE, face_units_to_crop, template_face_mask
from faceswap.faces.coverage import COVERAGES


# The occlusion net's probability p -> how much of the swap is kept: all below OCCLUDED_FROM, none
# above OCCLUDED_TO, linear between (a soft step, so a strand's partial coverage stays partial).
OCCLUDED_FROM, OCCLUDED_TO = 0.35, 0.65
# Before that, a grey-level closing (dilate, then erode) of the probabilities by this percent of the
# side: fills the holes the net leaves where an occluder's texture looks like skin (a tabby cat
# on a mug read as face in patches) without growing the occluder's outline.
OCCLUSION_CLOSE = 2.0

# Head turn from 5 aligned landmarks (`face_turn`: the nose tip's sideways offset over the
# interocular distance; 0 frontal, ~0.2 at the strongest turns in clips A-D). The far-side
# half-width of the face ellipse (face units) shrinks by TURN_GAIN per unit of turn beyond
# TURN_DEAD_ZONE (landmark jitter and expressions on frontal faces stay below it), but its edge
# never comes closer than FAR_EYE_MARGIN (face units) to the far eye: the cheek's outline is
# always beyond the eye. Fitted by eye on clips A-D (at turn 0.2 the far cheek's outline was
# ~0.2 face units beyond the far eye, the template's edge ~0.45).
TURN_DEAD_ZONE = 0.03
TURN_GAIN = 2.3
FAR_EYE_MARGIN = 0.2
MAX_ROLL_DEGREES = 15.0  # residual roll the alignment left; more is a landmark error, not a roll


def erode_mask(mask: torch.Tensor, percent: float) -> torch.Tensor:
    """Grey-level erosion (percent > 0) or dilation (< 0) of `(B, 1, S, S)` masks by `percent` of S."""
    radius = round(abs(percent) / 100.0 * mask.shape[-1])
    if radius == 0:
        return mask
    k = 2 * radius + 1

    def square_max(x: torch.Tensor) -> torch.Tensor:
        # a k x k max as a row max then a column max: the same square, ~k/2 times fewer compares
        # (one 11 x 11 max_pool2d on a 256 px mask took 10 ms on one core)
        return F.max_pool2d(F.max_pool2d(x, (1, k), stride=1, padding=(0, radius)), (k, 1), stride=1, padding=(radius, 0))

    if percent > 0:
        # min filter = 1 - max filter of the complement
        return 1.0 - square_max(1.0 - mask)
    return square_max(mask)


def blur_mask(mask: torch.Tensor, percent: float) -> torch.Tensor:
    """Gaussian blur of `(B, 1, S, S)` masks with sigma = `percent` of S."""
    sigma = percent / 100.0 * mask.shape[-1]
    if sigma < 0.3:
        return mask
    k = 2 * math.ceil(3 * sigma) + 1
    return kornia.filters.gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="constant")


def crop_landmarks(landmarks: torch.Tensor | np.ndarray, matrices: torch.Tensor) -> torch.Tensor:
    """Frame-pixel landmarks `(B, 5, 2)` mapped through `(B, 2, 3)` frame -> crop matrices
    (`faces.align.alignment_matrices`) into crop pixels, `(B, 5, 2)` float64."""
    lm = torch.as_tensor(np.asarray(landmarks, dtype=np.float64))
    m = matrices.to(torch.float64)
    return lm @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]


def face_turn(landmarks: torch.Tensor) -> torch.Tensor:
    """Signed head turn of `(B, 5, 2)` landmarks (any pixels), `(B,)`: > 0 when the nose points to
    the image right (the far cheek is on the right), ~0.2 at the strongest turns of clips A-D.

    The nose tip stands out of the face, so on a turned head it moves off both the eye midpoint
    and the mouth-corner midpoint (measured along the eye line, over the interocular distance;
    the two agree on clip A's turns, within 0.1). Gaze and grimaces move only one of them (MTCNN's
    eye points follow the pupils: cross-eyed frames of clip B read -0.17 from the eyes, -0.05 from
    the mouth), so the turn is the smaller of the two where they agree in sign and 0 where not.
    """
    lm = landmarks.to(torch.float32)
    eye = lm[:, 1] - lm[:, 0]
    iod2 = (eye**2).sum(-1).clamp_min(1e-12)
    from_eyes = ((lm[:, 2] - lm[:, :2].mean(1)) * eye).sum(-1) / iod2
    from_mouth = ((lm[:, 2] - lm[:, 3:].mean(1)) * eye).sum(-1) / iod2
    agree = (from_eyes * from_mouth) > 0
    return torch.where(agree, torch.sign(from_eyes) * torch.minimum(from_eyes.abs(), from_mouth.abs()), 0.0)


@functools.lru_cache(maxsize=16)
def _ellipse_grid(size: int, coverage: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The template ellipse's centre `(2,)` in crop pixels and every pixel's offset from it, `(S, S)` x and y."""
    c = torch.tensor(face_units_to_crop(np.array(FACE_ELLIPSE_CENTRE), size, coverage), dtype=torch.float32, device=device)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32, device=device),
                            torch.arange(size, dtype=torch.float32, device=device), indexing="ij")
    return c, xs - c[0], ys - c[1]


def landmark_face_masks(landmarks: torch.Tensor | np.ndarray, size: int, coverage: str, feather: float = 0.15,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """The template face ellipse fitted to each face's landmarks, `(B, 1, S, S)` float in [0, 1].

    The alignment (a similarity fit to all 5 points) already placed and scaled the face, so the
    ellipse keeps the template's centre, axes and feather; it turns with the residual roll of the
    eye line, and on a turned head (`face_turn`) its far half narrows towards the far eye, so it
    hugs the visible cheek instead of reaching into the background beside it. The near half and
    frontal faces keep the template (template landmarks give `template_face_mask` exactly).

    Args:
        landmarks: `(B, 5, 2)` MTCNN-order landmarks in crop pixels (`crop_landmarks`).
        size: crop side S; coverage: the crops' coverage.
        feather: edge ramp width as a fraction of the radius (as `template_face_mask`).
    """
    lm = torch.as_tensor(landmarks if isinstance(landmarks, torch.Tensor) else np.asarray(landmarks, np.float64))
    if lm.dim() != 3 or lm.shape[1:] != (5, 2):
        raise FaceswapError(f"landmark masks need (faces, 5, 2) landmarks, got shape {tuple(lm.shape)}")
    if coverage not in COVERAGES:
        raise FaceswapError(f"unknown coverage {coverage!r} (choose from {', '.join(COVERAGES)})")
    lm = lm.to(device=device, dtype=torch.float32)
    if not torch.isfinite(lm).all():
        raise FaceswapError("landmark masks need finite landmarks")
    px = size / COVERAGES[coverage][0]  # crop pixels per face unit
    c, dx, dy = _ellipse_grid(size, coverage, lm.device)
    a, b = FACE_ELLIPSE_AXES[0] * px, FACE_ELLIPSE_AXES[1] * px

    eye = lm[:, 1] - lm[:, 0]
    roll = torch.atan2(eye[:, 1], eye[:, 0]).clamp(-math.radians(MAX_ROLL_DEGREES), math.radians(MAX_ROLL_DEGREES))
    cos, sin = torch.cos(roll)[:, None], torch.sin(roll)[:, None]
    turn = face_turn(lm)
    # Far half-width: shrunk with the turn, but the edge (mask 0.5) stays FAR_EYE_MARGIN beyond
    # the far eye on the eye's row. The far eye in the ellipse's frame (u along the eye line):
    far_eye = torch.where((turn > 0)[:, None], lm[:, 1], lm[:, 0]) - c  # (B, 2)
    far_u = (cos[:, 0] * far_eye[:, 0] + sin[:, 0] * far_eye[:, 1]).abs()
    far_v = cos[:, 0] * far_eye[:, 1] - sin[:, 0] * far_eye[:, 0]
    floor = (far_u + FAR_EYE_MARGIN * px) / torch.sqrt((1 - (far_v / b) ** 2).clamp_min(0.25))
    shrunk = a - TURN_GAIN * px * (turn.abs() - TURN_DEAD_ZONE).clamp_min(0)
    a_far = torch.maximum(shrunk, floor.clamp(max=a))

    cos, sin = cos[:, :, None], sin[:, :, None]
    u = cos * dx + sin * dy  # (B, S, S), along the (rolled) eye line
    v = cos * dy - sin * dx
    half = torch.where(u * turn[:, None, None] > 0, a_far[:, None, None], a)
    r = torch.sqrt((u / half) ** 2 + (v / b) ** 2)
    # Same ramp as faces.align._ellipse: 1 inside, 0 outside, `feather` of the radius across the edge.
    return ((1.0 + feather / 2 - r) / max(feather, 1e-6)).clamp(0, 1)[:, None]


def face_masks(n: int, size: int, coverage: str, erode: float = 0.0, blur: float = 0.0,
               learned: torch.Tensor | None = None, device: torch.device | str = "cpu",
               landmarks: torch.Tensor | np.ndarray | None = None, occlusion: torch.Tensor | None = None) -> torch.Tensor:
    """Paste masks for `n` faces.

    Args:
        n, size: batch size and crop side S.
        coverage: the crops' coverage (places the template ellipse).
        erode, blur: percent of S (see module docs).
        learned: the model's `(n, 1, S, S)` masks, used instead of the template when given.
        landmarks: `(n, 5, 2)` landmarks in crop pixels (`crop_landmarks`): without `learned`,
            the ellipse follows each face (`landmark_face_masks`) instead of the fixed template.
        occlusion: `(n, 1, s, s)` occlusion probabilities (`model.occlusion.occlusion_probs`, any side s,
            resized to S after their closing):
            where something is in front of the face the mask falls to 0, after erode and blur (an
            eroded or blurred face edge must not eat into or smear the occluder's own edge).
    Returns:
        `(n, 1, S, S)` float masks in [0, 1].
    """
    if not -50 <= erode <= 50 or not 0 <= blur <= 50:
        raise FaceswapError(f"mask erode {erode}% / blur {blur}% out of range (erode -50..50, blur 0..50)")
    if learned is not None:
        mask = learned.float().clamp(0, 1)
    elif landmarks is not None:
        if len(landmarks) != n:
            raise FaceswapError(f"mask landmarks for {len(landmarks)} faces, expected {n}")
        mask = landmark_face_masks(landmarks, size, coverage, device=device)
    else:
        mask = template_face_mask(size, coverage).to(device)[None].expand(n, 1, size, size)
    mask = blur_mask(erode_mask(mask, erode), blur)
    if occlusion is not None:
        # closed at the side it comes at (the net's 128 px: a quarter of the work at 256), then resized
        closed = erode_mask(erode_mask(occlusion.float(), -OCCLUSION_CLOSE), OCCLUSION_CLOSE)
        if closed.shape[-1] != size:
            closed = F.interpolate(closed, size=(size, size), mode="bilinear", align_corners=False)
        keep = 1.0 - ((closed - OCCLUDED_FROM) / (OCCLUDED_TO - OCCLUDED_FROM)).clamp(0, 1)
        mask = mask * keep.to(mask.device)
    # Nothing may reach the crop's border: outside the crop there is no swapped face to show.
    border = torch.ones(1, 1, size, size, device=mask.device)
    border[..., 0, :] = border[..., -1, :] = 0
    border[..., :, 0] = border[..., :, -1] = 0
    return (mask * border).contiguous()

"""Occlusions (issue #15): what passes in front of the face must stay in front of the swap.

Occluders with a known anti-aliased alpha are composited (`frame * (1 - a) + rgb * a`) over a real
clip's frames, placed from the clip's landmarks (the interocular distance `d` is the unit) and
moving so that each enters the face, stays and leaves within its own segment of the clip (--frames,
default 60; the first and last sixth of a segment are occluder-free, entering and leaving take a
sixth each, the middle third is fully in). The textures are real photographs from `skimage.data`
(the occlusion mask is trained on procedural occluders only, so the bench must not be):

- hand:    palm ellipse + 4 finger capsules + thumb + wrist, skin-toned luminance of a photo
           (gravel, grass, coffee or camera) with soft shading, rising from below the chin over
           the mouth and chin, then going back down;
- object:  a mug (rounded body + handle) wrapped in a colour photo (coffee, rocket, chelsea,
           astronaut, hubble), cylindrically shaded, sliding across the lower face;
- strands: 6-12 hair-like cubic curves, 1-3 px wide at frame scale, dark or blond, over the
           forehead, eyes and cheeks, swaying a little every frame, falling in from above;
- glasses: a frame (two rounded rims around the eyes, bridge, temples towards the ears), 3-6 px
           thick, black or tortoiseshell (a photo's luminance), following the eyes; lenses clear.

Each occluded segment goes through convert's own `FaceSwapper` (the landmarks of --alignments,
unsmoothed; all masks see the same frames and landmarks) once per mask: "template", "landmarks"
(today's default) and "occlusion" when it can be built (needs `occlusion.safetensors` in the model
folder; otherwise the bench says so and reports the others). Ground truth: T = occluder alpha > 1/2.
R = the face region the landmarks mask pastes on the CLEAN frame (its alpha > 1/2), O = T inside R,
alpha = the tested mask's paste alpha on the occluded frame, K = {alpha < 1/2}. Per kind and mask:

- occ_iou:   IoU of O and K inside R, pooled over the frames where O is not empty. Target >= 0.90;
- face_kept: share of the visible face R \\ O still swapped (alpha >= 1/2), all frames. Target >= 0.95;
- halo_px:   wrongly decided pixels (O pasted over, plus R \\ O not pasted within 0.5 d of T; holes
             far from any occluder are face_kept's business) / the length of T's boundary in R
             (|dilate(T) - erode(T)| / 2, 3x3): the mean width of the error band, in px. A mask that
             ignores the occluder scores its whole area / perimeter;
- flicker:   sum over consecutive frame pairs of |(alpha_t - alpha_t-1) - (ideal_t - ideal_t-1)|
             over R_t & R_t-1, ideal = clean landmarks alpha * (1 - occluder alpha), / the summed mean
             boundary length (pairs with an occluder in either frame): px of mask-edge motion per
             frame the truth does not explain. A mask that ignores occluders scores the occluder's
             own motion (it does not follow it), a perfect one 0;
- clean frames (no occluder drawn): area_ratio = sum alpha / sum alpha of the landmarks mask (the
  occlusion mask: 0.98..1.02; vs the template mask in the JSON too), and mean SSIM / PSNR of the
  output vs the landmarks-mask output over R's bounding box (PSNR of the pooled error; inf = identical);
- cost: frames per second of process CPU time in `FaceSwapper.swap`, per mask (chunks of 16, masks
  interleaved chunk by chunk in rotating order, a warm-up chunk each, torch and OpenCV at 1 thread;
  CPU time so the shared box's load does not decide it) and the ratio to landmarks (target >= 0.70).

Prints one table per kind (pass/MISS against the targets for every mask; today's masks paint over
every occluder, so their occ_iou is ~0), a pooled table and the cost; --json writes everything.
Writes a PNG strip per kind and all together to --out (default a temp dir, never the repo: the
clips are real people): 4 frames (entering, in, in, leaving) x occluded source | landmarks swap |
occlusion swap | occlusion alpha | ideal alpha, cropped around the face at 1x.

    python bench/occlusion.py --model /work/runs/m_AB --alignments /work/runs/faces_A/alignments.json \\
        [--clip ../shared/data/faces/A_lp_d3.mp4] [--direction a2b] [--kinds hand object strands glasses] \\
        [--frames 60] [--out DIR] [--json PATH] [--seed 0]

--model is required (trained models are not in the repo). Without --alignments the landmarks come
from MTCNN. Needs scikit-image (the dev extra) for the textures and SSIM. Deterministic given --seed
(the frame rate aside). Clip A, 4 kinds x 60 frames, 3 masks: ~70 s of CPU time on one core (2.5 min
wall; up to 13 min at nice 19 on the shared 2-core box with training jobs beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceswap.atomic import atomic_write_bytes  # noqa: E402
from faceswap.convert.swap import ConvertConfig, FaceSwapper, StageTimer  # noqa: E402
from faceswap.errors import FaceswapError  # noqa: E402
from faceswap.faces.store import Alignments  # noqa: E402
from faceswap.model.autoencoder import load_model  # noqa: E402
from faceswap.provenance import payload_bits  # noqa: E402
from faceswap.video import FrameReader, probe  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "faces"
DEFAULT_CLIP = SHARED / "A_lp_d3.mp4"
KINDS = ("hand", "object", "strands", "glasses")
MASKS = ("template", "landmarks", "occlusion")
TARGETS = {"occ_iou": (0.90, None), "face_kept": (0.95, None), "area_ratio": (0.98, 1.02), "fps_ratio": (0.70, None)}
SS = 4  # supersampling of the occluder shapes (their alpha is the area-reduced coverage)
CHUNK = 16  # frames per FaceSwapper.swap call, as convert's default batch
HALO_REACH = 0.5  # R \ O pixels left unswapped count as halo within this many d of the occluder
STRIP_AT = (0.25, 0.42, 0.58, 0.75)  # where in a segment the strip frames are: entering, in, in, leaving


# --- geometry --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceFrame:
    """Face coordinates from `(5, 2)` landmarks: origin the eye centre, unit the interocular distance
    `d` px, x towards the image-right eye, y towards the mouth (eyes at (+-0.5, 0))."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    d: float
    mouth_y: float

    @classmethod
    def of(cls, lm: np.ndarray) -> "FaceFrame":
        eyes = (lm[0] + lm[1]) / 2
        d = float(np.linalg.norm(lm[1] - lm[0]))
        u = (lm[1] - lm[0]) / d
        v = np.array([-u[1], u[0]])
        return cls(eyes, u, v, d, float(((lm[3] + lm[4]) / 2 - eyes) @ v / d))

    def px(self, pts) -> np.ndarray:
        """`(..., 2)` face units -> frame px."""
        pts = np.asarray(pts, np.float64)
        return self.origin + self.d * (pts[..., :1] * self.u + pts[..., 1:2] * self.v)

    def matrix(self, centre, angle: float, scale: float) -> np.ndarray:
        """`(2, 3)` affine: local units (rotated by `angle`, `scale` px each) about `centre` -> frame px."""
        c, s = np.cos(angle), np.sin(angle)
        basis = np.stack([c * self.u + s * self.v, -s * self.u + c * self.v], 1) * scale
        return np.concatenate([basis, self.px(centre)[:, None]], 1)


def rotate(pts, angle: float, centre=(0.0, 0.0)) -> np.ndarray:
    """`(N, 2)` points rotated by `angle` (rad) about `centre`."""
    c, s = np.cos(angle), np.sin(angle)
    return (np.asarray(pts, np.float64) @ np.array([[c, s], [-s, c]])) + np.asarray(centre)


def ellipse_pts(ax: float, ay: float, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([ax * np.cos(t), ay * np.sin(t)], 1)


def capsule_pts(p0, p1, r: float, n: int = 16) -> np.ndarray:
    """Outline of the segment p0-p1 thickened by r (round caps)."""
    p0, p1 = np.asarray(p0, np.float64), np.asarray(p1, np.float64)
    a = np.arctan2(*(p1 - p0)[::-1])
    t1 = np.linspace(a - np.pi / 2, a + np.pi / 2, n)
    t0 = np.linspace(a + np.pi / 2, a + 3 * np.pi / 2, n)
    arc = lambda c, t: c + r * np.stack([np.cos(t), np.sin(t)], 1)  # noqa: E731
    return np.concatenate([arc(p1, t1), arc(p0, t0)])


def rounded_rect_pts(w: float, h: float, r: float, n: int = 8) -> np.ndarray:
    """Outline of a w x h rectangle centred at 0 with corner radius r."""
    out = []
    for cx, cy, a0 in ((w / 2 - r, h / 2 - r, 0), (-w / 2 + r, h / 2 - r, 0.5), (-w / 2 + r, -h / 2 + r, 1), (w / 2 - r, -h / 2 + r, 1.5)):
        t = np.linspace(a0 * np.pi, (a0 + 0.5) * np.pi, n)
        out.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1))
    return np.concatenate(out)


def bezier(p0, p1, p2, p3, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + t**3 * p3


class Canvas:
    """Shapes drawn at SS x the frame's resolution (frame px in), area-reduced to a coverage alpha."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.img = np.zeros((h * SS, w * SS), np.uint8)

    def _c(self, pts) -> np.ndarray:  # frame px (pixel centres at integers) -> canvas, 2 fractional bits
        return np.round(((np.asarray(pts, np.float64) + 0.5) * SS - 0.5) * 4).astype(np.int32).reshape(-1, 1, 2)

    def fill(self, pts) -> None:
        cv2.fillPoly(self.img, [self._c(pts)], 255, cv2.LINE_8, shift=2)

    def line(self, pts, width_px: float, closed: bool = False) -> None:
        cv2.polylines(self.img, [self._c(pts)], closed, 255, max(1, round(width_px * SS)), cv2.LINE_8, shift=2)

    def alpha(self) -> np.ndarray:
        return cv2.resize(self.img, (self.w, self.h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


# --- textures --------------------------------------------------------------------------------------------

_TEXTURES: dict[str, np.ndarray] = {}


def texture(name: str) -> np.ndarray:
    """A `skimage.data` photo as `(h, w, 3)` float32 RGB in [0, 1] (grey ones repeated)."""
    if name not in _TEXTURES:
        import skimage.data

        img = getattr(skimage.data, name)().astype(np.float32) / 255
        _TEXTURES[name] = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img[..., :3]
    return _TEXTURES[name]


def detail(name: str, sigma: float = 8.0) -> np.ndarray:
    """A photo's luminance, high-passed (Gaussian `sigma` px) and normalised: `(h, w, 1)` float32,
    zero mean, unit std."""
    lum = texture(name) @ np.array([0.299, 0.587, 0.114], np.float32)
    hp = lum - cv2.GaussianBlur(lum, (0, 0), sigma)
    return ((hp - hp.mean()) / (hp.std() + 1e-6))[..., None]


def placed(img: np.ndarray, to_frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """`img` warped into the frame: `to_frame` maps img px about its centre to frame px."""
    h, w = img.shape[:2]
    m = to_frame @ np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], np.float64)
    out = cv2.warpAffine(img, m, (hw[1], hw[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out if out.ndim == 3 else out[..., None]


def inside_depth(alpha: np.ndarray, scale: float) -> np.ndarray:
    """How deep inside the shape each pixel is, 0 at the edge -> 1 at `scale` px in (for shading)."""
    dist = cv2.distanceTransform((alpha > 0.05).astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(dist / scale, 0, 1)


# --- occluders ---------------------------------------------------------------------------------------------


def schedule(n: int) -> list[float | None]:
    """Per frame of a segment: None (no occluder), else s in [-1, 1]: -1 entering from outside,
    0 fully in, +1 gone out the other side (smoothstep ramps)."""
    a, b, c, e = n / 6, n / 3, 2 * n / 3, 5 * n / 6
    smooth = lambda x: x * x * (3 - 2 * x)  # noqa: E731
    out: list[float | None] = []
    for t in range(n):
        if t < a or t >= e:
            out.append(None)
        elif t < b:
            out.append(smooth((t - a) / (b - a)) - 1)
        elif t < c:
            out.append(0.0)
        else:
            out.append(smooth((t - c) / (e - c)))
    return out


class Hand:
    """Palm ellipse + 4 fingers + thumb + wrist, rising from below the chin over the mouth."""

    def __init__(self, rng: np.random.Generator):
        self.x = rng.uniform(-0.3, 0.3)
        self.tilt = rng.uniform(-0.2, 0.2)
        self.side = rng.choice([-1.0, 1.0])  # thumb side
        self.phase = rng.uniform(0, 2 * np.pi)
        tones = np.array([[0.86, 0.64, 0.50], [0.78, 0.56, 0.42], [0.64, 0.44, 0.31], [0.48, 0.32, 0.22]], np.float32)
        self.skin = np.clip(tones[rng.integers(len(tones))] * rng.uniform(0.92, 1.05), 0, 1)
        # Stochastic photos only (no object outlines): pores from the fine band, blotches from a coarse one.
        self.tex, self.blotch = (str(n) for n in rng.permutation(["gravel", "grass"]))
        self.tex_px = rng.uniform(0.5, 0.8)  # frame px per texture px

    def render(self, ff: FaceFrame, s: float, t: int, hw) -> tuple[np.ndarray, np.ndarray]:
        angle = self.tilt + 0.06 * np.sin(0.2 * t + self.phase)
        centre = np.array([self.x + 0.05 * np.sin(0.13 * t), ff.mouth_y + 1.35 + 2.3 * abs(s)])
        parts = [ellipse_pts(0.62, 0.75), capsule_pts((0, 0.3), (0, 3.5), 0.42)]
        for bx, length, fan in zip((-0.4, -0.13, 0.14, 0.4), (0.95, 1.15, 1.1, 0.9), (-0.1, -0.03, 0.03, 0.1)):
            base = np.array([bx, -0.5])
            parts.append(capsule_pts(base, base + length * np.array([np.sin(fan), -np.cos(fan)]), 0.13))
        thumb = np.array([0.5 * self.side, 0.1])
        parts.append(capsule_pts(thumb, thumb + 0.7 * np.array([0.75 * self.side, -0.66]), 0.15))
        canvas = Canvas(*hw)
        for p in parts:
            canvas.fill(ff.px(rotate(p, angle) + centre))
        alpha = canvas.alpha()
        fine = placed(detail(self.tex, 2.0), ff.matrix(centre, angle, self.tex_px), hw)
        coarse = placed(cv2.GaussianBlur(detail(self.blotch, 24.0), (0, 0), 6)[..., None], ff.matrix(centre, angle, 1.0), hw)
        coarse = coarse / (coarse.std() + 1e-6)
        shade = 0.62 + 0.38 * np.sqrt(inside_depth(alpha, 0.2 * ff.d))[..., None]
        rgb = self.skin * shade * (1 + 0.05 * np.clip(fine, -2.5, 2.5) + 0.05 * np.clip(coarse, -2.5, 2.5))
        return alpha, np.clip(rgb, 0, 1)


class Mug:
    """A mug wrapped in a photo, sliding horizontally across the lower face."""

    def __init__(self, rng: np.random.Generator):
        self.tex = str(rng.choice(["coffee", "rocket", "chelsea", "astronaut", "hubble_deep_field"]))
        self.way = rng.choice([-1.0, 1.0])
        self.y = rng.uniform(0.15, 0.45)
        self.w, self.h = rng.uniform(0.9, 1.15), rng.uniform(1.1, 1.4)
        self.phase = rng.uniform(0, 2 * np.pi)

    def render(self, ff: FaceFrame, s: float, t: int, hw) -> tuple[np.ndarray, np.ndarray]:
        angle = 0.05 * np.sin(0.1 * t + self.phase)
        centre = np.array([self.way * 3.0 * s + 0.08 * np.sin(0.17 * t + self.phase), ff.mouth_y + self.y])
        canvas = Canvas(*hw)
        body = rounded_rect_pts(self.w, self.h, 0.12)
        canvas.fill(ff.px(rotate(body, angle) + centre))
        handle = ellipse_pts(0.28, 0.36) + np.array([-self.way * self.w / 2, -0.05])
        canvas.line(ff.px(rotate(handle, angle) + centre), 0.12 * ff.d, closed=True)
        alpha = canvas.alpha()
        img = texture(self.tex)
        px = self.w * ff.d / (0.8 * img.shape[1])  # the photo spans the body's width and then some
        rgb = placed(img, ff.matrix(centre, angle, px), hw)
        # Cylindrical shading across the body, about its axis.
        yy, xx = np.mgrid[: hw[0], : hw[1]]
        rel = (np.stack([xx, yy], -1) - ff.px(centre)) @ (np.cos(angle) * ff.u + np.sin(angle) * ff.v) / (ff.d * self.w / 2)
        shade = 0.62 + 0.38 * np.sqrt(np.clip(1 - rel**2, 0, 1))
        return alpha, np.clip(rgb * shade[..., None], 0, 1)


class Strands:
    """6-12 hair-like curves, 1-3 px wide, falling in over the forehead, eyes and cheeks, swaying."""

    def __init__(self, rng: np.random.Generator):
        n = int(rng.integers(6, 13))
        self.root = np.stack([rng.uniform(-1.3, 1.3, n), rng.uniform(-1.6, -1.1, n)], 1)
        self.end = np.stack([self.root[:, 0] + rng.uniform(-0.5, 0.5, n), rng.uniform(-0.1, 1.2, n)], 1)
        self.bulge = rng.uniform(-0.35, 0.35, (n, 2))
        self.width = rng.uniform(1.0, 3.0, n)
        self.amp, self.freq, self.phase = rng.uniform(0.03, 0.1, n), rng.uniform(0.15, 0.35, n), rng.uniform(0, 2 * np.pi, n)
        blond = rng.random() < 0.5
        base = np.array([0.80, 0.66, 0.42] if blond else [0.16, 0.11, 0.08], np.float32)
        self.colour = np.clip(base[None] * rng.uniform(0.8, 1.2, (n, 1)), 0, 1)
        self.tex = str(rng.choice(["grass", "chelsea"]))

    def render(self, ff: FaceFrame, s: float, t: int, hw) -> tuple[np.ndarray, np.ndarray]:
        rise = np.array([0.0, -2.8 * abs(s)])
        alpha = np.zeros(hw, np.float32)
        rgb = np.zeros((*hw, 3), np.float32)
        for k in range(len(self.root)):
            p0, p3 = self.root[k] + rise, self.end[k] + rise
            sway = np.array([self.amp[k] * np.sin(self.freq[k] * t + self.phase[k]), 0.0])
            p1 = p0 + (p3 - p0) / 3 + self.bulge[k] + sway * 0.4
            p2 = p0 + 2 * (p3 - p0) / 3 + self.bulge[k] * 0.5 + sway
            canvas = Canvas(*hw)
            canvas.line(ff.px(bezier(p0, p1, p2, p3 + sway * 1.3)), self.width[k])
            a = canvas.alpha()
            rgb = rgb * (1 - a[..., None]) + self.colour[k] * a[..., None]  # later strands lie on top
            alpha = alpha + a * (1 - alpha)
        tex = placed(detail(self.tex), ff.matrix((0, 0), 0.0, 0.5), hw)
        return alpha, np.clip(rgb / np.maximum(alpha, 1e-6)[..., None] * (1 + 0.15 * np.clip(tex, -2.5, 2.5)), 0, 1)


class Glasses:
    """A glasses frame following the eyes: rims, bridge, temples; lowered on from above."""

    def __init__(self, rng: np.random.Generator):
        self.thick = rng.uniform(3.0, 6.0)
        self.hh, self.hw_ = rng.uniform(0.24, 0.32), rng.uniform(0.40, 0.45)
        self.y = rng.uniform(-0.02, 0.06)
        self.tortoise = rng.random() < 0.5

    def render(self, ff: FaceFrame, s: float, t: int, hw) -> tuple[np.ndarray, np.ndarray]:
        lift = np.array([0.0, self.y - 2.4 * abs(s)])
        canvas = Canvas(*hw)
        rim = rounded_rect_pts(2 * self.hw_, 2 * self.hh, 0.11)
        top = -self.hh * 0.55
        for side in (-1, 1):
            canvas.line(ff.px(rim + np.array([0.5 * side, 0.0]) + lift), self.thick, closed=True)
            outer = np.array([side * (0.5 + self.hw_), top])
            canvas.line(ff.px(np.stack([outer, outer + np.array([side * 0.5, -0.04])]) + lift), self.thick)
        inner = 0.5 - self.hw_
        bridge = bezier(np.array([-inner, top]), np.array([-inner / 2, top - 0.08]), np.array([inner / 2, top - 0.08]),
                        np.array([inner, top]), 12)
        canvas.line(ff.px(bridge + lift), self.thick)
        alpha = canvas.alpha()
        if self.tortoise:
            lum = placed(texture("chelsea"), ff.matrix(lift, 0.0, 0.6), hw) @ np.array([0.299, 0.587, 0.114], np.float32)
            rgb = np.array([0.10, 0.05, 0.02], np.float32) + np.array([0.55, 0.32, 0.12], np.float32) * (lum[..., None] ** 1.5)
        else:
            tex = placed(detail("gravel"), ff.matrix(lift, 0.0, 0.5), hw)
            rgb = np.full((*hw, 3), 0.07, np.float32) * (1 + 0.5 * np.clip(tex, -1.5, 2.5))
        return alpha, np.clip(rgb, 0, 1)


OCCLUDERS = {"hand": Hand, "object": Mug, "strands": Strands, "glasses": Glasses}


def composite(frame: np.ndarray, alpha: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return np.clip(np.round(frame * (1 - a) + rgb * 255 * a), 0, 255).astype(np.uint8)


# --- figures -----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Pooled sums for one (occluder kind, mask); see the module docs for what each figure means."""

    inter: float = 0.0
    union: float = 0.0
    kept: float = 0.0
    visible: float = 0.0
    wrong: float = 0.0
    edge: float = 0.0
    flick: float = 0.0
    flick_edge: float = 0.0
    area: float = 0.0
    area_ref: float = 0.0
    ssim: list = field(default_factory=list)
    sq_err: float = 0.0  # clean frames: summed squared error vs the landmarks output over R's boxes, and its count
    sq_n: float = 0.0
    frames: int = 0
    occluded: int = 0
    clean: int = 0

    def add(self, other: "Tally") -> None:
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def figures(self) -> dict[str, float]:
        div = lambda a, b: a / b if b else float("nan")  # noqa: E731
        return {"occ_iou": div(self.inter, self.union), "face_kept": div(self.kept, self.visible),
                "halo_px": div(self.wrong, self.edge), "flicker": div(self.flick, self.flick_edge),
                "area_ratio": div(self.area, self.area_ref), "ssim": float(np.mean(self.ssim)) if self.ssim else float("nan"),
                "psnr": psnr(self.sq_err, self.sq_n),
                "frames": self.frames, "occluded_frames": self.occluded, "clean_frames": self.clean}


def edge_length(truth: np.ndarray, region: np.ndarray) -> float:
    """Length in px of the boundary of `truth` inside `region`: |dilate - erode| / 2 (3x3)."""
    t = truth.astype(np.uint8)
    k = np.ones((3, 3), np.uint8)
    band = (cv2.dilate(t, k) > 0) & ~(cv2.erode(t, k) > 0)
    return float((band & region).sum()) / 2


def psnr(sq_err: float, count: float) -> float:
    """PSNR in dB of pooled squared errors; inf for identical pixels, NaN for none."""
    if not count:
        return float("nan")
    return float(10 * np.log10(255.0**2 * count / sq_err)) if sq_err > 0 else float("inf")


@dataclass
class Truth:
    """One frame's ground truth: region R, occluder alpha and T, O, ideal alpha, boundary length, near-occluder zone."""

    index: int
    region: np.ndarray
    occ_alpha: np.ndarray
    truth: np.ndarray
    occ: np.ndarray
    ideal: np.ndarray
    edge: float
    near: np.ndarray
    drawn: bool

    @classmethod
    def of(cls, index: int, clean_alpha: np.ndarray, occ_alpha: np.ndarray, d: float, drawn: bool) -> "Truth":
        region = clean_alpha > 0.5
        truth = occ_alpha > 0.5
        occ = truth & region
        if truth.any():
            near = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 3) <= HALO_REACH * d
        else:
            near = np.zeros_like(truth)
        return cls(index, region, occ_alpha, truth, occ, clean_alpha * (1 - occ_alpha), edge_length(truth, region), near, drawn)


def tally_frame(tl: Tally, tr: Truth, alpha: np.ndarray, prev: tuple[Truth, np.ndarray] | None,
                out: np.ndarray, ref_out: np.ndarray, ref_alpha: np.ndarray) -> None:
    """Add one frame's figures for one mask (`alpha`: its paste alpha, `out`: its output frame)."""
    from skimage.metrics import structural_similarity

    r, o = tr.region, tr.occ
    k = alpha < 0.5
    tl.frames += 1
    tl.kept += float((r & ~o & ~k).sum())
    tl.visible += float((r & ~o).sum())
    if o.any():
        tl.occluded += 1
        tl.inter += float((o & k).sum())
        tl.union += float((o | (k & r)).sum())
        tl.wrong += float((o & ~k).sum() + (r & ~o & k & tr.near).sum())
        tl.edge += tr.edge
    if prev is not None and prev[0].index == tr.index - 1 and (tr.edge + prev[0].edge) > 0:
        both = r & prev[0].region
        moved = (alpha - prev[1]) - (tr.ideal - prev[0].ideal)
        tl.flick += float(np.abs(moved[both]).sum())
        tl.flick_edge += (tr.edge + prev[0].edge) / 2
    if not tr.drawn:
        tl.clean += 1
        tl.area += float(alpha.sum())
        tl.area_ref += float(ref_alpha.sum())
        ys, xs = np.nonzero(r)
        if len(ys):
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            a, b = out[y0:y1, x0:x1], ref_out[y0:y1, x0:x1]
            tl.ssim.append(float(structural_similarity(a, b, channel_axis=2, data_range=255)))
            tl.sq_err += float(((a.astype(np.float64) - b) ** 2).sum())
            tl.sq_n += a.size


def verdicts(fig: dict[str, float]) -> list[str]:
    """Names of the targets `fig` misses (NaN figures are not judged)."""
    missed = []
    for name, (lo, hi) in TARGETS.items():
        v = fig.get(name)
        if v is None or not np.isfinite(v):
            continue
        if v < lo or (hi is not None and v > hi):
            missed.append(name)
    return missed


# --- strip -------------------------------------------------------------------------------------------------


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = np.ascontiguousarray(tile)
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, width, cv2.LINE_AA)
    return tile


def crop(img: np.ndarray, ff: FaceFrame, side: int) -> np.ndarray:
    """`side` x `side` crop around the face (clamped into the frame), grey alphas made RGB."""
    if img.ndim == 2:
        img = np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, 2)
    h, w = img.shape[:2]
    side = min(side, h, w)
    cx, cy = ff.px((0.0, 0.55))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return img[y0 : y0 + side, x0 : x0 + side]


def save_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FaceswapError(f"could not encode {path.name} as PNG")
    atomic_write_bytes(path, data.tobytes(), sync=False)


# --- main --------------------------------------------------------------------------------------------------


def landmark_source(alignments: Path | None, clip: Path):
    """`(indices, frames) -> per frame, its faces' (5, 2) landmarks` from alignments.json, else MTCNN."""
    if alignments is not None:
        found = Alignments.load(alignments).find_source(clip)
        if found is None:
            raise FaceswapError(f"{alignments} has no alignments for {clip.name}")
        table = found[1].get("frames", {})
        return lambda idx, frames: [[np.asarray(f["landmarks"], np.float64) for f in table.get(str(i), [])] for i in idx]
    from faceswap.faces.detect import DetectorConfig, FaceDetector

    detector = FaceDetector(DetectorConfig())
    return lambda idx, frames: [[np.asarray(f.landmarks, np.float64) for f in fs] for fs in detector.detect(np.stack(frames))]


def make_swappers(model_dir: Path, direction: str, masks: list[str]) -> tuple[dict[str, FaceSwapper], str | None]:
    """One FaceSwapper per mask; the occlusion one may be unavailable (returns why)."""
    swappers, why = {}, None
    for mask in masks:
        cfg = ConvertConfig(input=Path("-"), output=Path("-.mp4"), model_dir=model_dir, direction=direction, mask=mask)
        try:
            swappers[mask] = FaceSwapper(load_model(model_dir), cfg, torch.device("cpu"), StageTimer(), payload_bits(None))
        except FaceswapError as exc:
            if mask != "occlusion":
                raise
            why = str(exc)
    return swappers, why


def segment_starts(total: int, frames: int, n: int) -> list[int]:
    """Evenly spread, non-overlapping where the clip is long enough."""
    if n == 1 or total <= frames:
        return [0] * n
    return [round(i * (total - frames) / (n - 1)) for i in range(n)]


def run_kind(kind: str, start: int, args, swappers, landmarks_of, timing, strips) -> dict[str, Tally]:
    rng = np.random.default_rng([args.seed, KINDS.index(kind)])
    occluder = OCCLUDERS[kind](rng)
    pairs = list(FrameReader(args.clip, start=start, end=start + args.frames))
    plan = schedule(len(pairs))
    at = {round(p * (len(pairs) - 1)) for p in STRIP_AT}
    ref = swappers["landmarks"]
    tallies = {m: Tally() for m in swappers}
    prev: dict[str, tuple[Truth, np.ndarray]] = {}
    side = None
    for c0 in range(0, len(pairs), CHUNK):
        chunk = pairs[c0 : c0 + CHUNK]
        lms = landmarks_of([i for i, _ in chunk], [f for _, f in chunk])
        keep = [j for j in range(len(chunk)) if lms[j]]
        if not keep:  # no face: nothing to occlude (flicker pairs need consecutive indices anyway)
            continue
        idx = [chunk[j][0] for j in keep]
        clean = [chunk[j][1] for j in keep]
        lms = [lms[j] for j in keep]
        local = [chunk[j][0] - start for j in keep]
        ffs = [FaceFrame.of(max(faces, key=lambda lm: np.linalg.norm(lm[1] - lm[0]))) for faces in lms]
        hw = clean[0].shape[:2]
        occ_alpha, occluded = [], []
        for f, ff, t in zip(clean, ffs, local):
            if plan[t] is None:
                occ_alpha.append(np.zeros(hw, np.float32))
                occluded.append(f)
            else:
                a, rgb = occluder.render(ff, plan[t], t, hw)
                occ_alpha.append(a)
                occluded.append(composite(f, a, rgb))
        clean_alpha: list[np.ndarray] = []
        clean_out = ref.swap(clean, lms, alphas=clean_alpha)
        truths = [Truth.of(i, ca, oa, ff.d, plan[t] is not None) for i, ca, oa, ff, t in zip(idx, clean_alpha, occ_alpha, ffs, local)]
        outs = {}
        order = list(swappers)
        order = order[c0 // CHUNK % len(order):] + order[: c0 // CHUNK % len(order)]  # no mask always first
        for mask in order:
            sw = swappers[mask]
            alphas: list[np.ndarray] = []
            t0 = time.process_time()  # CPU time: the shared box's load does not enter the cost figure
            out = sw.swap(occluded, lms, alphas=alphas)
            timing[mask][0] += time.process_time() - t0
            timing[mask][1] += len(occluded)
            outs[mask] = (out, alphas)
            for j, tr in enumerate(truths):
                p = prev.get(mask)
                tally_frame(tallies[mask], tr, alphas[j], p, out[j], clean_out[j], clean_alpha[j])
                prev[mask] = (tr, alphas[j])
        for j, t in enumerate(local):
            if t not in at:
                continue
            side = side or int(round(2.9 * ffs[j].d))
            tiles = [label(crop(occluded[j], ffs[j], side), f"{kind} #{idx[j]} occluded source"),
                     label(crop(outs["landmarks"][0][j], ffs[j], side), "landmarks mask")]
            if "occlusion" in outs:
                tiles += [label(crop(outs["occlusion"][0][j], ffs[j], side), "occlusion mask"),
                          label(crop(outs["occlusion"][1][j], ffs[j], side), "occlusion alpha")]
            tiles.append(label(crop(truths[j].ideal, ffs[j], side), "ideal alpha (truth)"))
            strips.setdefault(kind, []).append(np.concatenate(tiles, 1))
    return tallies


def table(title: str, rows: dict[str, dict[str, float]]):
    from rich.table import Table

    tab = Table(title=title, title_justify="left")
    for name, just in (("mask", "left"), ("occ_iou >=0.90", "right"), ("face_kept >=0.95", "right"), ("halo px", "right"),
                       ("flicker px/f", "right"), ("clean area 0.98-1.02", "right"), ("clean SSIM", "right"),
                       ("clean PSNR", "right"), ("verdict", "left")):
        tab.add_column(name, justify=just)
    for mask, f in rows.items():
        missed = verdicts(f)
        tab.add_row(mask, f"{f['occ_iou']:.3f}", f"{f['face_kept']:.3f}", f"{f['halo_px']:.1f}", f"{f['flicker']:.2f}",
                    f"{f['area_ratio']:.3f}", f"{f['ssim']:.4f}", f"{f['psnr']:.1f}",
                    "pass" if not missed else "MISS " + ", ".join(missed))
    return tab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="trained model folder (e.g. /work/runs/m_AB)")
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="the source clip (default: clip A of ../shared)")
    ap.add_argument("--alignments", type=Path, default=None, help="extract's alignments.json for the clip (default: MTCNN)")
    ap.add_argument("--direction", default="a2b", choices=["a2b", "b2a"])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--frames", type=int, default=60, help="frames per occluder kind's segment")
    ap.add_argument("--masks", nargs="+", default=list(MASKS), choices=MASKS, help="landmarks is always run (the reference)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the PNG strips (default: a new temp dir)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from rich.console import Console

    console = Console()
    if console.width < 150:  # piped or narrow: keep the tables on one line per row
        console = Console(width=150)
    try:
        if not (args.model / "config.json").exists():
            raise FaceswapError(f"{args.model}: no trained model there (config.json missing)")
        if args.frames < 12:
            raise FaceswapError("--frames must be >= 12")
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        masks = [m for m in MASKS if m in args.masks or m == "landmarks"]
        swappers, why = make_swappers(args.model, args.direction, masks)
        if why is not None:
            console.print(f"[bold yellow]occlusion mask unavailable[/]: {why} (reporting the other masks)")
        landmarks_of = landmark_source(args.alignments, args.clip)
        total = probe(args.clip).frame_count
    except FaceswapError as exc:
        sys.exit(f"error: {exc}")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="faceswap-occlusion-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    starts = segment_starts(total, args.frames, len(args.kinds))
    load0, t_start = os.getloadavg(), time.time()
    console.print(f"occlusion bench: {args.clip.name} ({total} frames), model {args.model}, {args.direction}, masks "
                  f"{' '.join(swappers)}, kinds {' '.join(args.kinds)} x {args.frames} frames, seed {args.seed}; "
                  f"load average {load0[0]:.1f} on {os.cpu_count()} CPUs")
    # Warm-up: one chunk through every swapper before anything is timed.
    warm = [f for _, f in FrameReader(args.clip, start=starts[0], end=starts[0] + min(CHUNK, args.frames))]
    warm_lms = landmarks_of(list(range(starts[0], starts[0] + len(warm))), warm)
    for sw in swappers.values():
        sw.swap(warm, warm_lms)
    timing = {m: [0.0, 0] for m in swappers}
    strips: dict[str, list[np.ndarray]] = {}
    result = {"clip": str(args.clip), "model": str(args.model), "direction": args.direction, "frames": args.frames,
              "seed": args.seed, "masks": list(swappers), "occlusion_unavailable": why, "targets": TARGETS, "kinds": {}}
    pooled = {m: Tally() for m in swappers}
    for kind, start in zip(args.kinds, starts):
        tallies = run_kind(kind, start, args, swappers, landmarks_of, timing, strips)
        rows = {m: t.figures() for m, t in tallies.items()}
        for m, t in tallies.items():
            pooled[m].add(t)
            if "template" in tallies and tallies["template"].area:
                rows[m]["area_vs_template"] = t.area / tallies["template"].area
        n = rows["landmarks"]
        console.print(table(f"{kind}: frames {start}-{start + args.frames - 1} ({n['occluded_frames']} with the occluder on the "
                            f"face, {n['clean_frames']} clean of {n['frames']})", rows))
        result["kinds"][kind] = {"start": start, **{m: {**f, "missed": verdicts(f)} for m, f in rows.items()}}
    rows = {m: t.figures() for m, t in pooled.items()}
    for m, t in pooled.items():
        if "template" in pooled and pooled["template"].area:
            rows[m]["area_vs_template"] = t.area / pooled["template"].area
    console.print(table("all kinds pooled", rows))
    result["pooled"] = {m: {**f, "missed": verdicts(f)} for m, f in rows.items()}
    fps = {m: n / s for m, (s, n) in timing.items() if s}
    cost = {}
    for m, v in fps.items():
        ratio = v / fps["landmarks"]
        cost[m] = {"fps": v, "fps_ratio": ratio, "missed": verdicts({"fps_ratio": ratio})}
        console.print(f"cost {m:9}: {v:6.2f} frames/s of CPU time ({timing[m][1]} occluded frames, 1 thread), {ratio:.2f} x landmarks  "
                      + ("pass" if not cost[m]["missed"] else "MISS") + (" (target >= 0.70)" if m == "occlusion" else ""))
    result["cost"] = cost
    paths = []
    for kind, tiles in strips.items():
        paths.append(out_dir / f"occlusion_{kind}.png")
        save_png(paths[-1], np.concatenate(tiles, 0))
    if strips:
        width = max(t.shape[1] for tiles in strips.values() for t in tiles)
        sheet = np.concatenate([np.pad(t, ((0, 0), (0, width - t.shape[1]), (0, 0))) for tiles in strips.values() for t in tiles], 0)
        paths.append(out_dir / "occlusion_strip.png")
        save_png(paths[-1], sheet)
    load1 = os.getloadavg()
    result.update(strips=[str(p) for p in paths], seconds=time.time() - t_start, load_average=[load0[0], load1[0]])
    if args.json:
        atomic_write_bytes(args.json, json.dumps(result, indent=2, default=float).encode(), sync=False)
    console.print(f"{time.time() - t_start:.0f} s wall (load average {load0[0]:.1f} -> {load1[0]:.1f}); strips: {out_dir}")


if __name__ == "__main__":
    main()

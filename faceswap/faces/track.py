"""Video face detection that skips MTCNN's fine pyramid levels between full detections.

MTCNN finds faces of every size by sliding its first net (P-net, a 12 px window) over an image
pyramid; the fine levels, which look for the smallest faces, are most of its work. In a video the
faces in view change size slowly, so between keyframes the tracker runs only the pyramid levels
whose window covers at least 1/`LEVEL_MARGIN` of the smallest face in view, then MTCNN's full
three-stage cascade on what they propose. Every frame is still a whole-frame detection: nothing but
the choice of levels is carried from frame to frame, so nothing can drift, and a face at least
about as large as those in view is found wherever it appears. On every 3rd-6th frame of the four
shared clips, levels down to 1/3 of the face size gave bit-identical faces and landmarks to full
detection (down to 1/2: up to 16 px apart on clip A, the winning candidate changes), hence 1/4.
With 1/4 and a keyframe every 8 frames, on all 2301 frames of the four clips: same faces, 2300
frames bit-identical, one frame of clip B 1.25 px apart (512 px frames); ~1.4x less detection
work (single thread).

What waits for the next keyframe (every `redetect_every` frames) is a new face much smaller than
those in view. A frame that finds fewer faces than the latest whole-pyramid detection, or a face
that shrank below `SHRINK` of the reference size, is detected again with the whole pyramid.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces.detect import Face, FaceDetector

LEVEL_MARGIN = 4.0  # run levels whose 12 px window is at least 1/4 of the smallest face in view
SHRINK = 0.75  # a face smaller than this times the reference size: redo the frame in full
_WINDOW = 12.0  # P-net's window, px


class FaceTracker:
    """Detect faces in consecutive video frames. Call `reset()` between videos."""

    def __init__(self, detector: FaceDetector, redetect_every: int = 8):
        self.detector = detector
        self.redetect_every = max(1, redetect_every)
        self.reset()

    def reset(self) -> None:
        self.frame = 0  # frames seen since reset
        self.last: list[Face] = []  # faces of the previous frame

    def __call__(self, frames: np.ndarray) -> list[list[Face]]:
        """Faces in each of `(N, H, W, 3)` uint8 RGB consecutive frames, in frame pixels."""
        detector, n = self.detector, len(frames)
        # Keyframes search the whole pyramid (and the first frame, when no face was in view before).
        # Each starts a segment that needs nothing from the frames before it, so a batch's segments
        # run on the detector's threads side by side; a first segment without a keyframe goes on
        # from the faces of the previous frame.
        keys = {i for i in range(n) if (self.frame + i) % self.redetect_every == 0 or (i == 0 and not self.last)}
        bounds = sorted({0, n, *keys})
        segments = [(a, b) for a, b in zip(bounds, bounds[1:])]
        last = self.last

        def run(segment: tuple[int, int], detect) -> list[list[Face]]:
            a, b = segment
            small, factor = detector.downscale(frames[a:b])
            return self._segment(small, factor, a in keys, last, detect)

        if len(segments) > 1 and detector.threads > 1:
            jobs = [detector._pool.submit(run, seg, detector._detect_part) for seg in segments[1:]]
            results = run(segments[0], detector._detect_part) + [faces for job in jobs for faces in job.result()]
        else:  # one segment: the detector splits each of its batches over its threads
            results = [faces for seg in segments for faces in run(seg, detector._detect_small)]
        self.frame += n
        self.last = results[-1]
        return results

    @staticmethod
    def _segment(small: np.ndarray, factor: np.ndarray, key: bool, last: list[Face], detect) -> list[list[Face]]:
        """Faces in one segment's downscaled frames `(n, h, w, 3)` (`factor` `(2,)` small/original):
        the keyframe, if `key`, with the whole pyramid, then the others with the levels the faces
        in view call for (`last`: the faces in view before a segment without keyframe)."""
        n, scale = len(small), float(factor.min())
        factors = np.tile(factor, (n, 1))
        results: list[list[Face]] = [[] for _ in range(n)]
        reference = last  # the latest whole-pyramid answer, or the previous frame's faces
        if key:
            results[0] = reference = detect(small[:1], factors[:1])[0]
        rest = list(range(1 if key else 0, n))
        in_view = [f.size * scale for f in reference]
        redo = rest if not in_view else []  # no face in view: whole pyramid everywhere
        if rest and in_view:
            smallest = min(in_view)
            coarse = detect(small[rest], factors[rest], max_scale=_WINDOW * LEVEL_MARGIN / smallest)
            for i, faces in zip(rest, coarse):
                results[i] = faces
                if len(faces) < len(reference) or any(f.size * scale < SHRINK * smallest for f in faces):
                    redo.append(i)  # a face was lost or shrank: look again with the whole pyramid
        if redo:
            for i, faces in zip(redo, detect(small[redo], factors[redo])):
                results[i] = faces
        return results

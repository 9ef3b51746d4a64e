"""Video face detection that skips MTCNN's fine pyramid levels between full detections.

MTCNN finds faces of every size by sliding its first net (P-net, a 12 px window) over an image
pyramid; the fine levels, which look for the smallest faces, are most of its work. In a video the
faces in view change size slowly, so between keyframes only the pyramid levels run whose window
covers at least 1/`LEVEL_MARGIN` of the smallest face the keyframe found, then MTCNN's full
three-stage cascade on what they propose. Every frame is still a whole-frame detection: nothing but
the choice of levels is carried from the keyframe, so nothing can drift, and a face at least about
as large as those in view is found wherever it appears. On every 3rd-6th frame of the four shared
clips, levels down to 1/3 of the face size gave bit-identical faces and landmarks to full detection
(down to 1/2: up to 16 px apart on clip A, the winning candidate changes), hence 1/4. With 1/4 and
a keyframe every 8 frames, on all 2301 frames of the four clips: same faces and landmarks as full
detection.

A batch of consecutive frames is detected on its own: its first frame is a keyframe, so batches
can be detected side by side (extract runs two at once on CPU). All keyframes of a batch go
through the cascade together, then all frames between them: the nets and the cascade's glue cost
a lot per call, and one frame at a time cost ~2x per frame (measured: single thread, 32-frame
batches, ~20 % less detection CPU than 8-frame segments with a lone keyframe each).

What waits for the next keyframe (every `redetect_every` frames) is a new face much smaller than
those in view. A frame that finds fewer faces than its keyframe, or a face that shrank below
`SHRINK` of the keyframe's smallest, is detected again with the whole pyramid.
"""

from __future__ import annotations

import numpy as np

from faceswap.faces.detect import Face, FaceDetector

LEVEL_MARGIN = 4.0  # run levels whose 12 px window is at least 1/4 of the smallest face in view
SHRINK = 0.75  # a face smaller than this times the keyframe's smallest: redo the frame in full
_WINDOW = 12.0  # P-net's window, px


def track_faces(detector: FaceDetector, frames: np.ndarray, redetect_every: int) -> list[list[Face]]:
    """Faces in each of `(N, H, W, 3)` uint8 RGB consecutive frames, in frame pixels, detected in
    this thread. Frames 0, `redetect_every`, 2 x `redetect_every`, ... search the whole pyramid."""
    small, factor = detector.downscale(frames)
    n, scale, every = len(small), float(factor.min()), max(1, redetect_every)
    factors = np.tile(factor, (n, 1))
    results: list[list[Face]] = [[] for _ in range(n)]

    def detect(indices: list[int], max_scale: float | None = None) -> None:
        for i, faces in zip(indices, detector.detect_downscaled(small[indices], factors[indices], max_scale)):
            results[i] = faces

    keys = list(range(0, n, every))
    detect(keys)
    # Smallest face (detect px) each keyframe found, 0 for none; frame i belongs to keyframe i - i % every.
    smallest = {k: min((f.size * scale for f in results[k]), default=0.0) for k in keys}
    between = [i for i in range(n) if i % every]
    redo = [i for i in between if not smallest[i - i % every]]  # nothing in view: whole pyramid
    coarse = [i for i in between if smallest[i - i % every]]
    if coarse:
        # One call for all: the levels that the smallest face in view calls for (frames whose
        # keyframe saw larger faces get a few more levels than they need, which changes nothing).
        detect(coarse, max_scale=_WINDOW * LEVEL_MARGIN / min(smallest[i - i % every] for i in coarse))
        for i in coarse:
            key = i - i % every
            if len(results[i]) < len(results[key]) or any(f.size * scale < SHRINK * smallest[key] for f in results[i]):
                redo.append(i)  # a face was lost or shrank: look again with the whole pyramid
    if redo:
        detect(sorted(redo))
    return results

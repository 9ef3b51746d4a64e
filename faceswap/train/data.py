"""Face folders -> one uint8 tensor per identity, at the training size, loaded once.

Batches are then drawn by indexing that tensor with random indices on the training device: no
DataLoader, no per-sample Python in the hot path. The last `val_fraction` of each folder (in file
name order, so the end of a clip) is held out: never trained on, used for previews and validation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.align import COVERAGES, DEFAULT_COVERAGE
from faceswap.faces.store import list_images, read_face_png


@dataclass
class FaceSet:
    """One identity's faces.

    Attributes:
        train: `(N, 3, S, S)` uint8 faces to train on.
        held_out: `(M, 3, S, S)` uint8 faces never trained on (preview, validation loss).
        coverage: coverage name of the crops.
        folder: where they came from; `notes`: things worth telling the user (resizes, subsampling).
        train_hr, held_out_hr: the same faces at the refiner's output size `(N|M, 3, R*S, R*S)`, or None.
    """

    train: torch.Tensor
    held_out: torch.Tensor
    coverage: str
    folder: Path
    notes: list[str]
    train_hr: torch.Tensor | None = None
    held_out_hr: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return sum(t.numel() for t in (self.train, self.held_out, self.train_hr, self.held_out_hr) if t is not None)


def face_side(folder: str | Path) -> int | None:
    """Side in px of the first face image in `folder` (None when it has none or it is unreadable):
    what decides how far a refiner can be supervised before the faces are loaded."""
    files = list_images(Path(folder)) if Path(folder).is_dir() else []
    if not files:
        return None
    img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
    return None if img is None else int(min(img.shape[:2]))


def load_faces(folder: str | Path, size: int, val_fraction: float = 0.1, max_bytes: int = 4 << 30, name: str = "",
               hires: int = 0) -> FaceSet:
    """Read every face image directly inside `folder`, resized to `size` x `size` (and, with `hires`,
    also to `hires` x `hires`, from the same file: the refiner's targets).

    Aligned face PNGs written by extract carry their coverage; plain images count as ``"face"``
    coverage. Square images of any size are accepted (resized with area filtering); non-square
    images and mixed coverages are errors. When the faces would take more than `max_bytes`, an
    evenly spaced subset is kept (and said so in `notes`).
    """
    folder = Path(folder)
    label = f"{name} faces" if name else "faces"
    if not folder.is_dir():
        raise FaceswapError(f"{label} folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        raise FaceswapError(f"{label} folder {folder} holds no face images (png/jpg)")
    notes: list[str] = []
    per_face = 3 * (size * size + hires * hires)
    if len(files) * per_face > max_bytes:
        keep = max(1, max_bytes // per_face)
        idx = np.linspace(0, len(files) - 1, keep).round().astype(int)
        notes.append(f"{len(files)} faces exceed the memory budget of {max_bytes / 2**30:.1f} GiB: using {keep} evenly spaced")
        files = [files[i] for i in idx]

    out = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    out_hr = torch.empty(len(files), 3, hires, hires, dtype=torch.uint8) if hires else None
    coverages: Counter[str] = Counter()
    sizes: Counter[int] = Counter()
    for i, path in enumerate(files):
        rgb, meta = read_face_png(path)
        h, w = rgb.shape[:2]
        if h != w:
            raise FaceswapError(f"{path} is {w}x{h}, not a square aligned face (run `faceswap extract` on it first)")
        cov = (meta or {}).get("coverage", DEFAULT_COVERAGE)
        if cov not in COVERAGES:
            raise FaceswapError(f"{path} has unknown coverage {cov!r}")
        coverages[cov] += 1
        sizes[h] += 1
        if out_hr is not None:
            hr = rgb if h == hires else cv2.resize(rgb, (hires, hires), interpolation=cv2.INTER_AREA if h > hires else cv2.INTER_CUBIC)
            out_hr[i] = torch.from_numpy(np.ascontiguousarray(hr)).permute(2, 0, 1)
        if h != size:
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if h > size else cv2.INTER_CUBIC)
        out[i] = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    if len(coverages) > 1:
        raise FaceswapError(f"{label} in {folder} mix coverages ({dict(coverages)}); extract them with one --coverage")
    if len(sizes) > 1:
        notes.append(f"faces of mixed sizes ({', '.join(f'{n}x {s}px' for s, n in sorted(sizes.items()))}): all resized to {size} px")
    if min(sizes) < size:
        notes.append(f"some faces are smaller than the model's {size} px and were upscaled (blurry)")

    n_val = int(round(len(files) * val_fraction)) if val_fraction > 0 else 0
    if val_fraction > 0 and len(files) >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, len(files) - 1)  # always keep one face to train on
    if hires and min(sizes) < hires:
        notes.append(f"some faces are smaller than the refiner's {hires} px targets and were upscaled (it learns less detail)")
    cut = len(files) - n_val
    return FaceSet(out[:cut], out[cut:], coverages.most_common(1)[0][0], folder, notes,
                   out_hr[:cut] if out_hr is not None else None, out_hr[cut:] if out_hr is not None else None)


def sample_indices(n_faces: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` indices drawn uniformly with replacement from `range(n_faces)`, on the generator's device."""
    return torch.randint(n_faces, (n,), generator=generator, device=generator.device)


def sample_batch(faces: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` faces drawn uniformly with replacement: `(N, 3, S, S)` uint8 -> `(n, 3, S, S)` uint8."""
    return faces[sample_indices(len(faces), n, generator).to(faces.device)]

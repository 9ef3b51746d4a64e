"""Paste swapped faces back into their frames through the inverse of the alignment transform.

Each face and its mask are warped (kornia, bilinear, pixel centres at integers as in
`faces.align.warp_faces`) only over the frame region the mask can reach, for the whole batch in one
call, then composited:

- `alpha`: frame * (1 - mask) + face * mask, the feathered mask hides the seam.
- `poisson`: OpenCV's seamlessClone (Poisson image editing) of the face into the frame inside the
  mask, then the same feathered alpha over that, so the clone's own hard boundary never shows.
"""

from __future__ import annotations

import cv2
import kornia
import numpy as np
import torch

from faceswap.errors import FaceswapError
from faceswap.faces.align import invert_affine

BLEND_MODES = ("alpha", "poisson")


def paste_regions(matrices: torch.Tensor, support: tuple[int, int, int, int], frame_size: tuple[int, int]) -> np.ndarray:
    """Frame boxes that the crop region `support` lands in.

    Args:
        matrices: `(B, 2, 3)` frame -> crop transforms.
        support: `(x0, y0, x1, y1)` crop pixels (inclusive) where the masks are non-zero.
        frame_size: `(H, W)`.
    Returns:
        `(B, 4)` int boxes x0, y0, x1, y1 (x1, y1 exclusive), clipped to the frame; empty when off-frame.
    """
    x0, y0, x1, y1 = support
    corners = torch.tensor([[x0, y0, 1.0], [x1, y0, 1.0], [x0, y1, 1.0], [x1, y1, 1.0]], dtype=torch.float64)
    inv = invert_affine(matrices.to(torch.float64))
    pts = corners @ inv.transpose(1, 2)  # (B, 4, 2) frame pixels
    lo = torch.floor(pts.amin(1)) - 1
    hi = torch.ceil(pts.amax(1)) + 2
    h, w = frame_size
    boxes = torch.cat([lo, hi], 1).numpy().astype(np.int64)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def mask_support(masks: torch.Tensor) -> tuple[int, int, int, int]:
    """Inclusive crop-pixel box `(x0, y0, x1, y1)` where any of the `(B, 1, S, S)` masks is visible."""
    visible = (masks > 0.5 / 255).any(0)[0]
    ys = torch.nonzero(visible.any(1)).flatten()
    xs = torch.nonzero(visible.any(0)).flatten()
    if len(xs) == 0:
        return 0, 0, 0, 0
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def warp_back(faces: torch.Tensor, masks: torch.Tensor, matrices: torch.Tensor, boxes: np.ndarray) -> torch.Tensor:
    """Warp crops into their frame boxes, batched at the largest box size.

    Args:
        faces: `(B, 3, S, S)` in [0, 1]; masks: `(B, 1, S, S)`; matrices: `(B, 2, 3)` frame -> crop.
        boxes: `(B, 4)` from `paste_regions`.
    Returns:
        `(B, 4, h, w)` RGB + alpha, face i valid in `[:, :, :box_h_i, :box_w_i]`.
    """
    h = int(max(1, (boxes[:, 3] - boxes[:, 1]).max()))
    w = int(max(1, (boxes[:, 2] - boxes[:, 0]).max()))
    inv = invert_affine(matrices.to(torch.float64)).clone()  # crop -> frame
    inv[:, 0, 2] -= torch.from_numpy(boxes[:, 0]).double()
    inv[:, 1, 2] -= torch.from_numpy(boxes[:, 1]).double()  # crop -> box
    src = torch.cat([faces.float(), masks.float()], 1)
    return kornia.geometry.transform.warp_affine(src, inv.to(src.dtype).to(src.device), (h, w), mode="bilinear",
                                                 padding_mode="zeros", align_corners=True)


def _alpha(region: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 `(h, w, 3)` region, float `(h, w, 3)` rgb in [0, 255] and `(h, w, 1)` alpha -> uint8 composite."""
    out = region.astype(np.float32)
    out += (rgb - out) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _poisson(frame: np.ndarray, box: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """seamlessClone of `rgb` into `frame` over the box; returns the cloned box region or None when
    the mask is empty. seamlessClone centres the mask's bounding box on `p` with integer halves, so
    `p` is chosen to put it back exactly where it came from."""
    x0, y0 = int(box[0]), int(box[1])
    binary = (alpha[..., 0] > 0.05).astype(np.uint8) * 255
    bx, by, bw, bh = cv2.boundingRect(binary)
    if bw < 3 or bh < 3:
        return None
    src = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    p = (x0 + bx + bw // 2, y0 + by + bh // 2)
    try:
        cloned = cv2.seamlessClone(src, frame, binary, p, cv2.NORMAL_CLONE)
    except cv2.error as exc:
        raise FaceswapError(f"poisson blend failed ({str(exc).strip().splitlines()[-1]}); try --blend alpha") from exc
    return cloned[y0 : int(box[3]), x0 : int(box[2])]


def composite(frames: list[np.ndarray], owners: list[int], warped: torch.Tensor, boxes: np.ndarray, mode: str = "alpha") -> None:
    """Blend warped faces into `frames` in place.

    Args:
        frames: `(H, W, 3)` uint8 RGB arrays (writable), indexed by `owners`.
        owners: for each face, the index of its frame.
        warped: `(B, 4, h, w)` from `warp_back`; boxes: `(B, 4)`.
        mode: one of `BLEND_MODES`.
    """
    if mode not in BLEND_MODES:
        raise FaceswapError(f"unknown blend mode {mode!r} (choose from {', '.join(BLEND_MODES)})")
    arr = warped.permute(0, 2, 3, 1).cpu().numpy()
    for i, (owner, box) in enumerate(zip(owners, boxes)):
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            continue  # the face's crop lies outside the frame
        frame = frames[owner]
        rgb = arr[i, : y1 - y0, : x1 - x0, :3] * 255.0
        alpha = arr[i, : y1 - y0, : x1 - x0, 3:]
        if mode == "poisson":
            cloned = _poisson(frame, box, rgb, alpha)
            if cloned is not None:
                rgb = cloned.astype(np.float32)
        frame[y0:y1, x0:x1] = _alpha(frame[y0:y1, x0:x1], rgb, alpha)


def paste_faces(frames: list[np.ndarray], owners: list[int], faces: torch.Tensor, masks: torch.Tensor,
                matrices: torch.Tensor, mode: str = "alpha") -> None:
    """Warp `(B, 3, S, S)` faces with `(B, 1, S, S)` masks back through `(B, 2, 3)` frame -> crop
    `matrices` and blend them into `frames[owners[i]]` (uint8 `(H, W, 3)`, same size, in place)."""
    if len(owners) == 0:
        return
    boxes = paste_regions(matrices, mask_support(masks), frames[owners[0]].shape[:2])
    composite(frames, owners, warp_back(faces, masks, matrices, boxes), boxes, mode)


def paste_alphas(frame_size: tuple[int, int], n_frames: int, owners: list[int], masks: torch.Tensor,
                 matrices: torch.Tensor) -> list[np.ndarray]:
    """Where the faces were pasted, per frame: `(H, W)` float32 alpha in [0, 1] (the union
    1 - prod(1 - mask_i) of the frame's faces; zeros without a face). For benches and tests: the
    same warp as `paste_faces`, applied to the masks alone."""
    out = [np.zeros(frame_size, np.float32) for _ in range(n_frames)]
    if len(owners) == 0:
        return out
    boxes = paste_regions(matrices, mask_support(masks), frame_size)
    warped = warp_back(torch.zeros(len(owners), 3, *masks.shape[-2:]), masks, matrices, boxes)[:, 3].cpu().numpy()
    for i, (owner, box) in enumerate(zip(owners, boxes)):
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 > x0 and y1 > y0:
            region = out[owner][y0:y1, x0:x1]
            region[:] = 1.0 - (1.0 - region) * (1.0 - np.clip(warped[i, : y1 - y0, : x1 - x0], 0, 1))
    return out


__all__ = ["BLEND_MODES", "composite", "mask_support", "paste_alphas", "paste_faces", "paste_regions", "warp_back"]

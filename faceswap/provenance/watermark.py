"""Invisible watermark: a keyed, perceptually masked spread-spectrum mark in luma block-DCT coefficients
of the face region.

Where the mark lives
--------------------
In *frame space*, on a grid tied to the frame's own shape: every frame is looked at through a
canonical copy whose shorter side is `CANONICAL_SIDE` px, cut into 8x8 blocks. The mark is a change
of 10 low-mid AC coefficients (`COEFFS`) of the canonical luma blocks under the pasted face, drawn
back at native size (Gaussian-softened, bilinear) and added to R, G and B alike (a pure luma
change: chroma is untouched), only where convert's paste mask is. A uniformly downscaled copy (e.g.
to 480 px) maps onto the same canonical grid: no search. The decoder detects faces only to choose
which blocks to count: those the template face mask covers to >= `COUNT_COVER`.

Why these choices (all measured on the four real clips, marked and swapped, through real x264):

* Frequencies. The two lowest terms (0,1) and (1,0) survive H.264 best but carry most of the face's
  own shading (host std 45-65 vs 6-24 for the terms used): whatever part of the host the embedder
  cancels comes back as soon as compression weakens the mark, so they cost more than they bring.
* Scale. A 160 px canonical side (3.2 native px per canonical px on a 512 px frame) survives CRF 28
  and a 2.7x downscale far better than 192 or 256 px at the same visibility; 128 px leaves too few
  blocks per face. Ten terms rather than seven: small faces need the positions.
* Perceptual masking. Each block gets an amplitude allowance `jnd` = floor + slope x its own AC
  activity (RMS of its AC terms except (0,1)/(1,0)): smooth skin gets about a fifth of what eyes,
  brows, nostrils, lips and real skin texture get. Measured in `bench/watermark.py` as the CSF-
  weighted PSNR of the flat part of the face ("HVS-flat").
* Decoder. Each coefficient passes through the redescending limiter psi(c) = c exp(-c^2 / 2 c0^2)
  before correlation, and each block is weighted by omega = 1 / (1 + E / TEXTURE_E0) (E: its
  high-frequency energy): the few strong host coefficients (edges, eyes, glasses), which no
  invisible mark could outweigh, stop deciding bits.

Payload and embedding
---------------------
`N_BITS` = 32: a fixed 16-bit tool tag, then 16 bits that carry the first 8 bits of the model id
(SHA-256 of the weights) as a codeword of the Nordstrom-Robinson code (256 words of 16 bits, any two
differ in >= 6 bits), decoded soft (maximum correlation over the 256 words). Measured on the
marked test clip after two H.264 encodes: per-bit z of the id positions 0.4-3.4 (one bit in ~30
lands on the wrong side), so 16 raw id bits came out wrong whenever one bit did (44 % of 8-frame
windows at z = 1.8, and a CPU-dependent x264 made it flip between machines); the coded 8 bits need
three bits wrong at once, and the id is reported only when its chance of being wrong, judged from
how clearly the known tag bits came through, is at most `ID_MAX_ERROR` (else "found, id uncertain"). The key (bytes) seeds a layout that gives every (block, coefficient) position one bit and
a sign u = +-1, every bit at least three times per 3 x 4 blocks; the tile repeats over the frame. Bit
i's statistic is P_i = sum_p omega_p u_p psi(c_p) over its counted positions.

Embedding is informed (improved spread spectrum): the host's own projection h_i is known at embed
time, and each bit gets just the change beta_i that lifts s_i P_i to a margin alpha (nothing where
the host already leans the right way). Every position of bit i changes by s_i beta_i u_p jnd_b, so
the mark is shaped by the masking map. The host is over-cancelled by 1 / `GAIN_FLOOR`: compression
keeps only ~0.3-0.9 of the mark, and a host cancelled exactly would come back as (1 - gain) h_i
(measured: that leak, not noise, was the main error source). alpha is set frame by frame as the
largest margin whose masking-normalised energy mean(beta^2) fits 1; no position moves by more than
`MAX_CHANGE` allowances. The closed form treats positions as independent and linear; three measured
corrections (the softened mark re-analysed in canonical pixels, through psi) top up the bits that
the softening's spill-over or the limiter left short.

Decoding and the decision threshold
-----------------------------------
Per frame the decoder adds omega-weighted, gated psi(coefficients) into one array S
(key-independent). Bit i is the sign of N_i = sum_{p in P_i} u_p S_p. Under H0 (no mark with this
key) the signs u are independent fair coins independent of the content, and psi is odd, so each N_i
is symmetric about 0 and the bits are independent fair coins: the number of the 16 tag bits that
match is Binomial(16, 1/2) whatever the video is. The mark is declared found when at least
`TAG_MATCH_THRESHOLD` = 15 of 16 tag bits match: false-positive rate per decision (one window of
frames) = P(Bin(16, .5) >= 15) = 17 / 65536 = 2.6e-4 <= 1e-3. The normalised tag correlation
z = sum_i t_i N_i / sqrt(sum_p S_p^2) is sub-Gaussian under H0 and is reported as a second figure.
`bench/watermark.py` checks both empirically on unmarked real clips over sliding windows and many keys.

Limits (measured): the mark's strength follows the face's own texture, so very smooth swapped faces
(a 64 px model blown up to 300 px) carry the least; small faces (< ~40 % of the frame's shorter
side) carry few blocks. Cropping or changing the aspect ratio moves the grid (no
resynchronisation). The default key is public: the mark labels, it does not resist a determined
remover.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from math import comb

import cv2
import numpy as np
import torch

from faceswap.errors import FaceswapError

CANONICAL_SIDE = 160
BLOCK = 8
# (row, col) of the 8x8 DCT terms that carry the mark
COEFFS: tuple[tuple[int, int], ...] = ((1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (0, 3), (3, 0), (2, 2), (1, 3), (3, 1))
TILE = 36  # blocks: the keyed layout repeats every TILE x TILE blocks (a multiple of GROUP)
COUNT_COVER = 0.9  # blocks counted by the decoder (and host-cancelled by the embedder): mask cover >= this
TAG_BITS, ID_BITS = 16, 16  # channel bits: the tag, the coded id
ID_DATA_BITS = 8  # id bits those 16 carry (the first two hex digits of the model id)
ID_MAX_ERROR = 1e-3  # report the id only when the chance that it is wrong is at most this
N_BITS = TAG_BITS + ID_BITS
TOOL_TAG = 0xFA5E  # "faceswap"; never changes across versions, so old outputs stay recognisable
TAG_MATCH_THRESHOLD = 15
DEFAULT_KEY = b"faceswap-provenance-v1"
# Perceptual model: a block may change by `jnd` = JND_FLOOR + JND_SLOPE * activity DCT units (canonical
# scale), at most JND_CAP; `strength` scales it. Chosen by eye on the smoothest faces (a 64 px model's
# swaps) and with bench/watermark.py's HVS-flat figure.
JND_FLOOR, JND_SLOPE, JND_CAP = 1.2, 1.2, 9.6
DEFAULT_STRENGTH = 1.0
MAX_MARGIN = 4.0  # cap on alpha, in units of the masking allowance
MAX_CHANGE = 3.0  # no position changes by more than this many allowances (a host too strong to cancel wins)
GAIN_FLOOR = 0.6  # the host is over-cancelled by 1 / this: the mark's expected survival under compression
TEXTURE_E0 = 64.0  # decoder block weight 1 / (1 + E / E0), E = mean square of the block's high-frequency DCT terms
PSI_C0 = 12.0  # decoder limiter scale (canonical DCT units): psi peaks at |c| = PSI_C0
REFINE = 3  # measured corrections of the informed embedding (softening spill-over, psi)
SOFTEN = 0.7  # canonical px: Gaussian softening of the mark before it is drawn (no hard block edges)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# --- payload -------------------------------------------------------------------------------------------


def _to_bits(value: int, n: int) -> list[int]:
    return [(value >> (n - 1 - i)) & 1 for i in range(n)]


def _from_bits(bits) -> int:
    v = 0
    for b in bits:
        v = (v << 1) | int(b)
    return v


@lru_cache(maxsize=1)
def id_codebook() -> np.ndarray:
    """`(256, ID_BITS)` uint8: the Nordstrom-Robinson code, row v carrying id byte v.

    Built as the Gray image of the octacode (the Z4-linear [8, 4] code) : minimum Hamming distance
    6, every word with 112 neighbours at that distance (checked in tests). Id byte v -> four Z4
    symbols (its bit pairs, high first) -> octacode word -> 2 bits per symbol (0->00 1->01 2->11 3->10)."""
    gen = np.array([[1, 0, 0, 0, 3, 1, 2, 1], [0, 1, 0, 0, 1, 2, 3, 1], [0, 0, 1, 0, 3, 3, 3, 2], [0, 0, 0, 1, 2, 3, 1, 1]])
    values = np.arange(2**ID_DATA_BITS)
    symbols = np.stack([(values >> s) & 3 for s in (6, 4, 2, 0)], 1)
    gray = np.array([[0, 0], [0, 1], [1, 1], [1, 0]], np.uint8)
    return gray[symbols @ gen % 4].reshape(len(values), ID_BITS)


def _id_byte(model_id: str | None) -> int:
    hex_id = (model_id or "").strip().lower()[: ID_DATA_BITS // 4]
    try:
        return int(hex_id.ljust(ID_DATA_BITS // 4, "0"), 16) if hex_id else 0
    except ValueError as exc:
        raise FaceswapError(f"model id {model_id!r} is not hexadecimal") from exc


def payload_bits(model_id: str | None) -> np.ndarray:
    """The `(N_BITS,)` uint8 payload: the tool tag, then the codeword of the model id's first byte.

    `model_id` is the hex SHA-256 of the model's weights (`model.autoencoder.model_id`); None or ""
    embeds id 00 (the tag alone still labels the output).
    """
    return np.concatenate([np.array(_to_bits(TOOL_TAG, TAG_BITS), np.uint8), id_codebook()[_id_byte(model_id)]])


def decode_id(z: np.ndarray, tag_z: np.ndarray) -> tuple[int, float]:
    """Soft decoding of the id: per-bit statistics `z` `(ID_BITS,)` (positive = bit 1) -> (id byte,
    probability that it is wrong).

    The known tag bits calibrate the channel: their signed statistics `tag_z` `(TAG_BITS,)` (+ =
    right side) give the mark's level mu (their mean) and the noise sigma (their spread) at these
    positions in this video. Under z_i = c_i mu + N(0, sigma^2) a word c is
    exp(-mu (s_best - s_c) / sigma^2) as likely as the best (s_c: correlation of c's +-1 signs with z);
    the error probability is their sum. (95 % bounds on mu and sigma from the 16 tag values were
    tried: they called a clean lossless id, all 16 bits right, uncertain because of one weak tag bit.)"""
    book = id_codebook()
    scores = (book * 2.0 - 1.0) @ np.asarray(z, np.float64)
    best = int(np.argmax(scores))
    t = np.asarray(tag_z, np.float64)
    mu, var = t.mean(), max(t.var(ddof=1), 1e-12)
    if mu <= 0:
        return best, 1.0
    others = np.delete(scores, best)
    return best, float(min(1.0, np.exp(-mu * (scores[best] - others) / var).sum()))


TAG_PATTERN = np.array(_to_bits(TOOL_TAG, TAG_BITS), np.uint8)


def binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) >= k)."""
    return sum(comb(n, j) for j in range(max(k, 0), n + 1)) / 2.0**n


# --- keyed layout --------------------------------------------------------------------------------------


GROUP = (3, 4)  # blocks: every group of 3 x 4 blocks (120 positions) holds each of the 32 bits at least three times


@lru_cache(maxsize=8)
def _tile(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Bit index `(TILE, TILE, K)` int64 and sign `(TILE, TILE, K)` float32 of one tile, from the key.

    Bits are dealt group by group (all bits, as often as they fit, topped up with random extra bits,
    shuffled, in every `GROUP` of blocks), so any face region holds every bit about equally often."""
    seed = int.from_bytes(hashlib.sha256(b"faceswap-watermark-layout\0" + key).digest()[:16], "big")
    rng = np.random.default_rng(seed)
    gy, gx = GROUP
    k = len(COEFFS)
    per_group = gy * gx * k
    bit = np.empty((TILE // gy + 1, gy, TILE // gx + 1, gx, k), np.int64)
    for i in range(bit.shape[0]):
        for j in range(bit.shape[2]):
            full = np.tile(np.arange(N_BITS), per_group // N_BITS)
            deal = np.concatenate([full, rng.integers(0, N_BITS, per_group - len(full))])
            bit[i, :, j] = rng.permutation(deal).reshape(gy, gx, k)
    bit = bit.reshape((TILE // gy + 1) * gy, (TILE // gx + 1) * gx, k)[:TILE, :TILE]
    sign = rng.choice(np.array([-1.0, 1.0], np.float32), size=(TILE, TILE, k))
    return np.ascontiguousarray(bit), sign.astype(np.float32)


def _layout(key: bytes, by0: int, by1: int, bx0: int, bx1: int) -> tuple[np.ndarray, np.ndarray]:
    """Bit index and sign of blocks [by0, by1) x [bx0, bx1) of the canonical grid (the tile repeats)."""
    bit, sign = _tile(key)
    ys = np.arange(by0, by1) % TILE
    xs = np.arange(bx0, bx1) % TILE
    return bit[ys][:, xs], sign[ys][:, xs]


# --- canonical geometry and the block DCT --------------------------------------------------------------


def canonical_size(height: int, width: int) -> tuple[int, int]:
    """`(hc, wc)` of the canonical copy of an `height` x `width` frame: shorter side `CANONICAL_SIDE`."""
    scale = CANONICAL_SIDE / min(height, width)
    return max(BLOCK, int(round(height * scale))), max(BLOCK, int(round(width * scale)))


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    n = BLOCK
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d.astype(np.float32)


def _select_matrix() -> np.ndarray:
    """`(K, 8, 8)` basis images of the chosen coefficients (orthonormal DCT-II)."""
    d = _dct_matrix()
    return np.stack([np.outer(d[u], d[v]) for u, v in COEFFS]).astype(np.float32)


_BASIS = _select_matrix()

_HF = np.ones((BLOCK, BLOCK), bool)
_HF[:3, :3] = False
_HF[0, :] = False
_HF[:, 0] = False  # "texture": every AC term off the first row/column and outside the 3x3 corner
_ACTIVITY = np.ones((BLOCK, BLOCK), bool)
_ACTIVITY[0, 0] = _ACTIVITY[0, 1] = _ACTIVITY[1, 0] = False  # every AC term but the shading gradients


def _blocks(y: np.ndarray) -> np.ndarray:
    nby, nbx = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    return y[: nby * BLOCK, : nbx * BLOCK].reshape(nby, BLOCK, nbx, BLOCK).transpose(0, 2, 1, 3)


def _analyse(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of every whole 8x8 block of a canonical luma image `(h, w)`: the chosen DCT coefficients
    `(nby, nbx, K)`, the decoder's block weight `(nby, nbx)` = 1 / (1 + E / TEXTURE_E0) (E: mean
    square of the block's high-frequency terms, which the mark leaves alone) and its activity
    `(nby, nbx)` (RMS of the AC terms but (0,1)/(1,0)), which sets the masking allowance."""
    d = _dct_matrix()
    full = d @ _blocks(y) @ d.T  # (nby, nbx, 8, 8)
    coef = np.stack([full[..., u, v] for u, v in COEFFS], -1)
    weight = 1.0 / (1.0 + (full[..., _HF] ** 2).mean(-1) / TEXTURE_E0)
    activity = np.sqrt((full[..., _ACTIVITY] ** 2).mean(-1))
    return coef, weight.astype(np.float32), activity.astype(np.float32)


def _psi(c: np.ndarray) -> np.ndarray:
    """The decoder's redescending limiter psi(c) = c exp(-c^2 / 2 PSI_C0^2): linear for weak
    coefficients, back to 0 for strong ones (edges, eyes: host that no invisible mark can outweigh).
    Odd, so the null distribution stays symmetric."""
    return c * np.exp(-0.5 * (c / PSI_C0) ** 2)


def _psi_slope(c: np.ndarray) -> np.ndarray:
    r = (c / PSI_C0) ** 2
    return np.maximum((1.0 - r) * np.exp(-0.5 * r), 0.0)


def _synthesise(coef: np.ndarray) -> np.ndarray:
    """Image of the chosen coefficients `(nby, nbx, K)` -> `(nby*8, nbx*8)` (inverse DCT)."""
    nby, nbx = coef.shape[:2]
    return np.einsum("ijk,kab->iajb", coef, _BASIS, optimize=True).reshape(nby * BLOCK, nbx * BLOCK)


def canonical_luma(frame: np.ndarray) -> np.ndarray:
    """The canonical copy's luma, `(hc, wc)` float32, from an `(H, W, 3)` uint8 RGB frame."""
    h, w = frame.shape[:2]
    hc, wc = canonical_size(h, w)
    small = cv2.resize(frame, (wc, hc), interpolation=cv2.INTER_AREA) if (h, w) != (hc, wc) else frame
    return small.astype(np.float32) @ LUMA


# --- embedding -----------------------------------------------------------------------------------------


def _soften(delta: np.ndarray) -> np.ndarray:
    """The mark is Gaussian-softened in canonical pixels before it is drawn: no hard block edges."""
    return cv2.GaussianBlur(delta, (0, 0), SOFTEN, borderType=cv2.BORDER_REFLECT)


def _draw_native(delta: np.ndarray, sy: float, sx: float, oy: float, ox: float, size: tuple[int, int]) -> np.ndarray:
    """Bilinear drawing of a canonical image at native scale, cv2.resize's pixel-centre convention:
    native (x, y) <- canonical ((x + ox + 0.5) / sx - 0.5, ...), `ox`/`oy` the native offset of
    the output relative to the canonical image's origin."""
    m = np.float32([[1 / sx, 0, (ox + 0.5) / sx - 0.5], [0, 1 / sy, (oy + 0.5) / sy - 0.5]])
    return cv2.warpAffine(delta, m, (size[1], size[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


@lru_cache(maxsize=1)
def _probes() -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Random signs `(8, 8, K)` and, per coefficient k, the softened canonical image of those signs
    placed on term k alone: the test patterns the gain measurements below use."""
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=(8, 8, len(COEFFS))).astype(np.float32)
    images = []
    for k in range(len(COEFFS)):
        coef = np.zeros_like(signs)
        coef[..., k] = signs[..., k]
        images.append(_soften(_synthesise(coef)))
    return signs, tuple(images)


@lru_cache(maxsize=16)
def _roundtrip_gain(sy: float, sx: float) -> np.ndarray:
    """`(K,)`: how much of a (softened) coefficient change survives drawing at native scale and the
    decoder's area resize back (both low-pass), measured once per frame scale."""
    n = 8 * BLOCK
    native = (int(round(n * sy)), int(round(n * sx)))
    gains = []
    for k, soft in enumerate(_probes()[1]):
        back = cv2.resize(_draw_native(soft, sy, sx, 0.0, 0.0, native), (n, n), interpolation=cv2.INTER_AREA)
        before, after = _analyse(soft)[0][2:-2, 2:-2, k], _analyse(back)[0][2:-2, 2:-2, k]
        gains.append(float((after * before).sum() / (before * before).sum()))
    return np.clip(np.array(gains, np.float32), 0.05, 1.0)


@lru_cache(maxsize=1)
def _soften_gain() -> np.ndarray:
    """`(K,)`: how much of a coefficient change its own softening keeps (the rest spills to other terms
    and neighbouring blocks, which the embedder measures and corrects)."""
    signs, images = _probes()
    return np.array([float((_analyse(soft)[0][2:-2, 2:-2, k] * signs[2:-2, 2:-2, k]).mean()) for k, soft in enumerate(images)],
                    np.float32)


def _margin(energy: np.ndarray, signs: np.ndarray, host: np.ndarray, budget: float, cap: float) -> float:
    """Largest margin alpha (<= cap) whose energy sum_i E_i max(0, alpha - s_i h_i)^2 fits `budget`
    (bisection: the energy grows with alpha)."""

    def cost(alpha: float) -> float:
        return float((energy * np.maximum(0.0, alpha - signs * host) ** 2).sum())

    if cost(cap) <= budget:
        return cap
    lo, hi = 0.0, cap
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid)
    return lo


def embed(frame: np.ndarray, mask: np.ndarray | None, bits: np.ndarray, key: bytes = DEFAULT_KEY,
          strength: float = DEFAULT_STRENGTH, out: np.ndarray | None = None) -> np.ndarray:
    """Mark the region of `frame` under `mask`.

    Args:
        frame: `(H, W, 3)` uint8 RGB, the finished frame (faces already pasted).
        mask: `(H, W)` float in [0, 1] (or uint8 0..255): where the swapped faces are; None = all.
        bits: `(N_BITS,)` 0/1 payload from `payload_bits`.
        key: layout key (the decoder needs the same).
        strength: multiplies the masking allowance (1 = the calibrated default).
        out: where to write the result (may be `frame` itself: in place); default a new array.
    Returns:
        the marked `(H, W, 3)` uint8 frame (`out`).
    """
    bits = np.asarray(bits).astype(np.int64).reshape(-1)
    if bits.shape != (N_BITS,):
        raise FaceswapError(f"watermark payload must have {N_BITS} bits, got {bits.shape[0]}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise FaceswapError(f"embed expects an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
    h, w = frame.shape[:2]
    if mask is None:
        mask = np.ones((h, w), np.float32)
    mask = np.asarray(mask)
    mask = mask.astype(np.float32) / 255.0 if mask.dtype == np.uint8 else mask.astype(np.float32)
    if mask.shape != (h, w):
        raise FaceswapError(f"mask of shape {mask.shape} does not match the frame's {(h, w)}")
    if out is None:
        out = frame.copy()
    elif out is not frame:
        out[...] = frame
    rows = np.flatnonzero(mask.max(1) > 1e-3)
    if len(rows) == 0:
        return out
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].max(0) > 1e-3)
    ny0, ny1, nx0, nx1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    hc, wc = canonical_size(h, w)
    sy, sx = h / hc, w / wc  # native px per canonical px
    nby, nbx = hc // BLOCK, wc // BLOCK
    # Canonical block range covering the mask.
    by0, by1 = max(0, int(ny0 / sy) // BLOCK), min(nby, int(np.ceil(ny1 / sy / BLOCK)))
    bx0, bx1 = max(0, int(nx0 / sx) // BLOCK), min(nbx, int(np.ceil(nx1 / sx / BLOCK)))
    if by1 <= by0 or bx1 <= bx0:
        return out
    y = canonical_luma(frame)
    cy0, cy1, cx0, cx1 = by0 * BLOCK, by1 * BLOCK, bx0 * BLOCK, bx1 * BLOCK
    coef, omega, activity = _analyse(y[cy0:cy1, cx0:cx1])
    mc = cv2.resize(mask, (wc, hc), interpolation=cv2.INTER_AREA)[cy0:cy1, cx0:cx1]
    cover = mc.reshape(by1 - by0, BLOCK, bx1 - bx0, BLOCK).mean((1, 3))  # (nby, nbx) mask cover
    # The decoder counts blocks well inside the face; the delta is masked again at native size, so
    # a coefficient change d arrives as ~ cover * d. Edge blocks are marked but not counted.
    counted = (cover >= COUNT_COVER) * omega
    jnd = np.clip(JND_FLOOR + JND_SLOPE * activity, JND_FLOOR, JND_CAP) * strength  # (nby, nbx) allowance
    slope = _psi_slope(coef)  # the limiter ignores changes of coefficients far beyond PSI_C0: spend nothing there
    alloc = (jnd * cover)[..., None] * slope  # canonical change per unit beta, (nby, nbx, K)
    native_gain = _roundtrip_gain(round(sy, 4), round(sx, 4))
    gain = cover[..., None] * alloc * (native_gain * _soften_gain())  # expected coefficient change per unit beta
    response = counted[..., None] * slope * gain
    bit_idx, sign = _layout(key, by0, by1, bx0, bx1)
    flat = bit_idx.ravel()
    host = np.bincount(flat, weights=(sign * _psi(coef) * counted[..., None]).ravel(), minlength=N_BITS)
    resp = np.bincount(flat, weights=response.ravel(), minlength=N_BITS)
    ok = resp > 1e-6
    h_i = np.where(ok, host / np.where(ok, resp, 1.0), 0.0) / GAIN_FLOOR
    s = bits * 2.0 - 1.0
    # Masking-normalised energy per unit beta^2 of each bit; the budget is "one allowance on average".
    energy = np.bincount(flat, weights=((cover[..., None] * alloc / jnd[..., None]) ** 2).ravel(), minlength=N_BITS)
    positions = max(float((cover >= 0.5).sum()) * len(COEFFS), 1.0)
    # Informed embedding: bit i ends with s_i P_i / R_i >= alpha where the host is cancelled (over-
    # cancelled by 1 / GAIN_FLOOR); nothing is spent on bits the host already gets right.
    alpha = _margin(energy, s, h_i, positions, MAX_MARGIN)
    beta = np.where(ok, s * np.clip(alpha - s * h_i, 0.0, MAX_CHANGE), 0.0)
    # The closed form assumes each position moves alone and linearly. Softening spills part of every
    # change into other terms and blocks, and psi bends strong coefficients: measure what the softened
    # mark really does to the statistics (in canonical pixels) and top up the bits that fall short.
    target = s * host + resp * np.abs(beta)
    for _ in range(REFINE):
        moved = coef + cover[..., None] * native_gain * _analyse(_soften(_synthesise(alloc * sign * beta[bit_idx])))[0]
        got = s * np.bincount(flat, weights=(sign * _psi(moved) * counted[..., None]).ravel(), minlength=N_BITS)
        beta = s * np.minimum(s * beta + np.where(ok, np.maximum(target - got, 0.0) / np.where(ok, resp, 1.0), 0.0), MAX_CHANGE)
    delta = _soften(_synthesise((alloc * sign * beta[bit_idx]).astype(np.float32)))
    up = _draw_native(delta, sy, sx, ny0 - cy0 * sy, nx0 - cx0 * sx, (ny1 - ny0, nx1 - nx0))
    up *= mask[ny0:ny1, nx0:nx1]
    patch = out[ny0:ny1, nx0:nx1].astype(np.float32)
    patch += up[..., None]
    np.clip(patch + 0.5, 0, 255, out=patch)
    out[ny0:ny1, nx0:nx1] = patch.astype(np.uint8)
    return out


def face_region_masks(masks: torch.Tensor | np.ndarray, matrices: torch.Tensor | np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Union of face masks drawn into frame pixels: crop masks `(B, 1, S, S)` (or `(B, S, S)`) in
    [0, 1] through the inverse of `(B, 2, 3)` frame -> crop `matrices` -> `(H, W)` float32."""
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    matrices = matrices.detach().cpu().numpy() if isinstance(matrices, torch.Tensor) else np.asarray(matrices)
    masks = masks.reshape(len(masks), masks.shape[-2], masks.shape[-1]).astype(np.float32)
    h, w = frame_size
    out = np.zeros((h, w), np.float32)
    for mk, mat in zip(masks, matrices.astype(np.float64)):
        # frame -> crop is `mat`; warpAffine with WARP_INVERSE_MAP samples the crop at mat @ (x, y, 1).
        s = mk.shape[0]
        corners = np.array([[0, 0], [s - 1, 0], [0, s - 1], [s - 1, s - 1]], np.float64)
        inv = cv2.invertAffineTransform(mat)
        pts = corners @ inv[:, :2].T + inv[:, 2]
        x0, y0 = np.floor(pts.min(0)).astype(int) - 1
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        shifted = mat.copy()
        shifted[:, 2] += shifted[:, 0] * x0 + shifted[:, 1] * y0  # box pixel (x, y) = frame (x + x0, y + y0)
        part = cv2.warpAffine(mk, shifted.astype(np.float32), (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        np.maximum(out[y0:y1, x0:x1], part, out=out[y0:y1, x0:x1])
    return out


def mark_faces(frames: list[np.ndarray], owners: list[int], masks: torch.Tensor | np.ndarray,
               matrices: torch.Tensor | np.ndarray, bits: np.ndarray, key: bytes = DEFAULT_KEY,
               strength: float = DEFAULT_STRENGTH) -> None:
    """Watermark every pasted face, in place: the convert hook.

    Args:
        frames: `(H, W, 3)` uint8 RGB frames after paste-back (writable), indexed by `owners`.
        owners: for each face, the index of its frame.
        masks: `(B, 1, S, S)` paste masks in crop pixels, [0, 1].
        matrices: `(B, 2, 3)` frame -> crop transforms used for the paste.
        bits: payload from `payload_bits(model_id)`.
    """
    owners = list(owners)
    for frame_index in sorted(set(owners)):
        faces = [i for i, o in enumerate(owners) if o == frame_index]
        frame = frames[frame_index]
        region = face_region_masks(np.asarray(masks[faces] if isinstance(masks, np.ndarray) else masks[faces].cpu()),
                                   matrices[faces], frame.shape[:2])
        embed(frame, region, bits, key, strength, out=frame)


# --- decoding ------------------------------------------------------------------------------------------


@dataclass
class WatermarkResult:
    """What the decoder concluded from the frames it saw.

    found: at least `TAG_MATCH_THRESHOLD` of the 16 tag bits matched (false-positive rate 2.6e-4).
    confidence: 1 - p_value, p_value = P(this many tag bits match | no mark).
    z: normalised tag correlation (~N(0, 1) without a mark).
    bits: the hard-decided `(N_BITS,)` 0/1 payload (raw, before the id's decoding).
    model_id: the first 2 hex digits of the model id, when found and the chance that the decoded id
    is wrong is at most `ID_MAX_ERROR` (None otherwise: found, id uncertain); id_error: that chance.
    """

    found: bool
    confidence: float
    p_value: float
    z: float
    tag_matches: int
    bits: np.ndarray
    model_id: str | None
    frames: int
    frames_with_faces: int
    id_error: float | None = None

    def to_dict(self) -> dict:
        return {"found": self.found, "confidence": round(self.confidence, 6), "p_value": self.p_value, "z": round(self.z, 2),
                "tag_matches": f"{self.tag_matches}/{TAG_BITS}", "model_id": self.model_id, "id_error": self.id_error,
                "frames": self.frames, "frames_with_faces": self.frames_with_faces}


def decide(evidence: np.ndarray, key: bytes = DEFAULT_KEY, frames: int = 0, frames_with_faces: int = 0) -> WatermarkResult:
    """Decode the payload from aggregated evidence `(nby, nbx, K)` (sum of `frame_evidence`)."""
    nby, nbx = evidence.shape[:2]
    bit_idx, sign = _layout(key, 0, nby, 0, nbx)
    num = np.bincount(bit_idx.ravel(), weights=(sign * evidence).ravel(), minlength=N_BITS)
    den = np.bincount(bit_idx.ravel(), weights=(evidence.astype(np.float64) ** 2).ravel(), minlength=N_BITS)
    bits = (num > 0).astype(np.uint8)
    some = den[:TAG_BITS].sum() > 0
    # per-bit z (num ~ N(0, den) without a mark): the id is decoded soft from these
    z_bits = np.where(den > 0, num / np.sqrt(np.maximum(den, 1e-30)), 0.0)
    matches = int((bits[:TAG_BITS] == TAG_PATTERN).sum()) if some else 0
    t = TAG_PATTERN * 2.0 - 1.0
    z = float((t * num[:TAG_BITS]).sum() / np.sqrt(den[:TAG_BITS].sum())) if some else 0.0
    p_value = binomial_tail(TAG_BITS, matches) if some else 1.0
    found = matches >= TAG_MATCH_THRESHOLD
    ident, id_error = decode_id(z_bits[TAG_BITS:], z_bits[:TAG_BITS] * (TAG_PATTERN * 2.0 - 1.0))
    sure = found and id_error <= ID_MAX_ERROR
    return WatermarkResult(found=found, confidence=1.0 - p_value, p_value=p_value, z=z, tag_matches=matches, bits=bits,
                           model_id=f"{ident:0{ID_DATA_BITS // 4}x}" if sure else None, frames=frames,
                           frames_with_faces=frames_with_faces, id_error=float(f"{id_error:.2g}") if found else None)


GATE_SIZE = 128  # crop side used to draw the template mask for the decoder's gate (coarse is enough)


def gate_from_landmarks(landmarks, frame_size: tuple[int, int], threshold: float | None = None) -> np.ndarray:
    """Canonical-block weights `(nby, nbx)` float32 of the blocks under the template face mask of
    faces with MTCNN `landmarks` `(F, 5, 2)` (native px): the region convert pastes (and marks),
    as far as the decoder can tell from the finished frame."""
    from faceswap.faces.align import alignment_matrices

    threshold = COUNT_COVER if threshold is None else threshold
    h, w = frame_size
    hc, wc = canonical_size(h, w)
    nby, nbx = hc // BLOCK, wc // BLOCK
    lm = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    if len(lm) == 0:
        return np.zeros((nby, nbx), np.float32)
    scale = np.array([wc / w, hc / h])
    # pixel centres: canonical x = (x + 0.5) * wc / w - 0.5
    lm_c = (lm + 0.5) * scale - 0.5
    mats = alignment_matrices(lm_c, GATE_SIZE).numpy()
    crop = _template_mask(GATE_SIZE)
    mask = face_region_masks(np.repeat(crop[None], len(lm), 0), mats, (hc, wc))
    blocks = mask[: nby * BLOCK, : nbx * BLOCK].reshape(nby, BLOCK, nbx, BLOCK).mean((1, 3))
    return (blocks >= threshold).astype(np.float32)


@lru_cache(maxsize=2)
def _template_mask(size: int) -> np.ndarray:
    from faceswap.faces.align import template_face_mask

    return template_face_mask(size).numpy()


def frame_evidence(frame: np.ndarray, gate: np.ndarray | None = None) -> np.ndarray:
    """Key-independent evidence of one frame: psi of its canonical DCT coefficients times block
    weights, `(nby, nbx, K)` float32, zero outside `gate` `(nby, nbx)` (from `gate_from_landmarks`;
    None = the whole frame)."""
    y = canonical_luma(frame)
    nby, nbx = y.shape[0] // BLOCK, y.shape[1] // BLOCK
    out = np.zeros((nby, nbx, len(COEFFS)), np.float32)
    if gate is None:
        gate = np.ones((nby, nbx), np.float32)
    rows, cols = np.flatnonzero(gate.any(1)), np.flatnonzero(gate.any(0))
    if len(rows) == 0:
        return out
    by0, by1, bx0, bx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    coef, omega, _ = _analyse(y[by0 * BLOCK : by1 * BLOCK, bx0 * BLOCK : bx1 * BLOCK])
    out[by0:by1, bx0:bx1] = _psi(coef) * (omega * gate[by0:by1, bx0:bx1])[..., None]
    return out


@dataclass
class WatermarkDecoder:
    """Aggregate evidence over the frames of one video, then `result()`.

    Faces are found with `detector` (a `faces.detect.FaceDetector`, made on first use) every
    `detect_every` frames, their landmarks held in between; the blocks under each face's template
    mask are counted. Frames without a face add no evidence. Pass `landmarks` to `update` to skip
    detection; with `detect=False` and no landmarks the whole frame is counted.
    """

    key: bytes = DEFAULT_KEY
    detect: bool = True
    detect_every: int = 4
    detector: object | None = None
    evidence: np.ndarray | None = None
    frames: int = 0
    frames_with_faces: int = 0
    _landmarks: np.ndarray | None = field(default=None, repr=False)
    _since: int = field(default=0, repr=False)

    def _detect(self, frame: np.ndarray) -> np.ndarray:
        if self.detector is None:
            from faceswap.faces.detect import DetectorConfig, FaceDetector

            self.detector = FaceDetector(DetectorConfig(detect_size=256, min_face=24, min_score=0.9))
        if self._landmarks is None or self._since >= self.detect_every or len(self._landmarks) == 0:
            faces = self.detector.detect(frame[None])[0]
            self._landmarks = np.array([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2)
            self._since = 0
        self._since += 1
        return self._landmarks

    def update(self, frame: np.ndarray, landmarks=None) -> None:
        """Add one `(H, W, 3)` uint8 RGB frame; `landmarks` `(F, 5, 2)` of its faces if known."""
        if landmarks is None and self.detect:
            landmarks = self._detect(frame)
        gate = None
        if landmarks is not None:
            landmarks = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
            gate = gate_from_landmarks(landmarks, frame.shape[:2])
            if len(landmarks) == 0 or not gate.any():
                self.frames += 1
                return
        ev = frame_evidence(frame, gate)
        if self.evidence is not None and self.evidence.shape != ev.shape:
            raise FaceswapError("frames of different sizes in one watermark decoder: decode each video separately")
        self.evidence = ev if self.evidence is None else self.evidence + ev
        self.frames += 1
        self.frames_with_faces += 1

    def result(self) -> WatermarkResult:
        if self.evidence is None:
            return WatermarkResult(False, 0.0, 1.0, 0.0, 0, np.zeros(N_BITS, np.uint8), None, self.frames, 0)
        return decide(self.evidence, self.key, self.frames, self.frames_with_faces)


__all__ = ["CANONICAL_SIDE", "DEFAULT_KEY", "DEFAULT_STRENGTH", "N_BITS", "TAG_MATCH_THRESHOLD", "TOOL_TAG",
           "WatermarkDecoder", "WatermarkResult", "binomial_tail", "canonical_luma", "canonical_size", "decide", "embed",
           "decode_id", "face_region_masks", "frame_evidence", "gate_from_landmarks", "id_codebook", "mark_faces", "payload_bits"]

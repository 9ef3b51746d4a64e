"""Watermark figures on the real clips (issue: provenance, item 2): PSNR, robustness, false positives, cost.

For each clip in ../shared/data/faces: the first N frames, faces detected with MTCNN, the template
face mask drawn through the inverse alignment (exactly what convert pastes through) and
`provenance.mark_faces` applied (convert's hook) -- on the original faces, not on swapped ones:
the mark does not care what was pasted, and this runs without a trained model. Then:

- PSNR of the marked face region (mask >= 1/2) against the unmarked frame;
- encode at CRF 18 (convert's default output), then the attacks: re-encode at CRF 23, at CRF 28,
  and CRF 23 + downscale to 480 px height (+ CRF 23 again); decode with `WatermarkDecoder`, which
  re-detects the faces in the attacked frames itself; bit accuracy (56 bits) and found-rate over
  sliding windows of 1, 8 and 24 frames;
- false positives: the unmarked clips through CRF 23, sliding windows of 8 and 24 frames, decided
  with the tool key and with 200 other keys (tag-match rule, and the z statistic's spread);
- cost: embed and decode (evidence + gate, not face detection) per face, best of repeats.

Writes a side-by-side crop (original | marked | difference x10) per clip to --out (default: a temp
dir, never the repo: the clips are internal). Prints a table. Takes a few minutes on 2 cores.

    python bench/watermark.py [--frames 48] [--clips A B C D] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from faceswap.faces.align import alignment_matrices, template_face_mask
from faceswap.faces.detect import DetectorConfig, FaceDetector
from faceswap.provenance import watermark as wm
from faceswap.video import FrameReader, VideoWriter, ffmpeg_exe

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
CLIPS = {"A": "A_lp_d3.mp4", "B": "B_lp_d6.mp4", "C": "C_lp_d9.mp4", "D": "D_lp_d13.mp4"}
MODEL_ID = "3fa2b1c09d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def read(path: Path) -> np.ndarray:
    return np.stack([f for _, f in FrameReader(path)])


def windows(evidence: list[np.ndarray], win: int, key: bytes = wm.DEFAULT_KEY) -> list[wm.WatermarkResult]:
    step = max(1, win // 4)
    return [wm.decide(sum(evidence[s : s + win]), key) for s in range(0, len(evidence) - win + 1, step)]


def evidence_of(frames: np.ndarray, detector: FaceDetector) -> list[np.ndarray]:
    """Per-frame evidence as `WatermarkDecoder` builds it (detection every 4 frames)."""
    dec = wm.WatermarkDecoder(detector=detector)
    out = []
    for f in frames:
        before = None if dec.evidence is None else dec.evidence.copy()
        dec.update(f)
        out.append(dec.evidence - before if before is not None else dec.evidence.copy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--clips", nargs="+", default=list(CLIPS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--null-keys", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="faceswap-wm-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="faceswap-wm-work-"))
    detector = FaceDetector(DetectorConfig(detect_size=256, min_face=24))
    bits = wm.payload_bits(MODEL_ID)
    print(f"{'clip':4} {'size':>9} {'PSNR':>6} {'attack':>8} {'acc w1':>7} {'acc w8':>7} {'acc w24':>8} {'found w8':>9} {'found w24':>9}")
    null_tag, null_z, null_n = 0, [], 0
    costs_e, costs_d = [], []
    for name in args.clips:
        clip = SHARED / CLIPS[name]
        if not clip.exists():
            print(f"{name}: {clip} not found", file=sys.stderr)
            continue
        frames = np.stack([f for _, f in FrameReader(clip, end=args.frames)])
        n, h, w = frames.shape[:3]
        faces = [fs for i in range(0, n, 8) for fs in detector.detect(frames[i : i + 8])]
        masks_t = template_face_mask(256)[None]
        marked, psnrs = [], []
        for f, fs in zip(frames, faces):
            out = f.copy()
            if fs:
                lm = np.stack([x.landmarks for x in fs]).astype(np.float64)
                mats = alignment_matrices(lm, 256)
                wm.mark_faces([out], [0] * len(fs), masks_t.expand(len(fs), 1, 256, 256), mats, bits)
                region = wm.face_region_masks(masks_t.expand(len(fs), 1, 256, 256), mats, (h, w)) > 0.5
                psnrs.append(10 * np.log10(255.0**2 / ((out.astype(np.float64) - f) ** 2)[region].mean()))
            marked.append(out)
        # Cost per face (best of repeats: the CPU is shared).
        fs0 = faces[0][0]
        lm0 = fs0.landmarks[None].astype(np.float64)
        region0 = wm.face_region_masks(masks_t, alignment_matrices(lm0, 256), (h, w))
        te, td = [], []
        for _ in range(7):
            t0 = time.perf_counter()
            wm.embed(frames[0], region0, bits)
            t1 = time.perf_counter()
            wm.frame_evidence(marked[0], wm.gate_from_landmarks(lm0, (h, w)))
            t2 = time.perf_counter()
            te.append(t1 - t0)
            td.append(t2 - t1)
        side = float(fs0.size)
        costs_e.append((name, min(te) * 1000, side))
        costs_d.append((name, min(td) * 1000, side))
        # Side-by-side crop.
        x0, y0, x1, y1 = (int(v) for v in fs0.box)
        crop = (slice(max(0, y0), min(h, y1)), slice(max(0, x0), min(w, x1)))
        diff = np.clip(128 + 10 * (marked[0][crop].astype(int) - frames[0][crop]), 0, 255).astype(np.uint8)
        cv2.imwrite(str(out_dir / f"{name}_side_by_side.png"),
                    cv2.cvtColor(np.concatenate([frames[0][crop], marked[0][crop], diff], 1), cv2.COLOR_RGB2BGR))
        base = work / f"{name}_crf18.mp4"
        with VideoWriter(base, w, h, 30.0, crf=18) as writer:
            writer.write(np.stack(marked))
        attacked = {}
        for crf in (23, 28):
            attacked[f"crf{crf}"] = work / f"{name}_crf{crf}.mp4"
            ffmpeg("-i", str(base), "-c:v", "libx264", "-crf", str(crf), str(attacked[f"crf{crf}"]))
        attacked["crf23+480"] = work / f"{name}_480.mp4"
        ffmpeg("-i", str(attacked["crf23"]), "-vf", "scale=-2:480", "-c:v", "libx264", "-crf", "23", str(attacked["crf23+480"]))
        for tag, path in attacked.items():
            fr = read(path)
            ev = evidence_of(fr, detector)
            acc = {win: np.mean([(r.bits == bits).mean() for r in windows(ev, win)]) for win in (1, 8, 24)}
            found = {win: np.mean([r.found for r in windows(ev, win)]) for win in (8, 24)}
            print(f"{name:4} {w}x{h:<4} {np.mean(psnrs):6.1f} {tag:>9} {acc[1]:7.3f} {acc[8]:7.3f} {acc[24]:8.3f} {found[8]:9.2f} {found[24]:9.2f}"
                  + (f"  ({fr.shape[2]}x{fr.shape[1]})" if tag == "crf23+480" else ""))
        # Unmarked: the same frames through CRF 23.
        plain = work / f"{name}_plain.mp4"
        with VideoWriter(plain, w, h, 30.0, crf=23) as writer:
            writer.write(frames)
        ev = evidence_of(read(plain), detector)
        for win in (8, 24):
            for k in range(args.null_keys + 1):
                key = wm.DEFAULT_KEY if k == 0 else b"null-%d" % k
                rs = windows(ev, win, key)
                null_tag += sum(r.found for r in rs)
                null_z += [r.z for r in rs]
                null_n += len(rs)
    z = np.array(null_z)
    print(f"\nfalse positives on unmarked clips (CRF 23), windows of 8 and 24 frames x {args.null_keys + 1} keys: "
          f"{null_tag}/{null_n} = {null_tag / max(null_n, 1):.2e} (rule: >= {wm.TAG_MATCH_THRESHOLD}/16 tag bits, "
          f"theory {wm.binomial_tail(16, wm.TAG_MATCH_THRESHOLD):.2e}); z mean {z.mean():+.2f} std {z.std():.2f}, "
          f"P(z > 3.72) = {(z > 3.72).mean():.1e}")
    for (name, te, side), (_, td, _) in zip(costs_e, costs_d):
        print(f"cost {name}: embed {te:.1f} ms + decode {td:.1f} ms per face ({side:.0f} px box; scaled to a 256 px face: "
              f"~{(te + td) * (256 / side) ** 2:.1f} ms, excluding face detection)")
    print(f"side-by-side crops: {out_dir}")


if __name__ == "__main__":
    main()

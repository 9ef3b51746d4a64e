"""Extraction speed and memory on the shared real clips, against a naive baseline in the same run.

    python bench/extract.py                 # all four clips, baseline, memory check
    python bench/extract.py --frames 120    # quicker: first 120 frames of each clip

Ours: `faceswap extract` with default options (frames/s over the whole run: decode, detect, align,
write PNGs). Baseline: OpenCV reads every frame and facenet-pytorch's MTCNN is called once per
full-resolution frame (its defaults, keep_all=True, landmarks=True). Faces are counted at the same
score threshold for both. Memory: peak RSS of an extract process on one clip and on the same clip
concatenated 10 times (streaming means it should not grow).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "faces"
CLIPS = ["A_lp_d3.mp4", "B_lp_d6.mp4", "C_lp_d9.mp4", "D_lp_d13.mp4"]


def ours(clip: Path, frames: int | None) -> tuple[float, int, int]:
    """(frames/s, frames read, faces written) for a default extract of `clip`."""
    from faceswap.extract import ExtractConfig, run_extract

    with tempfile.TemporaryDirectory() as out:
        config = ExtractConfig(inputs=[clip], output=Path(out), end=frames)
        t0 = time.perf_counter()
        summary = run_extract(config, show_progress=False)
        dt = time.perf_counter() - t0
    return summary.frames_read / dt, summary.frames_read, summary.faces_written


def baseline(clip: Path, frames: int | None, min_score: float) -> tuple[float, int, int]:
    """(frames/s, frames read, faces >= min_score) for MTCNN on every full-resolution frame."""
    import cv2
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    cap = cv2.VideoCapture(str(clip))
    n = faces = 0
    t0 = time.perf_counter()
    while frames is None or n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        boxes, probs, _ = mtcnn.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), landmarks=True)
        if boxes is not None:
            faces += int((probs.astype("float32") >= min_score).sum())
        n += 1
    return n / (time.perf_counter() - t0), n, faces


def peak_rss_mib(clip: Path) -> float:
    """Peak RSS (MiB) of a fresh process extracting `clip` (the ffmpeg child is separate)."""
    code = ("import resource,sys,tempfile; from pathlib import Path;"
            "from faceswap.extract import ExtractConfig, run_extract;"
            "d=tempfile.mkdtemp(); run_extract(ExtractConfig(inputs=[Path(sys.argv[1])], output=Path(d)), show_progress=False);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
    out = subprocess.run([sys.executable, "-c", code, str(clip)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def concat(clip: Path, times: int, dest: Path) -> Path:
    from faceswap.video import ffmpeg_exe

    listing = dest / "list.txt"
    listing.write_text("".join(f"file '{clip.resolve()}'\n" for _ in range(times)))
    out = dest / f"{clip.stem}_x{times}.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out)], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of each clip")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--clips", nargs="*", default=CLIPS)
    args = parser.parse_args()
    import torch

    from faceswap.faces.detect import DetectorConfig

    min_score = DetectorConfig().min_score
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; min score {min_score}")
    print(f"{'clip':<14}{'frames':>7}{'ours fr/s':>11}{'faces':>7}{'base fr/s':>11}{'faces':>7}{'speed-up':>10}{'faces diff':>12}")
    rows = []
    for name in args.clips:
        clip = SHARED / name
        fps, n, faces = ours(clip, args.frames)
        row = {"clip": name, "frames": n, "ours_fps": fps, "ours_faces": faces}
        line = f"{name:<14}{n:>7}{fps:>11.1f}{faces:>7}"
        if not args.no_baseline:
            bfps, bn, bfaces = baseline(clip, args.frames, min_score)
            diff = (faces - bfaces) / max(bfaces, 1)
            row.update(base_fps=bfps, base_faces=bfaces, speedup=fps / bfps, faces_diff=diff)
            line += f"{bfps:>11.1f}{bfaces:>7}{fps / bfps:>9.1f}x{diff:>+11.1%}"
        rows.append(row)
        print(line, flush=True)
    if not args.no_baseline:
        total_ours = sum(r["frames"] for r in rows) / sum(r["frames"] / r["ours_fps"] for r in rows)
        total_base = sum(r["frames"] for r in rows) / sum(r["frames"] / r["base_fps"] for r in rows)
        print(f"{'all clips':<14}{sum(r['frames'] for r in rows):>7}{total_ours:>11.1f}{'':>7}{total_base:>11.1f}{'':>7}"
              f"{total_ours / total_base:>9.1f}x   (target >= 5x, faces within +-1%)")
    if not args.no_memory:
        clip = SHARED / args.clips[0]
        with tempfile.TemporaryDirectory() as d:
            long_clip = concat(clip, 10, Path(d))
            one, ten = peak_rss_mib(clip), peak_rss_mib(long_clip)
        print(f"peak RSS: {clip.name} {one:.0f} MiB; same clip x10 {ten:.0f} MiB ({ten / one - 1:+.1%}; target within 10%)")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

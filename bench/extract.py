"""Extraction speed and memory on the shared real clips, against a naive baseline in the same run.

    python bench/extract.py                 # all four clips, 3 rounds, baseline, memory check
    python bench/extract.py --quick         # first 160 frames of each clip, no memory check
    python bench/extract.py --frames 120    # first 120 frames of each clip
    python bench/extract.py --repeat 5      # 5 rounds
    python bench/extract.py --isa native    # one ISA only (default: native, then AVX2 emulation)

The whole run is repeated per ISA (bench/isa.py): native kernels, then AVX2 emulation (each
measurement process inherits its environment), then one table per ISA with the capability, the
fp32 matmul peak on the same thread count and the all-clips figures, and the ratio emulated / native.

Ours: `faceswap extract` with default options (frames/s over the whole run: building the nets,
probing, decoding, detecting, aligning, writing PNGs). Baseline: OpenCV reads every frame and
facenet-pytorch's MTCNN is called once per full-resolution frame (its defaults, keep_all=True,
landmarks=True; the MTCNN object is made before its clock starts). Faces are counted at the same
score threshold for both.

Every measurement runs in a fresh Python process (timed after its imports, as a CLI user waits
for them too but they are not extraction), ours and the baseline alternating, `--repeat` rounds
per clip; the table shows the medians and the speed-up is median over median, with the lowest
and highest per-round ratio beside it. On this shared 2-core machine the same run drifts by
~30 % within minutes, so one round is not enough to compare.

Same faces: `faces diff` compares the face counts; `lm med/max` is, over the baseline's faces, the
distance (full-resolution px) from each of its 5 landmarks to the same landmark of our nearest face
in that frame: the median over all landmarks, and the worst face's worst landmark.

`cpu ms/fr` is CPU time per frame (the process with its threads + the ffmpeg decoder): on a busy
machine it is steadier than frames/s, which needs an idle CPU to mean anything. Both sides use
the same torch thread count (printed; `--threads 1` on a busy machine, where spinning OpenMP
threads inflate CPU time).

Memory: peak RSS of an extract process on one clip and on the same clip concatenated 10 times
(streaming means it should not grow).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import isa  # bench/isa.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "faces"
CLIPS = ["A_lp_d3.mp4", "B_lp_d6.mp4", "C_lp_d9.mp4", "D_lp_d13.mp4"]


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (ffmpeg)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def ours(clip: Path, frames: int | None) -> dict:
    """A default extract of `clip`: speed, faces written and their landmarks per frame."""
    from faceswap.extract import ExtractConfig, run_extract
    from faceswap.faces.store import Alignments

    with tempfile.TemporaryDirectory() as out:
        config = ExtractConfig(inputs=[clip], output=Path(out), end=frames)
        c0, t0 = _cpu_seconds(), time.perf_counter()
        summary = run_extract(config, show_progress=False)
        dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        (entry,) = Alignments.load(Path(out) / "alignments.json").sources.values()
    landmarks = {int(i): [f["landmarks"] for f in faces] for i, faces in entry["frames"].items()}
    n = summary.frames_read
    return {"frames": n, "fps": n / dt, "cpu_ms": 1000 * cpu / n, "faces": summary.faces_written, "landmarks": landmarks}


def baseline(clip: Path, frames: int | None, min_score: float) -> dict:
    """MTCNN on every full-resolution frame: speed, faces >= min_score and their landmarks per frame."""
    import cv2
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    cap = cv2.VideoCapture(str(clip))
    n = faces = 0
    landmarks: dict[int, list[np.ndarray]] = {}
    c0, t0 = _cpu_seconds(), time.perf_counter()
    while frames is None or n < frames:
        ok, frame = cap.read()
        if not ok:
            break
        boxes, probs, points = mtcnn.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), landmarks=True)
        kept = [] if boxes is None else [np.asarray(p, np.float64).tolist() for p, s in zip(points, probs) if s >= min_score]
        landmarks[n] = kept
        faces += len(kept)
        n += 1
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return {"frames": n, "fps": n / dt, "cpu_ms": 1000 * cpu / n, "faces": faces, "landmarks": landmarks}


def landmark_gaps(base: dict[int, list], mine: dict[int, list]) -> np.ndarray:
    """`(F, 5)` distances from each baseline face's landmarks to our nearest face's in that frame
    (faces we did not find are left out: the face counts show them)."""
    gaps = []
    for i, faces in base.items():
        for lm in faces:
            candidates = [np.linalg.norm(np.asarray(m) - np.asarray(lm), axis=1) for m in mine.get(i, [])]
            if candidates:
                gaps.append(min(candidates, key=lambda d: d.mean()))
    return np.array(gaps).reshape(-1, 5)


def measure(side: str, clip: Path, frames: int | None, threads: int | None) -> dict:
    """One measurement of `side` ("ours" or "base") in a fresh Python process."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "result.json"
        cmd = [sys.executable, __file__, "--worker", side, "--clips", str(clip), "--result", str(out)]
        cmd += ["--frames", str(frames)] if frames else []
        cmd += ["--threads", str(threads)] if threads else []
        subprocess.run(cmd, check=True)
        result = json.loads(out.read_text())
    result["landmarks"] = {int(i): faces for i, faces in result["landmarks"].items()}
    return result


def worker(args: argparse.Namespace) -> None:
    """`--worker`: import everything, then time one side on one clip and write the result."""
    import facenet_pytorch  # noqa: F401 - imports (~1.5 s CPU) outside the timing, for both sides
    import torch

    import faceswap.extract  # noqa: F401
    from faceswap.faces.detect import DetectorConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    clip = Path(args.clips[0])
    result = ours(clip, args.frames) if args.worker == "ours" else baseline(clip, args.frames, DetectorConfig().min_score)
    Path(args.result).write_text(json.dumps(result))


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
    parser.add_argument("--quick", action="store_true", help="first 160 frames of each clip, no memory check")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per clip (ours and the baseline alternate)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--clips", nargs="*", default=CLIPS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    parser.add_argument("--worker", choices=["ours", "base"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    isa.add_arguments(parser)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.isa_child is None:
        isa.run_per_isa(args, __file__, headline)
        return
    if args.quick:
        args.frames, args.no_memory = args.frames or 160, True
    import torch

    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{load:.1f} at start; {args.repeat} rounds per clip, medians")
    print(f"{'clip':<14}{'frames':>7}{'ours fr/s':>10}{'cpu ms/fr':>10}{'faces':>6}{'base fr/s':>10}{'cpu ms/fr':>10}"
          f"{'faces':>6}{'speed-up':>9}{'(rounds)':>13}{'cpu ratio':>10}{'faces diff':>11}{'lm med/max px':>15}")
    rows = []
    for name in args.clips:
        clip = SHARED / name
        mine_runs, base_runs = [], []
        for _ in range(max(1, args.repeat)):
            mine_runs.append(measure("ours", clip, args.frames, args.threads))
            if not args.no_baseline:
                base_runs.append(measure("base", clip, args.frames, args.threads))
        mine = mine_runs[-1]
        fps, cpu_ms = (float(np.median([r[k] for r in mine_runs])) for k in ("fps", "cpu_ms"))
        row = {"clip": name, "frames": mine["frames"], "ours_fps": fps, "ours_cpu_ms": cpu_ms, "ours_faces": mine["faces"],
               "ours_fps_rounds": [r["fps"] for r in mine_runs]}
        line = f"{name:<14}{mine['frames']:>7}{fps:>10.1f}{cpu_ms:>10.1f}{mine['faces']:>6}"
        if not args.no_baseline:
            base = base_runs[-1]
            base_fps, base_cpu = (float(np.median([r[k] for r in base_runs])) for k in ("fps", "cpu_ms"))
            ratios = [m["fps"] / b["fps"] for m, b in zip(mine_runs, base_runs)]
            gaps = landmark_gaps(base["landmarks"], mine["landmarks"])
            diff = (mine["faces"] - base["faces"]) / max(base["faces"], 1)
            med, worst = (float(np.median(gaps)), float(gaps.max())) if gaps.size else (float("nan"), float("nan"))
            row.update(base_fps=base_fps, base_cpu_ms=base_cpu, base_faces=base["faces"], speedup=fps / base_fps,
                       round_speedups=ratios, base_fps_rounds=[r["fps"] for r in base_runs], cpu_ratio=base_cpu / cpu_ms,
                       faces_diff=diff, landmark_median_px=med, landmark_max_px=worst)
            line += (f"{base_fps:>10.1f}{base_cpu:>10.1f}{base['faces']:>6}{row['speedup']:>8.1f}x"
                     f"{f'({min(ratios):.1f}-{max(ratios):.1f}x)':>13}{row['cpu_ratio']:>9.1f}x"
                     f"{diff:>+11.1%}{med:>8.2f}/{worst:<6.1f}")
        rows.append(row)
        print(line, flush=True)
    frames = sum(r["frames"] for r in rows)
    total_ours = frames / sum(r["frames"] / r["ours_fps"] for r in rows)
    cpu_ours = sum(r["frames"] * r["ours_cpu_ms"] for r in rows) / frames
    summary = {"frames": frames, "ours_fps": total_ours, "ours_cpu_ms": cpu_ours}
    if not args.no_baseline:
        total_base = frames / sum(r["frames"] / r["base_fps"] for r in rows)
        cpu_base = sum(r["frames"] * r["base_cpu_ms"] for r in rows) / frames
        print(f"{'all clips':<14}{frames:>7}{total_ours:>10.1f}{cpu_ours:>10.1f}{'':>6}{total_base:>10.1f}{cpu_base:>10.1f}{'':>6}"
              f"{total_ours / total_base:>8.1f}x{'':>13}{cpu_base / cpu_ours:>9.1f}x   (target >= 5x, faces within +-1%)")
        summary.update(base_fps=total_base, base_cpu_ms=cpu_base, speedup=total_ours / total_base)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (2 CPUs: anything above ~0.5 at the start means the figures are noisy)")
    if not args.no_memory:
        clip = SHARED / args.clips[0]
        with tempfile.TemporaryDirectory() as d:
            long_clip = concat(clip, 10, Path(d))
            one, ten = peak_rss_mib(clip), peak_rss_mib(long_clip)
        print(f"peak RSS: {clip.name} {one:.0f} MiB; same clip x10 {ten:.0f} MiB ({ten / one - 1:+.1%}; target within 10%)")
    print(json.dumps(rows))
    isa.write_child_result(args, {"all_clips": summary, "rows": rows}, threads=args.threads,
                           peak_n=1024 if args.quick else 2048)


def headline(figures: dict) -> dict[str, float]:
    """The table's columns from one ISA child's figures (all clips together)."""
    s = figures["all_clips"]
    out = {"ours fr/s": s["ours_fps"], "ours cpu ms/fr": s["ours_cpu_ms"]}
    if "base_fps" in s:
        out.update({"base fr/s": s["base_fps"], "speed-up": s["speedup"]})
    return out


if __name__ == "__main__":
    main()

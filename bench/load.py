"""Speed beside a busy process: train, extract, convert and detect, idle and beside one CPU burner.

    python bench/load.py                 # ~6 min on a 2-core CPU
    python bench/load.py --jobs train    # one job
    python bench/load.py --repeat 2      # medians of 2 runs per row

Every row is one `faceswap` command in a fresh process, timed by the wall clock from start to exit
(start-up included: it is what a user waits for), on shared clip A (B for the second identity):

- extract: `faceswap extract` of the first 240 frames of A (frames/s);
- train: 60 iterations of a new `lite` model (EG/s, 32 examples an iteration);
- convert: the first 150 frames of A with a lite model, reusing the alignments (frames/s);
- detect: `faceswap detect` of the first 150 frames of A (faces/s).

Each job runs idle, then beside one busy process (`--burner spin`: a Python loop that keeps one
core busy; `--burner copy`: a second copy of the same command, restarted until the timed one ends),
with the default thread policy and with `--threads` fixed at the CPU count (what torch does by
itself), where the command takes `--threads`. Printed: speed, and speed under load as a share of
idle speed. Target >= 40 % (an even share of the machine is 50 %).

The model and detector these jobs use are trained here first (a few seconds: speed does not depend
on how well they are trained). The clips are real people: outputs stay in a temp folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "faces"
CLIP_A, CLIP_B = SHARED / "A_lp_d3.mp4", SHARED / "B_lp_d6.mp4"
FACESWAP = [sys.executable, "-m", "faceswap"]
TARGET_SHARE = 0.40


def timed(cmd: list[str], repeat: int = 1) -> float:
    """Median wall seconds of `repeat` runs of a command; raises when it fails."""
    # detect exits 1 when nothing is flagged: a verdict, not a failure
    ok = (0, 1) if cmd[len(FACESWAP)] == "detect" and cmd[len(FACESWAP) + 1] != "train" else (0,)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode not in ok:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr[-400:]}")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


class Burner:
    """One busy process beside the timed one: a spinning Python loop, or copies of the same command."""

    def __init__(self, kind: str, cmd: list[str] | None = None, scratch: Path | None = None):
        self.kind, self.cmd, self.scratch = kind, cmd, scratch
        self.proc: subprocess.Popen | None = None
        self._stop = False

    def __enter__(self):
        if self.kind == "spin":
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        else:
            import threading

            def loop():
                while not self._stop:
                    self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL)
                    self.proc.wait()

            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        time.sleep(1.0)  # let it get going
        return self

    def __exit__(self, *exc):
        self._stop = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.kind != "spin":
            self._thread.join(10)
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()


def prepare(work: Path) -> dict[str, Path]:
    """Faces of A and B, a lite model and a detector for the jobs to use."""
    fa, fb, model, det = work / "faces_a", work / "faces_b", work / "model", work / "det"
    timed(FACESWAP + ["extract", str(CLIP_A), "-o", str(fa), "--end", "240", "--quiet"])
    timed(FACESWAP + ["extract", str(CLIP_B), "-o", str(fb), "--end", "240", "--quiet"])
    timed(FACESWAP + ["train", "--a", str(fa), "--b", str(fb), "-m", str(model), "--preset", "lite", "--iterations", "20",
                    "--save-every", "20", "--preview-every", "1000", "--log-every", "1000"])
    timed(FACESWAP + ["detect", "train", "--real", str(fa), "-m", str(model), "-o", str(det), "--iterations", "50", "--quiet"])
    return {"faces_a": fa, "faces_b": fb, "model": model, "det": det}


def job_command(job: str, work: Path, prep: dict[str, Path], tag: str, threads: int | None) -> tuple[list[str], float]:
    """The command of one job run and the amount of work it does (frames, examples or faces)."""
    t = [] if threads is None else ["--threads", str(threads)]
    out = work / f"{job}_{tag}"
    shutil.rmtree(out, ignore_errors=True)
    if job == "extract":
        return FACESWAP + ["extract", str(CLIP_A), "-o", str(out), "--end", "240", "--quiet"], 240
    if job == "train":
        return FACESWAP + ["train", "--a", str(prep["faces_a"]), "--b", str(prep["faces_b"]), "-m", str(out), "--preset", "lite",
                           "--iterations", "60", "--save-every", "1000", "--preview-every", "1000", "--log-every", "1000"] + t, 60 * 32
    if job == "convert":
        out.mkdir(parents=True)
        return FACESWAP + ["convert", str(CLIP_A), "-m", str(prep["model"]), "-o", str(out / "swap.mp4"), "--alignments",
                           str(prep["faces_a"] / "alignments.json"), "--end", "150", "--overwrite", "--quiet"] + t, 150
    if job == "detect":
        return FACESWAP + ["detect", str(CLIP_A), "-d", str(prep["det"]), "-m", str(prep["model"]), "--max-frames", "150",
                           "--quiet", "--device", "cpu"] + t, 150
    raise ValueError(job)


UNITS = {"extract": "frames/s", "train": "EG/s", "convert": "frames/s", "detect": "faces/s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", nargs="*", default=["train", "extract", "convert", "detect"], choices=list(UNITS))
    parser.add_argument("--burner", default="spin", choices=["spin", "copy"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if not CLIP_A.exists():
        sys.exit(f"Error: {CLIP_A} not found (the shared clips)")
    work = args.work or Path(tempfile.mkdtemp(prefix="faceswap-load-"))
    work.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0))
    print(f"load bench: {cpus} CPUs, burner {args.burner}, load average {os.getloadavg()[0]:.1f} at start; work in {work}")
    t0 = time.perf_counter()
    prep = prepare(work)
    print(f"prepared faces, model and detector in {time.perf_counter() - t0:.0f} s\n")
    print(f"{'job':8} {'threads':>10} {'idle':>10} {'loaded':>10} {'share':>6}  unit")
    rows = []
    for job in args.jobs:
        policies = [None] if job == "extract" else [None, cpus]  # extract sets its own threads
        for threads in policies:
            label = "default" if threads is None else f"fixed {threads}"
            cmd, work_units = job_command(job, work, prep, "idle", threads)
            idle = work_units / timed(cmd, args.repeat)
            cmd, _ = job_command(job, work, prep, "loaded", threads)
            copy_cmd, _ = job_command(job, work, prep, "copy", threads)
            with Burner(args.burner, copy_cmd):
                loaded = work_units / timed(cmd, args.repeat)
            share = loaded / idle
            rows.append((job, label, share))
            print(f"{job:8} {label:>10} {idle:10.1f} {loaded:10.1f} {share:6.0%}  {UNITS[job]}", flush=True)
    print(f"\nTARGETS (speed beside one busy process >= {TARGET_SHARE:.0%} of idle, default policy; "
          f"{time.perf_counter() - t0:.0f} s, load average {os.getloadavg()[0]:.1f} at end)")
    for job, label, share in rows:
        if label == "default":
            print(f"  {job:8} {share:5.0%}  {'pass' if share >= TARGET_SHARE else 'MISS'}")


if __name__ == "__main__":
    main()

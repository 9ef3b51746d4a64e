"""Driver of bench/gpu_check.sh: install the carried wheels, print the machine, run every stage on a GPU.

Run it through bench/gpu_check.sh (that sets PYTHONPATH and the `faceswap` shim); the subcommands:

    gpu_check.py install --wheels DIR --target DIR   # pip-install (--no-deps, --no-index) what does not import
    gpu_check.py machine                             # GPU, memory, torch / CUDA / Python versions
    gpu_check.py stages --device cuda --data DIR --work DIR --out DIR [--quick] [--budget S]
    gpu_check.py wrap --mem-file F -- faceswap ...   # run one command in-process, record its peak memory

Every stage runs in its own process under a timeout; its device, speed and peak memory go to a table
(and summary.json); a failed stage does not stop the next; the exit code is 1 if any stage failed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# import name -> the pip requirement whose wheel bench/gpu_check.sh --download fetches.
# The 64 MiB the device tool carries decide the rest:
# - ffmpeg: the 0.8.1 platform wheel (static ffmpeg 9.0.2, the dev venv's) is 68 MB alone, so the folder
#   holds imageio-ffmpeg 0.8.1's binary-free py3-none-any wheel (built from its sdist) and that wheel's
#   ffmpeg as .xz (50 MB), unpacked to scratch and passed as IMAGEIO_FFMPEG_EXE. Smaller wheels do not
#   work: 0.6.0/0.7.0's ffmpeg 7.0.2 prints no `frame=` in `-progress` for a stream copy (probe counts 0
#   frames, extract stops "past its end"); 0.5.1's ffmpeg 4.2.2 lacks -fps_mode.
# - kornia_rs (5.3 MB per CPython, 21 MB for 3.10-3.13) is only imported by kornia.io, which faceswap
#   never calls: a stub stands in for it (its attributes raise).
# - c2pa-python (16 MB + cryptography) does not fit: without it convert runs --no-credentials.
WHEELS = {
    # kornia 0.9 needs Python >= 3.11; 0.8.2 (the last for 3.10) ran the --quick stages as well.
    "kornia": "kornia==0.9.0" if sys.version_info >= (3, 11) else "kornia==0.8.2",
    "facenet_pytorch": "facenet-pytorch==2.5.3",  # --no-deps always: its requirements would pull a torch
    "ffmpeg": "ffmpeg-python==0.2.0",
    "past": "future==1.0.0",  # ffmpeg-python imports past.builtins
    "imageio_ffmpeg": "imageio-ffmpeg==0.8.1",  # the py3-none-any wheel: ffmpeg comes as .xz
    "isal": "isal==1.9.1",
    "requests": "requests==2.34.2",  # facenet_pytorch imports it at import time (never used: no downloads)
    "urllib3": "urllib3==2.8.0",
    "idna": "idna==3.20",
    "certifi": "certifi==2026.10.19.post1",
    "charset_normalizer": "charset-normalizer==3.5.3",
}
OPTIONAL = {"c2pa": "c2pa-python==0.38.1"}  # installed only when its wheel was put in the folder by hand


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def cmd_install(args) -> int:
    wheels, target = Path(args.wheels), Path(args.target)
    missing = [req for mod, req in WHEELS.items() if not has_module(mod)]
    names = {p.name.split("-")[0].lower().replace("_", "-") for p in wheels.glob("*.whl")}
    missing += [req for mod, req in OPTIONAL.items() if not has_module(mod) and req.split("==")[0] in names]
    rc = 0
    if missing:
        rc = pip_install(wheels, target, missing)
    else:
        print("install: every package imports already")
    if not has_module("kornia_rs"):
        stub = target / "kornia_rs"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text('"""Stub by bench/gpu_check.py: kornia imports kornia_rs for kornia.io only."""\n'
                                          "from . import io  # noqa: F401\n__version__ = '0+stub'\n")
        (stub / "io.py").write_text("def __getattr__(name):\n    raise RuntimeError("
                                    "f'kornia_rs.{name}: a stub (bench/gpu_check.py); kornia.io is not available')\n")
        print(f"install: kornia_rs stub -> {stub}")
    xz = sorted(wheels.glob("ffmpeg-*.xz"))
    if xz and not os.environ.get("IMAGEIO_FFMPEG_EXE"):
        import lzma

        exe = target.parent / "ffmpeg" / xz[-1].name[: -len(".xz")]
        exe.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(xz[-1]) as src, open(exe, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        exe.chmod(0o755)
        (target.parent / "ffmpeg_exe").write_text(str(exe))
        print(f"install: {xz[-1].name} -> {exe} (IMAGEIO_FFMPEG_EXE)")
    return rc


def pip_install(wheels: Path, target: Path, missing: list[str]) -> int:
    print(f"install: {' '.join(missing)} -> {target}", flush=True)
    if not wheels.is_dir():
        print(f"install: no wheel folder {wheels} (fill it with bench/gpu_check.sh --download and carry it)")
        return 1
    # --target: no write into the machine's environment (and no PEP 668 refusal); PYTHONPATH adds it.
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels), "--no-deps",
           "--no-compile", "--disable-pip-version-check", "--target", str(target), *missing]
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0:
        return subprocess.run(cmd).returncode
    print("install: this Python has no pip; unpacking the matching wheels instead")
    return unzip_wheels(wheels, target, missing)


def unzip_wheels(wheels: Path, target: Path, reqs: list[str]) -> int:
    """A wheel is a zip laid out for site-packages: for these packages (no scripts, no data) unpacking
    the one whose tags fit this interpreter is the whole install."""
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    target.mkdir(parents=True, exist_ok=True)
    rc = 0
    for req in reqs:
        name, version = req.split("==")
        stem = f"{name.replace('-', '_').lower()}-{version}-"
        found = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(stem)]
        fit = [w for w in found if f"-{py}-" in w.name or "-abi3-" in w.name or "-py3-none-" in w.name
               or "-py2.py3-none-" in w.name]
        if not fit:
            print(f"install: no wheel of {req} for {py} in {wheels}")
            rc = 1
            continue
        with zipfile.ZipFile(fit[0]) as z:
            z.extractall(target)
        for exe in target.glob("imageio_ffmpeg/binaries/ffmpeg-*"):
            exe.chmod(0o755)
    return rc


def cmd_machine(args) -> int:
    import torch

    print(f"Python {platform.python_version()} ({sys.executable}), {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"GPU {i}: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute {p.major}.{p.minor}, "
                  f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        print("GPU: none visible to torch")
    smi = shutil.which("nvidia-smi")
    if smi:
        r = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,memory.used", "--format=csv,noheader"],
                           capture_output=True, text=True)
        print(f"nvidia-smi: {r.stdout.strip() or r.stderr.strip()}")
    for mod in ("torchvision", "cv2", "kornia", "facenet_pytorch", "imageio_ffmpeg", "isal", "c2pa"):
        try:
            m = __import__(mod)
            print(f"  {mod} {getattr(m, '__version__', '?')}")
        except Exception as e:  # report and go on: the stage that needs it fails on its own
            print(f"  {mod}: not importable ({type(e).__name__}: {e})")
    try:
        import imageio_ffmpeg

        print(f"  ffmpeg: {imageio_ffmpeg.get_ffmpeg_exe()} (version {imageio_ffmpeg.get_ffmpeg_version()})")
    except Exception as e:
        print(f"  ffmpeg: none ({e})")
    return 0


def cmd_startup(args) -> int:
    """Import what the stages import and touch the device: the fixed cost in each stage's wall time."""
    t = time.perf_counter()
    import torch

    import faceswap.convert.swap, faceswap.detect.run, faceswap.extract, faceswap.train.loop  # noqa: F401

    t_import = time.perf_counter() - t
    torch.zeros(1, device=args.device).add_(1).cpu()
    print(f"startup: {t_import:.1f} s imports + {time.perf_counter() - t - t_import:.1f} s {args.device} init")
    return 0


def cmd_wrap(args) -> int:
    """Run `faceswap ...` or a script in this process so its peak memory can be read afterwards."""
    import resource

    argv = args.argv[1:] if args.argv and args.argv[0] == "--" else args.argv
    rc = 0
    try:
        if argv[0] == "faceswap":
            from faceswap.cli import main

            sys.argv = argv
            main()
        else:
            import runpy

            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        mem = {"rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            mem.update(cuda_used=True, cuda_alloc_peak_mib=torch.cuda.max_memory_allocated() / 2**20,
                       cuda_reserved_peak_mib=torch.cuda.max_memory_reserved() / 2**20)
        else:
            mem["cuda_used"] = False
        Path(args.mem_file).write_text(json.dumps(mem))
    return rc


class SmiSampler:
    """Device-wide GPU memory (all processes, CUDA context included) and utilisation every 200 ms."""

    def __init__(self):
        self.proc, self.used, self.util = None, [], []
        smi = shutil.which("nvidia-smi")
        if smi:
            self.proc = subprocess.Popen([smi, "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        self.mark = 0

    def _read(self):
        for line in self.proc.stdout:
            try:
                used, util = (float(v) for v in line.split(",")[:2])  # first GPU's line and any others
            except ValueError:
                continue
            self.used.append(used)
            self.util.append(util)

    def window(self) -> tuple[float | None, float | None]:
        """(peak MiB used, mean % utilisation) since the last call."""
        used, util = self.used[self.mark:], self.util[self.mark:]
        self.mark = len(self.used)
        return (max(used) if used else None), (sum(util) / len(util) if util else None)

    def stop(self):
        if self.proc:
            self.proc.terminate()


class Stages:
    def __init__(self, args):
        self.args, self.rows, self.t0 = args, [], time.monotonic()
        self.out, self.work = Path(args.out), Path(args.work)
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.smi = SmiSampler()

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.t0)

    def run(self, name: str, cmd: list[str], timeout: float, speed=None, ok_codes=(0,), stdout_to: Path | None = None) -> dict:
        """One stage in its own process under min(timeout, what the budget has left); its output goes
        to logs/<name>.log (stdout to `stdout_to` instead, when given)."""
        limit = int(min(timeout, self.left() - 5))
        row = {"stage": name, "device": self.args.device, "status": "skipped", "wall_s": 0.0, "speed": "",
               "cuda_peak_mib": None, "smi_peak_mib": None, "gpu_util": None, "rss_peak_mib": None}
        self.rows.append(row)
        if limit < 10:
            row["status"] = "skipped (budget)"
            print(f"\n== {name}: skipped, {self.left():.0f} s of the budget left", flush=True)
            return row
        log, mem_file = self.logs / f"{name}.log", self.work / f"{name}.mem.json"
        mem_file.unlink(missing_ok=True)
        full = ["timeout", "-k", "10", str(limit), *(["nice", "-n", "10"] if self.args.device == "cpu" else []),
                sys.executable, str(HERE / "gpu_check.py"), "wrap", "--mem-file", str(mem_file), "--", *cmd]
        print(f"\n== {name} (timeout {limit} s): {' '.join(cmd)}", flush=True)
        self.smi.window()
        t = time.monotonic()
        with open(log, "w") as f, open(stdout_to or os.devnull, "w") as so:
            p = subprocess.run(full, stdout=so if stdout_to else f, stderr=f if stdout_to else subprocess.STDOUT,
                               cwd=self.work, stdin=subprocess.DEVNULL)
        row["wall_s"] = time.monotonic() - t
        row["smi_peak_mib"], row["gpu_util"] = self.smi.window()
        text = log.read_text(errors="replace")
        print("\n".join("   " + ln for ln in text.strip().splitlines()[-6:]), flush=True)
        if p.returncode in (124, 137):
            row["status"] = f"TIMEOUT ({limit} s)"
        elif p.returncode not in ok_codes:
            row["status"] = f"FAILED (rc {p.returncode})"
        else:
            row["status"] = "ok"
        if mem_file.exists():
            mem = json.loads(mem_file.read_text())
            row["rss_peak_mib"] = mem.get("rss_peak_mib")
            row["cuda_peak_mib"] = mem.get("cuda_alloc_peak_mib")
            if self.args.device == "cuda" and not mem.get("cuda_used"):
                row["device"] = "cuda asked, CUDA NOT USED"
                if row["status"] == "ok":
                    row["status"] = "FAILED (no CUDA)"
        if speed and row["status"] == "ok":
            try:
                row["speed"] = speed(text, row["wall_s"])
            except Exception as e:  # a changed output format must not hide the stage's own result
                row["speed"] = f"(speed not read: {type(e).__name__})"
                if stdout_to is not None:  # detect: exit 1 is also "nothing flagged", so the report decides
                    row["status"] = "FAILED (no report)"
        return row

    def table(self) -> str:
        def mib(v):
            return "-" if v is None else f"{v:,.0f}"

        head = f"{'stage':22s} {'device':10s} {'status':18s} {'wall s':>7s}  {'cuda peak MiB':>13s} {'smi peak MiB':>12s} " \
               f"{'GPU %':>5s} {'RSS MiB':>8s}  speed"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            util = "-" if r["gpu_util"] is None else f"{r['gpu_util']:.0f}"
            lines.append(f"{r['stage']:22s} {r['device']:10s} {r['status']:18s} {r['wall_s']:7.1f}  {mib(r['cuda_peak_mib']):>13s} "
                         f"{mib(r['smi_peak_mib']):>12s} {util:>5s} {mib(r['rss_peak_mib']):>8s}  {r['speed']}")
        return "\n".join(lines)


def _done_frames(text: str, wall: float) -> str:
    m = re.search(r"Done: (\d+) frames read, (\d+) faces written", text)
    return f"{int(m[1]) / wall:.1f} frames/s ({m[1]} frames, {m[2]} faces; wall incl. start-up)"


def _train_speed(model_dir: Path):
    def read(text: str, wall: float) -> str:
        rows = list(csv.DictReader(open(model_dir / "log.csv")))
        m = re.search(r"at iteration (\d+)", text)
        if not rows:
            return f"iteration {m[1] if m else '?'} (no log.csv row yet)"
        last = rows[-1]
        it, el = int(last["iteration"]), float(last["elapsed_s"])
        return f"{it / el:.2f} it/s, {float(last['eg_per_s']):.3g} EG/s (last log row), {m[1] if m else it} iterations"
    return read


def _convert_speed(text: str, wall: float) -> str:
    m = re.search(r"Done: (\d+) frames, (\d+) faces swapped.*?\(([\d.]+) frames/s\)", text)
    return f"{m[3]} frames/s ({m[1]} frames, {m[2]} swapped)"


def _detect_train_speed(text: str, wall: float) -> str:
    m = re.search(r"Done: (\d+) train / (\d+) fit / (\d+) calibration real faces.*?(\d+) fakes.*?ROC-AUC ([\d.]+)", text)
    faces = sum(int(m[i]) for i in range(1, 5))
    return f"{faces / wall:.1f} faces/s ({faces} faces; wall incl. start-up), held-out ROC-AUC {m[5]}"


def _detect_speed(report: Path):
    def read(text: str, wall: float) -> str:
        d = json.loads(report.read_text())
        frames = sum((s.get("watermark") or {}).get("frames", 0) for s in d["sources"])
        faces = sum(s.get("faces") or 0 for s in d["sources"])
        verdicts = ", ".join(f"{Path(s['source']).name}: {s['verdict']}" for s in d["sources"])
        return f"{frames / wall:.1f} frames/s ({frames} frames, {faces} faces; wall) | {verdicts}"
    return read


def _bench_speed(text: str, wall: float) -> str:
    best = re.findall(r"ours (\S+)\s.*?([\d.]+) EG/s", text)
    return ", ".join(f"{k} {v} EG/s" for k, v in best[:4]) or "see logs/bench_train.log"


def clips(data: str | None) -> tuple[list[Path], str]:
    """The two clips extract uses: the first two (A, B) of --data, else of ../shared/data/faces or
    shared/data/faces beside/inside the repo, else the bundled synthetic samples."""
    dirs = [Path(data)] if data else [REPO / "../shared/data/faces", REPO / "shared/data/faces"]
    for d in dirs:
        found = sorted(d.resolve().glob("*.mp4")) if d.is_dir() else []
        if len(found) >= 2:
            return found[:2], str(d.resolve())
    print(f"note: no two .mp4 clips in {', '.join(map(str, dirs))}: using the bundled synthetic samples")
    return [REPO / "samples/identity_a.mp4", REPO / "samples/identity_b.mp4"], "bundled synthetic samples"


def cmd_stages(args) -> int:
    st = Stages(args)
    dev, quick = args.device, args.quick
    threads = ["--threads", "1"] if dev == "cpu" else []
    (clip_a, clip_b), where = clips(args.data)
    print(f"\nclips: {clip_a.name}, {clip_b.name} ({where}); device {dev}; budget {args.budget:.0f} s"
          f"{'; --quick' if quick else ''}", flush=True)
    end = ["--end", "24"] if quick else []
    # What every stage's wall time includes before its first frame: imports, and CUDA init on a GPU.
    st.run("startup", [str(HERE / "gpu_check.py"), "startup", "--device", dev], 60,
           lambda text, wall: re.search(r"startup: (.*)", text)[1])
    faces = {}
    for ident, clip in (("a", clip_a), ("b", clip_b)):
        faces[ident] = st.work / f"faces_{ident}"
        st.run(f"extract_{ident}", ["faceswap", "extract", str(clip), "-o", str(faces[ident]), "--device", dev, "--quiet",
                                    "--overwrite", *end], 60 if quick else 90, _done_frames)

    from faceswap.model.autoencoder import PRESETS

    # hq, plus every preset of 256 px (none in PRESETS when this was written: lite/original 64, hq 128).
    presets = ["hq"] + [n for n, p in PRESETS.items() if p.size == 256 and n != "hq"]
    minutes = 0.1 if quick else args.train_minutes
    model_dirs = {}
    for name in presets:
        md = st.work / f"model_{name}"
        model_dirs[name] = md
        opts = ["--batch-size", "4", "--log-every", "1"] if quick else ["--log-every", "50"]
        st.run(f"train_{name}", ["faceswap", "train", "--a", str(faces["a"]), "--b", str(faces["b"]), "-m", str(md),
                                 "--preset", name, "--minutes", str(minutes), "--device", dev, "--overwrite",
                                 "--save-every", "100000", "--preview-every", "100000", *opts, *threads],
               minutes * 60 + (90 if quick else 60), _train_speed(md))
        for f in ("log.csv", "config.json", "loss.png"):  # no previews: faces of the clips stay on the machine
            if (md / f).exists():
                (st.out / f"train_{name}").mkdir(exist_ok=True)
                shutil.copy(md / f, st.out / f"train_{name}" / f)

    model = model_dirs["hq"]
    swap = st.work / "swap.mp4"
    credentials = [] if has_module("c2pa") else ["--no-credentials"]
    st.run("convert", ["faceswap", "convert", str(clip_a), "-m", str(model), "-o", str(swap), "--alignments",
                       str(faces["a"] / "alignments.json"), "--device", dev, "--overwrite", "--quiet", *credentials,
                       *(["--end", "16"] if quick else []), *threads], 60 if quick else 90, _convert_speed)
    detector = st.work / "detector"
    st.run("detect_train", ["faceswap", "detect", "train", "--real", str(faces["a"]), "--real", str(faces["b"]),
                            "-o", str(detector), "-m", str(model), "--device", dev, "--overwrite", "--quiet",
                            *(["--iterations", "5", "--size", "64"] if quick else []), *threads],
           240 if quick else 120, _detect_train_speed)
    report = st.work / "detect.json"
    # Exit 0: something flagged, 1: nothing flagged; both are a finished run. The real clip B beside the
    # swap keeps the stage meaningful when a short training leaves faces MTCNN does not find.
    p_cmd = ["faceswap", "detect", str(swap), str(clip_b), "-d", str(detector), "-m", str(model), "--json",
             "--device", dev, "--quiet", "--max-frames", "24" if quick else "300", *threads]
    st.run("detect", p_cmd, 120 if quick else 90, _detect_speed(report), ok_codes=(0, 1), stdout_to=report)
    if report.exists():
        shutil.copy(report, st.out / "detect.json")
    if args.bench and (not quick or args.bench_in_quick):
        st.run("bench_train", [str(HERE / "train.py"), "--device", dev, "--quick", *threads], 150, _bench_speed)
    elif args.bench:
        st.rows.append({"stage": "bench_train", "device": dev, "status": "skipped (--quick)", "wall_s": 0.0,
                        "speed": "bench/train.py takes minutes on a CPU", "cuda_peak_mib": None, "smi_peak_mib": None,
                        "gpu_util": None, "rss_peak_mib": None})
    st.smi.stop()

    table = st.table()
    print(f"\nSummary ({time.monotonic() - st.t0:.0f} s; cuda peak = torch.cuda.max_memory_allocated in the stage's "
          f"process; smi peak = nvidia-smi memory.used, whole GPU)\n{table}")
    (st.out / "summary.txt").write_text(table + "\n")
    (st.out / "summary.json").write_text(json.dumps(st.rows, indent=1))
    failed = [r["stage"] for r in st.rows if not (r["status"] == "ok" or r["status"].startswith("skipped (--quick"))]
    if failed:
        print(f"\nFAILED or not run: {', '.join(failed)} (logs in {st.logs})")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--wheels", required=True)
    p.add_argument("--target", required=True)
    sub.add_parser("machine")
    p = sub.add_parser("startup")
    p.add_argument("--device", default="cuda")
    p = sub.add_parser("wrap")
    p.add_argument("--mem-file", required=True)
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p = sub.add_parser("stages")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--data", default=None)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--budget", type=float, default=500)
    p.add_argument("--train-minutes", type=float, default=2.0)
    p.add_argument("--no-bench", dest="bench", action="store_false")
    p.add_argument("--bench-in-quick", action="store_true")
    args = ap.parse_args()
    return {"install": cmd_install, "machine": cmd_machine, "startup": cmd_startup, "wrap": cmd_wrap,
            "stages": cmd_stages}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())

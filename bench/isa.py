"""Run a bench once per CPU instruction set, each in a fresh process, and print one table of the rows.

A bench script adds `--isa` (default `native,avx2`) with `add_arguments`; its `main` then calls
`run_per_isa`, which reruns the same script with the same arguments in a child process per ISA
(environment from `isa_env`), streams the child's own output, reads back the JSON the child writes
with `write_child_result` (its figures, `torch.backends.cpu.get_cpu_capability()` and the fp32
matmul peak measured in that child on the bench's thread count) and prints a rich table: a row per
ISA and the ratio emulated / native. The last line printed is `{"isa_rows": [...]}` (JSON).

AVX2 emulation holds every kernel library we use to AVX2 (the process must start with these set):
ATen's own kernels (ATEN_CPU_CAPABILITY), oneDNN's convolutions (ONEDNN_MAX_CPU_ISA), MKL's sgemm
behind fp32 matmul / Linear (MKL_ENABLE_INSTRUCTIONS: neither of the first two reaches MKL) and
OpenCV's dispatch (OPENCV_CPU_DISABLE=AVX512-SKX, the one AVX-512 target this OpenCV build has; set
only on AVX-512 CPUs, as .ci/run does, because OpenCV warns about disabling features the CPU lacks).
oneDNN at AVX2 also reports no native bf16, so `--precision auto` picks fp32 as it would there.
On a CPU without AVX-512 the native child already runs AVX2 kernels: the emulated row is then the
native row (not run twice) and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ISAS = ("native", "avx2")
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def cpu_has_avx512() -> bool:
    """Whether the CPU advertises AVX-512F (Linux /proc/cpuinfo; False where it cannot be read)."""
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def isa_env(name: str) -> dict[str, str]:
    """Environment variables that hold a fresh process's kernels to ISA `name` ("native": none)."""
    if name == "native":
        return {}
    if name != "avx2":
        raise ValueError(f"unknown ISA {name!r} (choose from {', '.join(ISAS)})")
    return {**AVX2_ENV, **({"OPENCV_CPU_DISABLE": "AVX512-SKX"} if cpu_has_avx512() else {})}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--isa` (comma-separated, default both) and the hidden child-side options."""
    parser.add_argument("--isa", default=",".join(ISAS),
                        help="comma-separated ISAs, each run in a fresh process: native, avx2 (default both)")
    parser.add_argument("--isa-child", choices=ISAS, help=argparse.SUPPRESS)
    parser.add_argument("--isa-result", help=argparse.SUPPRESS)


def capability() -> str:
    """ATen's kernel level in this process: AVX512, AVX2, DEFAULT, ..."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def matmul_peak(n: int = 2048, tries: int = 5, threads: int | None = None, device="cpu") -> float:
    """Best GFLOP/s of `n`^3 fp32 matmuls on `device` (best of `tries` x 3, as other load only lowers it).
    The one peak every bench uses (bench/train.py passes its device, so a GPU's is timed synchronised)."""
    import torch

    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b
        best = 0.0
        for _ in range(tries):
            sync()
            t = time.perf_counter()
            for _ in range(3):
                a @ b
            sync()
            best = max(best, 3 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(before)


def write_child_result(args: argparse.Namespace, figures, threads: int | None = None, peak: float | None = None,
                       peak_n: int = 2048) -> None:
    """In a `--isa-child` process: write its ISA row (figures + capability + matmul peak) for the parent.
    `peak` is the bench's own measurement where it has one; otherwise it is measured here on `threads`."""
    if not getattr(args, "isa_result", None):
        return
    import torch

    threads = threads or torch.get_num_threads()
    row = {"isa": args.isa_child, "env": isa_env(args.isa_child), "capability": capability(), "threads": threads,
           "matmul_peak_gflops": peak if peak is not None else matmul_peak(peak_n, threads=threads),
           "matmul_n": peak_n, "figures": figures}
    Path(args.isa_result).write_text(json.dumps(row, default=float))


def requested(spec: str) -> list[str]:
    """ISA names from `--isa`, native first (the emulated row is compared with it)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in ISAS]
    if bad or not names:
        raise SystemExit(f"--isa: unknown {', '.join(bad) or 'empty list'} (choose from {', '.join(ISAS)})")
    return [n for n in ISAS if n in names]


def _child_argv(argv: list[str]) -> list[str]:
    """`argv` without `--isa X` / `--isa=X` (the child runs exactly one ISA)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--isa":
            skip = True
        elif not a.startswith("--isa="):
            out.append(a)
    return out


def run_per_isa(args: argparse.Namespace, script: str, headline: Callable[[dict], dict[str, float]],
                argv: list[str] | None = None, extra: dict[str, list[str]] | None = None) -> list[dict]:
    """Run `script` once per ISA in `args.isa`, each in a fresh process, then print the table.

    headline: the child's `figures` -> {column: number}, the few figures the table shows.
    argv: the arguments for every child (default: this process's, less `--isa`); extra: more per ISA.
    Returns the rows (as the children wrote them, plus "note")."""
    argv = _child_argv(sys.argv[1:] if argv is None else argv)
    rows: list[dict] = []
    for name in requested(args.isa):
        native = next((r for r in rows if r["isa"] == "native"), None)
        if name != "native" and native and native["capability"] not in ("AVX512",):
            rows.append({**native, "isa": name, "env": isa_env(name),
                         "note": f"= native: this CPU's kernels are {native['capability']} already"})
            continue
        env = isa_env(name)
        print(f"\n=== ISA {name}: {' '.join(f'{k}={v}' for k, v in env.items()) or 'no overrides'} (fresh process) ===",
              flush=True)
        with tempfile.TemporaryDirectory() as d:
            result = Path(d) / "isa.json"
            cmd = [sys.executable, script, *argv, *(extra or {}).get(name, []), "--isa-child", name, "--isa-result", str(result)]
            subprocess.run(cmd, env={**os.environ, **env}, check=True)
            row = json.loads(result.read_text())
        if name == "avx2" and row["capability"] != "AVX2":
            row["note"] = f"NOT emulated: the child's kernels are {row['capability']}"
        elif name == "native" and row["capability"] != "AVX512":
            row["note"] = "no AVX-512: the emulated row is this one"
        rows.append(row)
    print_table(rows, headline)
    print(json.dumps({"isa_rows": rows}, default=float))
    return rows


def print_table(rows: list[dict], headline: Callable[[dict], dict[str, float]]) -> None:
    """One rich table: ISA, capability, threads, matmul peak, the headline figures; then emulated / native."""
    from rich.console import Console
    from rich.table import Table

    cols = [{"fp32 matmul GFLOP/s": r["matmul_peak_gflops"], **headline(r["figures"])} for r in rows]
    names = list(dict.fromkeys(k for c in cols for k in c))
    table = Table(title=f"per ISA ({os.cpu_count()} CPUs; each row a fresh process)")
    for h in ["ISA", "capability", "threads", *names, "note"]:
        table.add_column(h, justify="left" if h in ("ISA", "capability", "note") else "right")
    fmt = lambda v: "-" if v is None else f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"  # noqa: E731
    for r, c in zip(rows, cols):
        table.add_row(r["isa"], r["capability"], str(r["threads"]), *(fmt(c.get(k)) for k in names), r.get("note", ""))
    native = next((c for r, c in zip(rows, cols) if r["isa"] == "native"), None)
    for r, c in zip(rows, cols):
        if r["isa"] != "native" and native:
            ratio = [None if c.get(k) is None or not native.get(k) else c[k] / native[k] for k in names]
            table.add_row(f"{r['isa']} / native", "", "", *("-" if v is None else f"{v:.2f}x" for v in ratio), "")
    Console(width=None if sys.stdout.isatty() else 220).print(table)

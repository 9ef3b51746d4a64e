"""Training speed on this machine: EG/s and achieved GFLOP/s per preset, against a naive loop and matmul peak.

    python bench/train.py            # every preset, ~5 min on a 2-core CPU
    python bench/train.py --quick    # fewer steps, the GPU presets (hq, hd) skipped, ~2 min per ISA
    python bench/train.py --compile  # also time torch.compile (slow to start)
    python bench/train.py --device cuda --quick   # on a GPU (bf16 where the GPU has it)
    python bench/train.py --isa native            # one ISA only (default: native and AVX2 emulation)

On the CPU every run is repeated per ISA in a fresh process (bench/isa.py): the native kernels and
AVX2 emulation (what an AVX2-only CPU runs), then one table with each ISA's capability, fp32 matmul
peak (the best of this script's in-run peaks) and headline figures, and the ratio emulated / native.

EG/s = examples per second with A and B both counted (batch 16 per identity = 32 examples a step).
Achieved GFLOP/s = EG/s x the FLOPs of one training example, counted by torch's FlopCounterMode over
a real forward + backward (convs, matmuls), so it is comparable to the fp32 matmul peak measured in
the same run (best of several 2048^3 sgemm timings).

The naive loop is how the classic code trains: a torch DataLoader over a Dataset whose __getitem__
augments one face with numpy/cv2 (random affine + flip, 5x5 random warp via cv2.remap, Lab colour
jitter), default threads, fp32, and one encoder/decoder pass per identity. Ours: uint8 caches on
the device, whole-batch kornia augmentation, both identities through the encoder in one batch, and
bf16 autocast where the CPU has native bf16 (`--precision auto`).

Numbers on a shared machine move with the other load; every row is measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import isa  # bench/isa.py (this script's folder is on sys.path)

from faceswap.device import pick_device
from faceswap.faces.align import template_eye_mouth_mask, template_face_mask
from faceswap.model.autoencoder import PRESETS, build_model, count_parameters, forward_flops
from faceswap.train.augment import AugmentConfig, Augmenter
from faceswap.train.data import sample_batch
from faceswap.train.losses import DEFAULT_LOSS, training_loss

BATCH = 16  # per identity
DEVICE = torch.device("cpu")  # set once by --device


def sync() -> None:
    """Wait for queued GPU work: CUDA kernels run asynchronously, so timings need it."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def matmul_peak() -> float:
    """fp32 matmul peak of this run's device (`isa.matmul_peak`)."""
    return isa.matmul_peak(device=DEVICE)


def synthetic_faces(n: int, size: int, seed: int) -> torch.Tensor:
    """`(n, 3, size, size)` uint8 smooth random images: enough for timing, no data files needed."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=g)
    return (torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1) * 255).byte()


class OurStep:
    """One iteration of faceswap.train.loop: sample, augment (batch, kornia), forward both, backward, Adam."""

    def __init__(self, preset: str, precision: str, channels_last: bool = False, compile_: bool = False):
        torch.manual_seed(0)
        self.model = build_model(preset).to(DEVICE)
        self.size = self.model.size
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if compile_ else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), 5e-5, betas=(0.5, 0.999), fused=True)
        masks = torch.cat([template_face_mask(self.size), template_eye_mouth_mask(self.size)]).to(DEVICE)
        self.aug = Augmenter(self.size, masks, AugmentConfig())
        # Caches and RNG on the device, as faceswap.train.loop keeps them.
        self.faces_a, self.faces_b = synthetic_faces(256, self.size, 1).to(DEVICE), synthetic_faces(256, self.size, 2).to(DEVICE)
        self.gen = torch.Generator(device=DEVICE).manual_seed(0)
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.channels_last = channels_last

    def augment(self):
        xa, ya, ma = self.aug(sample_batch(self.faces_a, BATCH, self.gen), self.gen)
        xb, yb, mb = self.aug(sample_batch(self.faces_b, BATCH, self.gen), self.gen)
        if self.channels_last:
            xa, xb = xa.contiguous(memory_format=torch.channels_last), xb.contiguous(memory_format=torch.channels_last)
        return xa, ya, ma, xb, yb, mb

    def model_step(self, xa, ya, ma, xb, yb, mb):
        with torch.autocast(DEVICE.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            oa, ob = self.step_model(xa, xb)
        loss = training_loss(oa.float(), ya, ma, DEFAULT_LOSS, 1.0) + training_loss(ob.float(), yb, mb, DEFAULT_LOSS, 1.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def __call__(self):
        self.model_step(*self.augment())


class NaiveStep:
    """One iteration of `original` trained the naive way (see the module docstring)."""

    def __init__(self):
        from torch.utils.data import DataLoader, Dataset

        class Faces(Dataset):
            def __init__(self, faces: np.ndarray, seed: int):
                self.faces, self.rng = faces, np.random.default_rng(seed)

            def __len__(self):
                return 10**9

            def __getitem__(self, i):
                img = self.faces[self.rng.integers(len(self.faces))].astype(np.float32) / 255
                s, r = img.shape[0], self.rng
                m = cv2.getRotationMatrix2D((s / 2, s / 2), r.uniform(-10, 10), 1 + r.uniform(-0.05, 0.05))
                m[:, 2] += r.uniform(-0.05, 0.05, 2) * s
                img = cv2.warpAffine(img, m, (s, s), borderMode=cv2.BORDER_REPLICATE)
                if r.random() < 0.5:
                    img = img[:, ::-1]
                lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB)
                lab[..., 0] = np.clip((lab[..., 0] - 50) * (1 + r.uniform(-0.15, 0.15)) + 50 + r.uniform(-6, 6), 0, 100)
                lab[..., 1:] += r.uniform(-6, 6, 2).astype(np.float32)
                img = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB), 0, 1)
                grid = np.linspace(0, s - 1, 5)
                mx, my = np.meshgrid(grid, grid)
                mx = cv2.resize((mx + r.normal(0, 0.02 * s, (5, 5))).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
                my = cv2.resize((my + r.normal(0, 0.02 * s, (5, 5))).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
                warped = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                return torch.from_numpy(warped).permute(2, 0, 1), torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)

        torch.manual_seed(0)
        self.model = build_model("original").to(DEVICE)
        self.opt = torch.optim.Adam(self.model.parameters(), 5e-5, betas=(0.5, 0.999))
        faces = [synthetic_faces(256, 64, k).permute(0, 2, 3, 1).numpy() for k in (1, 2)]
        self.loaders = [iter(DataLoader(Faces(f, k), batch_size=BATCH)) for k, f in enumerate(faces)]

    def __call__(self):
        for ident, loader in zip("ab", self.loaders):
            x, y = (t.to(DEVICE) for t in next(loader))
            out = self.model.decoders[ident](self.model.encoder(x))
            loss = (out - y).abs().mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()


def interleaved(fns: dict, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each fn, timed round-robin so load drift hits them all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def time_steps(fn, steps: int, warmup: int) -> float:
    """Median seconds per call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_flops_per_example(step: OurStep) -> float:
    """FLOPs of one training example (forward + backward), counted over one real step."""
    batch = step.augment()
    with FlopCounterMode(display=False) as fc:
        step.model_step(*batch)
    return fc.get_total_flops() / (2 * BATCH)


def adam_step_seconds(fused: bool) -> float:
    """One Adam step over `original`'s 82 M parameters (the naive loop uses the default implementation)."""
    model = build_model("original").to(DEVICE)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt = torch.optim.Adam(model.parameters(), 5e-5, betas=(0.5, 0.999), fused=fused)
    return time_steps(opt.step, 3, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and no GPU presets (hq, hd) (about 2 minutes per ISA)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on lite")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for every row (default: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or auto; every row runs there")
    isa.add_arguments(ap)
    args = ap.parse_args()
    global DEVICE
    DEVICE = pick_device(args.device)
    if DEVICE.type == "cpu" and args.isa_child is None:
        isa.run_per_isa(args, __file__, headline)
        return
    figures: dict = {"presets": {}}
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, warmup = (3, 1) if args.quick else (8, 2)
    if DEVICE.type == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        print(f"torch {torch.__version__} CUDA {torch.version.cuda}, {torch.cuda.get_device_name(DEVICE)}, GPU bf16: {bf16_ok}, batch {BATCH} per identity")
    else:
        bf16_ok = torch.ops.mkldnn._is_mkldnn_bf16_supported()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU bf16 native: {bf16_ok}, batch {BATCH} per identity")
    peaks = [matmul_peak()]
    print(f"fp32 matmul peak (2048^3, best of 5): {peaks[0]:.0f} GFLOP/s")

    presets = [p for p in PRESETS if not (args.quick and p in ("hq", "hd"))]
    for name in presets:
        m = build_model(name)
        print(f"\n{name}: {count_parameters(m) / 1e6:.1f} M params, {forward_flops(m) / 1e9:.2f} GFLOP forward per example", flush=True)
        del m
        variants = [("fp32", False)] + ([("bf16", False)] if bf16_ok else [])
        if name == "original" and not args.quick:
            variants.append(("fp32", True))
        stepper = {f"{precision}{' channels_last' if cl else ''}": OurStep(name, precision, channels_last=cl) for precision, cl in variants}
        flops = train_flops_per_example(next(iter(stepper.values())))
        sec = interleaved(stepper, *((2, 1) if name in ("hq", "hd") else (steps, warmup)))
        for label, step in stepper.items():
            aug = time_steps(step.augment, 5, 1)
            egs = 2 * BATCH / sec[label]
            figures["presets"].setdefault(name, {})[label] = {
                "egs": egs, "gflops": egs * flops / 1e9, "peak_share": egs * flops / 1e9 / max(peaks), "aug_share": aug / sec[label]}
            print(f"  ours {label:18s} {egs:6.1f} EG/s  {egs * flops / 1e9:5.0f} GFLOP/s ({egs * flops / 1e9 / max(peaks):4.0%} of fp32 peak)"
                  f"  augmentation {aug / sec[label]:4.0%} of the step  ({flops / 1e9:.1f} GFLOP per training example)", flush=True)
        del stepper
        peaks.append(matmul_peak())
    if args.compile:
        for precision in (["bf16"] if bf16_ok else []) + ["fp32"]:
            step = OurStep("lite", precision, compile_=True)
            t = time.perf_counter()
            step()
            sync()
            first, egs = time.perf_counter() - t, 2 * BATCH / time_steps(step, steps, 1)
            print(f"  lite {precision} torch.compile: first step {first:.0f} s, then {egs:.1f} EG/s", flush=True)
            figures[f"compile_lite_{precision}"] = {"first_step_s": first, "egs": egs}

    figures["adam_s"] = {"default": adam_step_seconds(False), "fused": adam_step_seconds(True)}
    print(f"\nAdam step over original's parameters: default {figures['adam_s']['default']:.2f} s, fused {figures['adam_s']['fused']:.2f} s")
    print("original: ours vs the naive loop (per-sample numpy/cv2 augmentation in a DataLoader, default Adam, fp32),"
          " timed round-robin:", flush=True)
    fns = {"naive": NaiveStep(), "ours fp32": OurStep("original", "fp32")}
    if bf16_ok:
        fns["ours bf16"] = OurStep("original", "bf16")
    sec = interleaved(fns, steps, warmup)
    figures["original_vs_naive_egs"] = {k: 2 * BATCH / v for k, v in sec.items()}
    for k, v in sec.items():
        print(f"  {k:10s} {2 * BATCH / v:6.1f} EG/s  {sec['naive'] / v:5.2f}x naive{'  (target >= 2x)' if k != 'naive' else ''}")
    peaks.append(matmul_peak())
    print(f"fp32 matmul peak over the run: {', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s (best is the reference; spread = other load)")
    figures["matmul_peaks"] = peaks
    isa.write_child_result(args, figures, threads=torch.get_num_threads(), peak=max(peaks), peak_n=2048)


def headline(figures: dict) -> dict[str, float]:
    """The table's columns from one ISA child's figures: EG/s and share of that ISA's fp32 matmul peak."""
    out = {}
    for name, variants in figures["presets"].items():
        for label, f in variants.items():
            if label in ("fp32", "bf16"):
                out[f"{name} {label} EG/s"] = f["egs"]
                out[f"{name} {label} % peak"] = 100 * f["peak_share"]
    out["naive EG/s"] = figures["original_vs_naive_egs"]["naive"]
    return out


if __name__ == "__main__":
    main()

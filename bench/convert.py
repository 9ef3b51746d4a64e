"""Convert speed, stage split, jitter and colour figures on shared clip A, and a source | swap strip.

    faceswap extract ../shared/data/faces/A_lp_d3.mp4 -o /tmp/A_faces          # once (alignments to reuse)
    python bench/convert.py --model MODEL_DIR --alignments /tmp/A_faces/alignments.json --strip /tmp/strip.png

Speed: `faceswap convert` of clip A (512 px) reusing the alignments, with the `lite` and `original`
presets (the trained MODEL_DIR for its own preset, an untrained model of the same architecture for
the other: speed does not depend on the weights). frames/s is over the streaming loop (model loading
excluded); the stage split is the main thread's wall time per stage (ffmpeg decodes and encodes in
parallel processes, so decode/encode show only the time spent waiting for them).

Jitter: the clip converted with --smooth and --no-smooth; MTCNN (at full resolution) finds the
landmarks of the source face and of the pasted face in every frame; jitter = mean frame-to-frame
landmark displacement of the pasted face minus the source face's own (px). "geometry" is the same
figure for the paste transform alone (template landmarks through the inverse alignment), i.e. what
the converter contributes before the model's own wobble.

Colour: the clip converted with each --color mode; inside the face (mask > 0.95) the distance of
the mean L*a*b* colour from the source face's (tone dE) and the ratio of lightness contrast (L std);
on the feathered edge (0.1 < mask < 0.9) the mean L*a*b* distance from the source frame (seam dE).

Per ISA (bench/isa.py, `--isa`, default native,avx2): the run is repeated in a fresh process with
the native kernels, then with AVX2 emulation, and one table compares the speed rows and each ISA's
fp32 matmul peak. Alignments are extracted once (native) and reused by both; the emulated run
skips jitter, colour, --strip and --memory (they measure the output, not the kernels).

The clips are real people: keep every output (and the strip) internal, never publish swaps of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import isa  # bench/isa.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
CLIP_A = ROOT.parent / "shared" / "data" / "faces" / "A_lp_d3.mp4"


def random_model_dir(preset: str, dest: Path) -> Path:
    """An untrained model dir of `preset` (timing only)."""
    from faceswap import __version__
    from faceswap.model.autoencoder import CONFIG_NAME, FORMAT, FORMAT_VERSION, build_model, save_checkpoint

    dest.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(preset).eval()
    (dest / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                                                "faceswap_version": __version__, **model.describe()}))
    save_checkpoint(dest, model, iteration=0)
    return dest


def convert(clip: Path, model: Path, out: Path, alignments: Path | None, frames: int | None, args, **kw):
    from faceswap.convert import ConvertConfig, run_convert

    cfg = ConvertConfig(input=clip, output=out, model_dir=model, alignments=alignments, end=frames, overwrite=True,
                        threads=args.threads, precision=args.precision, direction=args.direction, **kw)
    return run_convert(cfg, show_progress=False)


def read_frames(path: Path, frames: int | None) -> np.ndarray:
    from faceswap.video import FrameReader

    return np.stack([f for _, f in FrameReader(path, end=frames)])


def largest_landmarks(detector, frames: np.ndarray) -> list[np.ndarray | None]:
    """Landmarks `(5, 2)` of the largest face per frame (None where there is none)."""
    out = []
    for i in range(0, len(frames), 16):
        out += [faces[0].landmarks.astype(np.float64) if faces else None for faces in detector.detect(frames[i : i + 16])]
    return out


def jitter_of(tracks: dict[str, list]) -> dict[str, float]:
    """Mean frame-to-frame landmark displacement (as `convert.smooth.mean_displacement`) per track,
    over the consecutive frame pairs where every track has a face."""
    n = len(next(iter(tracks.values())))
    ok = [all(t[i] is not None for t in tracks.values()) for i in range(n)]
    out = {}
    for name, t in tracks.items():
        steps = [np.linalg.norm(t[i + 1] - t[i], axis=-1).mean() for i in range(n - 1) if ok[i] and ok[i + 1]]
        out[name] = float(np.mean(steps)) if steps else float("nan")
    out["pairs"] = sum(1 for i in range(n - 1) if ok[i] and ok[i + 1])
    return out


def paste_geometry(entry: dict, frames: int, size: int, coverage: str, smooth: bool) -> list[np.ndarray | None]:
    """Template landmarks mapped into each frame through the paste transform (largest face)."""
    from faceswap.convert.smooth import DEFAULT_DEGREE, DEFAULT_LOOKAHEAD, LandmarkSmoother
    from faceswap.faces.align import alignment_matrices, invert_affine, template_points

    sm = LandmarkSmoother(DEFAULT_LOOKAHEAD if smooth else 0, DEFAULT_DEGREE)
    done = []
    for i in range(frames):
        faces = [np.asarray(f["landmarks"], np.float64) for f in entry["frames"].get(str(i), [])[:1]]
        done += sm.push(i, faces)
    done += sm.flush()
    out: list[np.ndarray | None] = []
    tp = np.c_[template_points(size, coverage), np.ones(5)]
    for _, faces in done:
        if not faces:
            out.append(None)
            continue
        inv = invert_affine(alignment_matrices(faces[0][None], size, coverage))[0].numpy()
        out.append(tp @ inv.T)
    return out


def frame_alpha(entry: dict, frames: int, size: int, coverage: str, shape: tuple[int, int]) -> list[np.ndarray | None]:
    """The paste mask in frame pixels per frame `(H, W)` (smoothed landmarks, template mask)."""
    from faceswap.convert.blend import mask_support, paste_regions, warp_back
    from faceswap.convert.mask import face_masks
    from faceswap.convert.smooth import LandmarkSmoother
    from faceswap.faces.align import alignment_matrices

    sm = LandmarkSmoother()
    done = []
    for i in range(frames):
        done += sm.push(i, [np.asarray(f["landmarks"], np.float64) for f in entry["frames"].get(str(i), [])[:1]])
    done += sm.flush()
    masks = face_masks(1, size, coverage)
    out = []
    for _, faces in done:
        if not faces:
            out.append(None)
            continue
        m = alignment_matrices(faces[0][None], size, coverage)
        boxes = paste_regions(m, mask_support(masks), shape)
        w = warp_back(torch.zeros(1, 3, size, size), masks, m, boxes)[0, 3].numpy()
        a = np.zeros(shape, np.float32)
        x0, y0, x1, y1 = boxes[0]
        a[y0:y1, x0:x1] = w[: y1 - y0, : x1 - x0]
        out.append(a)
    return out


def colour_figures(src: np.ndarray, out: np.ndarray, alphas: list[np.ndarray | None]) -> dict[str, float]:
    tone, ring, contrast = [], [], []
    for s, o, a in zip(src, out, alphas):
        if a is None:
            continue
        ls = cv2.cvtColor(s.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
        lo = cv2.cvtColor(o.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
        inner, edge = a > 0.95, (a > 0.1) & (a < 0.9)
        tone.append(np.linalg.norm(lo[inner].mean(0) - ls[inner].mean(0)))
        ring.append(np.linalg.norm(lo[edge] - ls[edge], axis=-1).mean())
        contrast.append(lo[inner][:, 0].std() / max(ls[inner][:, 0].std(), 1e-6))
    return {"tone_dE": float(np.mean(tone)), "seam_dE": float(np.mean(ring)), "L_std_ratio": float(np.mean(contrast))}


def strip(src: np.ndarray, out: np.ndarray, path: Path, n: int = 6, tile: int = 256) -> None:
    """Two rows, `n` frames: source on top, swap below."""
    idx = np.linspace(0, len(src) - 1, n).round().astype(int)
    rows = []
    for frames, label in ((src, "source"), (out, "swap (synthetic)")):
        row = np.concatenate([cv2.resize(frames[i], (tile, tile), interpolation=cv2.INTER_AREA) for i in idx], 1)
        cv2.putText(row, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        rows.append(row)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def peak_rss_mib(clip: Path, model: Path, alignments: Path | None, out: Path, threads: int | None) -> float:
    code = ("import resource,sys; from pathlib import Path; from faceswap.convert import ConvertConfig, run_convert;"
            "a=sys.argv[3] or None; t=int(sys.argv[5]) if sys.argv[5] else None;"
            "run_convert(ConvertConfig(input=Path(sys.argv[1]), model_dir=Path(sys.argv[2]), alignments=a and Path(a),"
            " output=Path(sys.argv[4]), overwrite=True, threads=t), show_progress=False);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
    res = subprocess.run([sys.executable, "-c", code, str(clip), str(model), str(alignments or ""), str(out), str(threads or "")],
                         capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model dir trained on A and B")
    parser.add_argument("--clip", type=Path, default=CLIP_A)
    parser.add_argument("--alignments", type=Path, default=None, help="alignments.json of the clip (extracted here when missing)")
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (speed runs)")
    parser.add_argument("--quality-frames", type=int, default=150, help="frames for the jitter and colour runs")
    parser.add_argument("--presets", nargs="*", default=["lite", "original"])
    parser.add_argument("--direction", default="a2b")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--colors", nargs="*", default=["none", "mean-std", "hist"])
    parser.add_argument("--blends", nargs="*", default=["poisson"], help="blend modes compared (with the default colour) besides alpha")
    parser.add_argument("--strip", type=Path, default=None, help="write the source | swap strip PNG here")
    parser.add_argument("--work", type=Path, default=None, help="folder for outputs (default: a temp folder)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "jitter", "color"])
    parser.add_argument("--memory", action="store_true", help="also peak RSS on the clip and on it x3 (streaming check)")
    isa.add_arguments(parser)
    args = parser.parse_args()
    if args.isa_child is None:
        return per_isa(args)
    if args.isa_child != "native":
        args.skip, args.strip, args.memory = sorted(set(args.skip) | {"jitter", "color"}), None, False

    from faceswap.convert.color import DEFAULT_COLOR
    from faceswap.faces.detect import DetectorConfig, FaceDetector
    from faceswap.faces.store import Alignments
    from faceswap.model.autoencoder import read_config

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, precision {args.precision}; clip {args.clip.name}; "
          f"outputs in {work} (internal only)", flush=True)
    if args.alignments is None:
        from faceswap.extract import ExtractConfig, run_extract

        t0 = time.perf_counter()
        s = run_extract(ExtractConfig(inputs=[args.clip], output=work / "faces"), show_progress=False)
        args.alignments = work / "faces" / "alignments.json"
        print(f"extract (once, reused below): {s.frames_read / (time.perf_counter() - t0):.1f} frames/s", flush=True)
    cfg = read_config(args.model)
    results: dict = {"model": str(args.model), "preset": cfg["preset"], "threads": torch.get_num_threads()}

    if "speed" not in args.skip:
        print(f"{'preset':<10}{'frames':>7}{'fr/s':>7}   stage split (main thread)")
        for preset in args.presets:
            model = args.model if cfg["preset"] == preset else random_model_dir(preset, work / f"untrained_{preset}")
            s = convert(args.clip, model, work / f"speed_{preset}.mp4", args.alignments, args.frames, args)
            print(f"{preset:<10}{s.frames:>7}{s.fps:>7.1f}   {s.stage_line()}", flush=True)
            results[f"speed_{preset}"] = {"fps": s.fps, "frames": s.frames, "stages": s.stage_seconds}

    n = args.quality_frames
    entry = Alignments.load(args.alignments).find_source(args.clip)[1]
    src = read_frames(args.clip, n)
    if "jitter" not in args.skip:
        detector = FaceDetector(DetectorConfig(detect_size=max(src.shape[1:3]), redetect_every=1))
        tracks = {"source": largest_landmarks(detector, src)}
        for smooth in (True, False):
            name = "smooth" if smooth else "no-smooth"
            out_path = work / f"jitter_{name}.mp4"
            convert(args.clip, args.model, out_path, args.alignments, n, args, smooth=smooth)
            tracks[name] = largest_landmarks(detector, read_frames(out_path, n))
        j = jitter_of(tracks)
        geo = jitter_of({"source": tracks["source"],
                         "smooth": paste_geometry(entry, n, cfg["size"], cfg["coverage"], True),
                         "no-smooth": paste_geometry(entry, n, cfg["size"], cfg["coverage"], False)})
        print(f"jitter over {j['pairs']} frame pairs (px/frame; source face moves {j['source']:.2f}):")
        for name in ("smooth", "no-smooth"):
            print(f"  {name:<10} pasted face {j[name]:.2f} -> jitter {j[name] - j['source']:+.2f}   "
                  f"geometry {geo[name]:.2f} -> {geo[name] - geo['source']:+.2f}")
        results["jitter"] = {"detected": j, "geometry": geo}

    if "color" not in args.skip:
        alphas = frame_alpha(entry, n, cfg["size"], cfg["coverage"], src.shape[1:3])
        print(f"colour over {n} frames (lower dE is closer to the source; L std ratio 1 keeps the contrast):")
        for mode in args.colors:
            out_path = work / f"color_{mode}.mp4"
            convert(args.clip, args.model, out_path, args.alignments, n, args, color=mode)
            c = colour_figures(src, read_frames(out_path, n), alphas)
            print(f"  {mode:<9} tone dE {c['tone_dE']:5.2f}   seam dE {c['seam_dE']:5.2f}   L std ratio {c['L_std_ratio']:.2f}"
                  f"{'   (default)' if mode == DEFAULT_COLOR else ''}", flush=True)
            results[f"color_{mode}"] = c
        for blend in args.blends:
            out_path = work / f"blend_{blend}.mp4"
            s = convert(args.clip, args.model, out_path, args.alignments, n, args, blend=blend)
            c = colour_figures(src, read_frames(out_path, n), alphas)
            print(f"  {DEFAULT_COLOR} + {blend} blend: tone dE {c['tone_dE']:5.2f}   seam dE {c['seam_dE']:5.2f}   "
                  f"L std ratio {c['L_std_ratio']:.2f}   ({s.fps:.1f} frames/s)", flush=True)
            results[f"blend_{blend}"] = c

    if args.strip is not None:
        out_path = work / "jitter_smooth.mp4"
        if not out_path.exists():
            convert(args.clip, args.model, out_path, args.alignments, n, args)
        strip(src, read_frames(out_path, n), args.strip)
        print(f"strip: {args.strip}")

    if args.memory:
        from faceswap.video import ffmpeg_exe

        listing = work / "list.txt"
        listing.write_text(f"file '{args.clip.resolve()}'\n" * 3)
        long_clip = work / "x3.mp4"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(long_clip)], check=True)
        # Both detect on the fly: the x3 clip has no alignments, and the runs must be alike.
        one = peak_rss_mib(args.clip, args.model, None, work / "mem1.mp4", args.threads)
        three = peak_rss_mib(long_clip, args.model, None, work / "mem3.mp4", args.threads)
        print(f"peak RSS: clip {one:.0f} MiB; clip x3 {three:.0f} MiB ({three / one - 1:+.1%}; streaming: should stay flat)")
        results["rss_mib"] = {"x1": one, "x3": three}
    print(json.dumps(results, default=float))
    isa.write_child_result(args, results, threads=args.threads)


def per_isa(args) -> None:
    """The run once per ISA, each in a fresh process, sharing one alignments file; then the ISA table."""
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_convert_"))
    if args.alignments is None:
        from faceswap.extract import ExtractConfig, run_extract

        t0 = time.perf_counter()
        s = run_extract(ExtractConfig(inputs=[args.clip], output=work / "faces"), show_progress=False)
        args.alignments = work / "faces" / "alignments.json"
        print(f"extract (once, reused by every ISA): {s.frames_read / (time.perf_counter() - t0):.1f} frames/s", flush=True)
    extra = {name: ["--work", str(work / name), "--alignments", str(args.alignments)] for name in isa.ISAS}
    isa.run_per_isa(args, __file__, headline, extra=extra)


def headline(figures: dict) -> dict[str, float]:
    """The table's columns from one ISA child's figures: frames/s per preset."""
    return {f"{k.removeprefix('speed_')} fr/s": v["fps"] for k, v in figures.items() if k.startswith("speed_")}


if __name__ == "__main__":
    main()

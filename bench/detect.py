"""Accuracy and speed of `faceswap detect` on the shared real clips (issue #6).

Reproduces every figure of the detection table:

    python bench/detect.py --model M1 --model2 M2 --work /tmp/detbench

M1 and M2 are swap models trained on the FIRST HALF (by time) of clips A and B only, e.g.

    faceswap extract ../shared/data/faces/A_lp_d3.mp4 -o faces_a    (and B -> faces_b)
    # link the first half of each folder's PNGs (sorted by frame) into faces_a_half / faces_b_half
    faceswap train --a faces_a_half --b faces_b_half -m M1 --preset lite --seed 0 --minutes 40
    faceswap train --a faces_a_half --b faces_b_half -m M2 --preset original --seed 1 --minutes 45

What it does (cached in --work; delete a file to redo it):
1. Videos. For each clip (A, B, C, D): the real clip and swaps of it made by M1 and M2 (A and C, D
   as identity A -> B; B as B -> A) go through the SAME codec path: a lossless RGB H.264 file, then
   re-encodes of that at CRF 23 and CRF 35 (libx264, yuv420p). The swaps are made by
   `faceswap convert` with its defaults, minus the invisible watermark, so the score measures the
   detector's signals and not our own mark (with it, `detect` reports a certain verdict anyway).
2. Faces are re-detected and re-aligned from every final video with `faceswap extract` defaults.
3. Split by time, never by frame: per clip, frames [0, 50%) train the one-class autoencoder and
   the spectral reference (M1 and M2 also trained on this part of A and B), [50%, 70%) fits the
   fusion (real vs M1 swaps, lossless and CRF 23) and calibrates the threshold on its real faces,
   [70%, 100%) is the test split. The fusion is source-balanced over the four clips (`fusion.py`).
   M2's swaps and CRF 35 are never seen before the test (M2's swaps are only made of the test
   split, lossless).
4. Frame level: every face of the test split. Video level: windows of WINDOW consecutive frames
   of the test split, scored by their mean logit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = REPO.parent / "shared" / "data" / "faces"
CLIPS = {"A": ("A_lp_d3", "a2b"), "B": ("B_lp_d6", "b2a"), "C": ("C_lp_d9", "a2b"), "D": ("D_lp_d13", "a2b")}
CODECS = ("lossless", "crf23", "crf35")
SPLITS = {"fit": (0.0, 0.5), "fusion": (0.5, 0.7), "test": (0.7, 1.0)}
WINDOW = 25
CLIP_FRAMES = {"A": 354, "B": 1008, "C": 587, "D": 352}  # frames of each shared clip (probe)
CLIPS_USED = list(CLIPS)
DET_MODEL: Path | None = None


def log(*args) -> None:
    print(*args, flush=True)


# --- 1. videos -----------------------------------------------------------------------------
def lossless_copy(src: Path, dst: Path) -> None:
    """The real clip through our writer's lossless path (the same one convert --crf 0 uses)."""
    from faceswap.video import FrameReader, VideoWriter, probe

    info = probe(src)
    reader = FrameReader(src)
    with VideoWriter(dst, info.width, info.height, info.fps, audio_from=src, lossless=True) as writer:
        for _, frames in reader.chunks(32):
            for frame in frames:
                writer.write(frame)


def swap_video(src: Path, model: Path, direction: str, dst: Path, start: int = 0) -> None:
    import faceswap.convert.swap as swap

    from faceswap.convert.swap import ConvertConfig, run_convert

    swap.mark_faces = lambda *args, **kwargs: None  # see the module docstring: no watermark here
    run_convert(ConvertConfig(input=src, output=dst, model_dir=model, direction=direction, crf=0, overwrite=True,
                              no_credentials=True, start=start), show_progress=False)


def first_frame(clip: str, kind: str) -> int:
    """M2's swaps are only ever tested: made from the test split's first frame on (saves time)."""
    return int(np.ceil(SPLITS["test"][0] * CLIP_FRAMES[clip])) if kind == "m2" else 0


def reencode(src: Path, dst: Path, crf: int) -> None:
    import ffmpeg

    from faceswap.video import ffmpeg_exe

    tmp = dst.with_name(f".{dst.stem}.partial.mp4")
    (ffmpeg.input(str(src)).output(str(tmp), vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="medium", acodec="copy")
     .overwrite_output().run(cmd=ffmpeg_exe(), quiet=True))
    os.replace(tmp, dst)


def faces_of(video: Path, out: Path) -> None:
    from faceswap.extract import ExtractConfig, run_extract

    run_extract(ExtractConfig(inputs=[video], output=out, overwrite=True), show_progress=False)


def prepare_one(work: Path, clip: str, kind: str, model: Path | None) -> None:
    """One clip's real or swapped video through every codec, and its faces (idempotent)."""
    stem, direction = CLIPS[clip]
    src = SHARED / f"{stem}.mp4"
    lossless = work / "videos" / f"{clip}_{kind}_lossless.mp4"
    if not lossless.exists():
        t = time.perf_counter()
        if kind == "real":
            lossless_copy(src, lossless)
        else:
            swap_video(src, model, direction, lossless, first_frame(clip, kind))
        log(f"  {lossless.name}: {time.perf_counter() - t:.1f} s")
    codecs = CODECS if kind != "m2" else CODECS[:1]  # M2 only has to be unseen, not codec-tested
    for codec in codecs[1:]:
        video = work / "videos" / f"{clip}_{kind}_{codec}.mp4"
        if not video.exists():
            reencode(lossless, video, int(codec[3:]))
    for codec in codecs:
        faces = work / "faces" / f"{clip}_{kind}_{codec}"
        if not extracted(faces):
            t = time.perf_counter()
            faces_of(work / "videos" / f"{clip}_{kind}_{codec}.mp4", faces)
            log(f"  faces {faces.name}: {time.perf_counter() - t:.1f} s")


def extracted(folder: Path) -> bool:
    """True when `faceswap extract` finished the folder's video (an interrupted run is redone)."""
    try:
        sources = json.loads((folder / "alignments.json").read_text())["sources"]
    except (OSError, ValueError, KeyError):
        return False
    return all(s.get("complete") for s in (sources.values() if isinstance(sources, dict) else sources))


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core beats two threads per process on this CPU


def prepare(work: Path, models: dict[str, Path], clips: list[str], jobs: int = 1) -> None:
    """Every video and face folder the benchmark reads, made once; `jobs` processes in parallel."""
    from concurrent.futures import ProcessPoolExecutor

    (work / "videos").mkdir(parents=True, exist_ok=True)
    (work / "faces").mkdir(parents=True, exist_ok=True)
    tasks = [(work, clip, kind, models.get(kind)) for kind in ["real", *models] for clip in clips]
    tasks.sort(key=lambda t: -CLIP_FRAMES.get(t[1], 0))  # longest first keeps the workers busy to the end
    if jobs <= 1:
        for task in tasks:
            prepare_one(*task)
        return
    with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
        for future in [pool.submit(prepare_one, *task) for task in tasks]:
            future.result()


# --- 2. faces, split by time ------------------------------------------------------------------
class Faces:
    """All faces of one face folder: `faces` (N, 3, S, S) uint8, `pos` (N,) frame / frame count."""

    def __init__(self, folder: Path, frames: int, size: int, first: int = 0):
        from faceswap.detect import FaceSourceConfig, iter_faces

        faces, index = [], []
        for batch in iter_faces([folder], FaceSourceConfig(size=size, batch_size=64)):
            faces.append(batch.faces)
            index += batch.frame
        self.faces = torch.cat(faces)
        self.frame = np.asarray(index) + first  # frame index in the source clip
        self.pos = self.frame / frames

    def split(self, name: str, lo: float | None = None, hi: float | None = None) -> tuple[torch.Tensor, np.ndarray]:
        a, b = SPLITS[name] if lo is None else (lo, hi)
        keep = (self.pos >= a) & (self.pos < b)
        return self.faces[torch.from_numpy(keep)], self.frame[keep]


def windows(logits: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Video level: mean logit of every WINDOW consecutive frames (of one clip's test split)."""
    order = np.argsort(frames, kind="stable")
    logits, frames = logits[order], frames[order]
    groups = (frames - frames.min()) // WINDOW
    return np.array([logits[groups == g].mean() for g in np.unique(groups)])


# --- 3. detector ------------------------------------------------------------------------------
def fit_detector(data: dict, model: Path, fpr: float, oneclass_iterations: int):
    """S2 + S3 on the fit split's real faces, the fusion on [50%, 60%) reals vs M1 swaps of
    [0, 60%), the threshold on [60%, 70%) reals; lossless and CRF 23 (CRF 35 and M2 stay unseen)."""
    from faceswap.detect import Detector, Fusion
    from faceswap.detect.oneclass import OneClassConfig, train_oneclass
    from faceswap.detect.run import signals_of
    from faceswap.detect.spectral import SpectralReference
    from faceswap.model.autoencoder import load_model, model_id

    seen = ("lossless", "crf23")
    cat = lambda parts: torch.cat([p[0] for p in parts])  # noqa: E731
    real_train = cat([data[c, "real", k].split("fit") for c in CLIPS_USED for k in seen])
    real_fit = cat([data[c, "real", k].split(None, 0.5, 0.6) for c in CLIPS_USED for k in seen])
    fit_sources = [c for c in CLIPS_USED for k in seen for _ in range(len(data[c, "real", k].split(None, 0.5, 0.6)[0]))]
    real_cal = cat([data[c, "real", k].split(None, 0.6, 0.7) for c in CLIPS_USED for k in seen])
    fake_fit = cat([data[c, "m1", k].split(None, 0.0, 0.6) for c in CLIPS_USED for k in seen])
    fake_sources = [c for c in CLIPS_USED for k in seen for _ in range(len(data[c, "m1", k].split(None, 0.0, 0.6)[0]))]
    log(f"detector: {len(real_train)} real faces train S2/S3, fusion {len(real_fit)} real vs {len(fake_fit)} M1 swaps, "
        f"{len(real_cal)} real calibrate")
    t = time.perf_counter()
    cfg = OneClassConfig() if oneclass_iterations is None else OneClassConfig(iterations=oneclass_iterations)
    ae = train_oneclass(real_train, cfg)
    log(f"  one-class AE: {cfg.iterations} iterations in {time.perf_counter() - t:.0f} s")
    swap = load_model(model)
    det = Detector(128, swap.coverage, ae, SpectralReference.fit(real_train), model=swap, model_id=model_id(model))
    fit_sig = {"real": signals_of(det, real_fit), "fake": signals_of(det, fake_fit), "real_sources": fit_sources,
               "fake_sources": fake_sources}
    det.fusion = Fusion.fit(fit_sig["real"], fit_sig["fake"], sources=fit_sources)  # source = clip
    det.fusion.calibrate(signals_of(det, real_cal), fpr)
    return det, fit_sig


def softened(det, data: dict) -> None:
    """Real test faces (lossless) made softer as a WHOLE crop, as a softer camera or a lower
    resolution would: the share flagged at the calibrated threshold (0 would mean "invariant")."""
    import kornia
    import torch.nn.functional as F

    from faceswap.detect.run import signals_of

    x = torch.cat([data[c, "real", "lossless"].split("test")[0] for c in CLIPS_USED]).float() / 255
    variants = {"Gaussian blur sigma 1 px": kornia.filters.gaussian_blur2d(x, (7, 7), (1.0, 1.0), border_type="reflect"),
                "half resolution (area down, bicubic up)": F.interpolate(F.interpolate(x, scale_factor=0.5, mode="area"),
                                                                         size=x.shape[-2:], mode="bicubic")}
    for name, v in variants.items():
        logit = det.fusion.logit(signals_of(det, (v.clamp(0, 1) * 255).round().byte())).numpy()
        log(f"real test faces, whole crop {name}: {np.mean(logit > det.fusion.threshold):.1%} flagged (mean logit {logit.mean():+.2f})")


def auc_between(negative, positive) -> float:
    """Frame ROC-AUC of scores `positive` (label 1) against `negative` (label 0)."""
    from faceswap.detect import metrics

    return metrics.roc_auc(np.r_[negative, positive], np.r_[np.zeros(len(negative)), np.ones(len(positive))])


def ablations(fit_sig: dict, test: dict) -> None:
    """What the source balance and the self-referenced signals each do, on the same signals: real vs
    real clip-pair AUCs of fusions refitted (a) without the balance, (b) as the earlier detector
    (S1 + s2_oneclass + s3_spec + s3_hf, unbalanced), (c) balanced but leaving each clip out of the
    fit (that clip's real test faces against the others': how far the balance carries to a source
    it never saw). Detection AUC (M1 lossless) beside each."""
    from faceswap.detect import Fusion

    real_t = {c: test[c, "real", "lossless"]["signals"] for c in CLIPS_USED}
    fake_t = {c: test[c, "m1", "lossless"]["signals"] for c in CLIPS_USED}
    pick = lambda sig, keep: {k: v[torch.as_tensor(keep)] for k, v in sig.items()}  # noqa: E731
    pairs = [(a, b) for i, a in enumerate(CLIPS_USED) for b in CLIPS_USED[i + 1:]]

    def show(label: str, fusion) -> None:
        lg = {c: fusion.logit({k: torch.as_tensor(v) for k, v in real_t[c].items()}).numpy() for c in CLIPS_USED}
        lf = np.concatenate([fusion.logit({k: torch.as_tensor(v) for k, v in fake_t[c].items()}).numpy() for c in CLIPS_USED])
        det_auc = auc_between(np.concatenate(list(lg.values())), lf)
        log(f"  {label:<48} pairs {' '.join(f'{auc_between(lg[a], lg[b]):.2f}' for a, b in pairs)}   M1 lossless {det_auc:.3f}")

    real, fake, src = fit_sig["real"], fit_sig["fake"], fit_sig["real_sources"]
    log("ablations (" + " ".join(f"{a}v{b}" for a, b in pairs) + "):")
    show("as fitted: S2 + S3, source-balanced", Fusion.fit(real, fake, sources=src))
    show("S2 + S3, not balanced", Fusion.fit(real, fake))
    old = [n for n in ("s1_err_a", "s1_gap_a", "s1_err_b", "s1_gap_b", "s2_oneclass", "s3_spec", "s3_hf") if n in real]
    show("earlier detector: S1 + s2_oneclass + s3_spec/hf", Fusion.fit(real, fake, names=old))
    for out in CLIPS_USED:
        keep_r = [s != out for s in src]
        keep_f = [s != out for s in fit_sig["fake_sources"]]
        fusion = Fusion.fit(pick(real, keep_r), pick(fake, keep_f), sources=[s for s in src if s != out])
        lg = {c: fusion.logit({k: torch.as_tensor(v) for k, v in real_t[c].items()}).numpy() for c in CLIPS_USED}
        log(f"  balanced, clip {out} left out of the fit: {out} vs " + " ".join(f"{c} {auc_between(lg[out], lg[c]):.2f}" for c in CLIPS_USED if c != out))


# --- 4. evaluation ----------------------------------------------------------------------------
def row(name: str, target: float | None, real: list, fake: list, threshold: float) -> dict:
    """Metrics of one comparison. real / fake: per clip (logits, frames) of the test split."""
    from faceswap.detect import metrics

    r = np.concatenate([x[0] for x in real])
    f = np.concatenate([x[0] for x in fake])
    scores, labels = np.concatenate([r, f]), np.r_[np.zeros(len(r)), np.ones(len(f))]
    vr = np.concatenate([windows(*x) for x in real if len(x[0])])
    vf = np.concatenate([windows(*x) for x in fake if len(x[0])])
    vscores, vlabels = np.concatenate([vr, vf]), np.r_[np.zeros(len(vr)), np.ones(len(vf))]
    out = {"name": name, "target": target, "frame": metrics.summary(scores, labels), "video": metrics.summary(vscores, vlabels),
           "tpr_at_threshold": float((f > threshold).mean()), "fpr_at_threshold": float((r > threshold).mean()),
           "roc": metrics.roc_curve(scores, labels)[:2]}
    return out


def print_rows(rows: list[dict]) -> None:
    log(f"{'comparison':<34} {'target':>6} | {'frames':>11} {'AUC':>6} {'EER':>6} {'TPR@1%':>6} | {'windows':>7} {'AUC':>6} "
        f"{'EER':>6} {'TPR@1%':>6} | {'thr TPR':>7} {'thr FPR':>7}  verdict")
    for r in rows:
        fr, vi = r["frame"], r["video"]
        verdict = "" if r["target"] is None else ("meets" if min(fr["roc_auc"], vi["roc_auc"]) >= r["target"] else "MISSES")
        tgt = "" if r["target"] is None else f"{r['target']:.2f}"
        log(f"{r['name']:<34} {tgt:>6} | {fr['n_real']:>5}/{fr['n_fake']:<5} {fr['roc_auc']:6.3f} {fr['eer']:6.3f} "
            f"{fr['tpr_at_0.01_fpr']:6.3f} | {vi['n_real']:>3}/{vi['n_fake']:<3} {vi['roc_auc']:6.3f} {vi['eer']:6.3f} "
            f"{vi['tpr_at_0.01_fpr']:6.3f} | {r['tpr_at_threshold']:7.3f} {r['fpr_at_threshold']:7.3f}  {verdict}")


def evaluate(det, data: dict, work: Path, has_m2: bool, fit_sig: dict | None = None) -> dict:
    from faceswap.detect import metrics
    from faceswap.detect.run import signals_of

    test = {}
    for key, faces in data.items():
        x, frames = faces.split("test")
        if not len(x):  # e.g. a swap MTCNN never finds as a face
            test[key] = {"logit": np.zeros(0), "frames": frames, "signals": {n: np.zeros(0) for n in det.fusion.names}}
            continue
        sig = signals_of(det, x)
        test[key] = {"logit": det.fusion.logit(sig).numpy(), "frames": frames, "signals": {k: v.numpy() for k, v in sig.items()}}
    thr = det.fusion.threshold
    per = lambda kind, codec: [(test[c, kind, codec]["logit"], test[c, kind, codec]["frames"]) for c in CLIPS_USED]  # noqa: E731
    rows = [row("M1 swaps, lossless", 0.99, per("real", "lossless"), per("m1", "lossless"), thr),
            row("M1 swaps, CRF 23", 0.95, per("real", "crf23"), per("m1", "crf23"), thr),
            row("M1 swaps, CRF 35 (codec unseen)", 0.85, per("real", "crf35"), per("m1", "crf35"), thr)]
    if has_m2:
        rows.append(row("M2 swaps (unseen model), lossless", 0.90, per("real", "lossless"), per("m2", "lossless"), thr))
    # Sanity: identity alone must not look fake (real A vs real B), nor shuffled labels separate.
    if ("A", "real", "lossless") in test and ("B", "real", "lossless") in test:
        a, b = test["A", "real", "lossless"], test["B", "real", "lossless"]
        rows.append(row("sanity: real A vs real B", None, [(a["logit"], a["frames"])], [(b["logit"], b["frames"])], thr))
    rng = np.random.default_rng(0)
    allr, allf = per("real", "lossless"), per("m1", "lossless")
    pooled = [(x, fr, "r") for x, fr in allr] + [(x, fr, "f") for x, fr in allf]
    shuffled_r, shuffled_f = [], []
    for x, fr, _ in pooled:
        flip = rng.random(len(x)) < 0.5
        shuffled_r.append((x[~flip], fr[~flip]))
        shuffled_f.append((x[flip], fr[flip]))
    rows.append(row("sanity: shuffled labels", None, shuffled_r, shuffled_f, thr))
    print_rows(rows)

    # Which signal carries the lossless row (each signal alone, higher = fake after the fusion's sign).
    log("single signals, M1 lossless, frame ROC-AUC (sign as the fusion uses it; S1: its documented direction):")
    from faceswap.detect.fusion import ANOMALY_SIGN

    names = det.fusion.names
    weights = dict(zip(names, det.fusion.weight))
    line = []
    for n in test["A" if "A" in CLIPS_USED else CLIPS_USED[0], "real", "lossless"]["signals"]:
        r = np.concatenate([test[c, "real", "lossless"]["signals"][n] for c in CLIPS_USED])
        f = np.concatenate([test[c, "m1", "lossless"]["signals"][n] for c in CLIPS_USED])
        sign = (1.0 if weights[n] >= 0 else -1.0) if n in weights else (-1.0 if ANOMALY_SIGN.get(n, 1.0) < 0 else 1.0)
        auc = auc_between(sign * r, sign * f)
        line.append(f"{n} {auc:.3f} ({f'w {weights[n]:+.2f}' if n in weights else 'not fused'})")
    log("  " + ", ".join(line))
    # Identity / clip invariance: real vs real for every clip pair, fused and per signal (0.5 = blind to the clip).
    pairs = [(a, b) for i, a in enumerate(CLIPS_USED) for b in CLIPS_USED[i + 1:]]
    log("real vs real, lossless test split, frame ROC-AUC per clip pair (" + " ".join(f"{a}v{b}" for a, b in pairs) + "):")
    real_sig = {c: test[c, "real", "lossless"] for c in CLIPS_USED}
    aucs = lambda get: " ".join(f"{auc_between(get(a), get(b)):.2f}" for a, b in pairs)  # noqa: E731
    log(f"  {'fused logit':<14} {aucs(lambda c: real_sig[c]['logit'])}")
    for n in real_sig[CLIPS_USED[0]]["signals"]:
        log(f"  {n:<14} {aucs(lambda c: real_sig[c]['signals'][n])}{'' if n in names else '  (reported, not fused)'}")
    if fit_sig is not None and len(CLIPS_USED) > 2:
        ablations(fit_sig, test)
    softened(det, data)

    curves = {r["name"]: r.pop("roc") for r in rows if not r["name"].startswith("sanity")}
    for r in rows:
        r.pop("roc", None)
    metrics.plot_roc(work / "roc.png", curves)
    real = np.concatenate([x[0] for x in per("real", "lossless")])
    fake = np.concatenate([x[0] for x in per("m1", "lossless")])
    metrics.plot_histograms(work / "histograms.png", real, fake, thr, title="test split, lossless: real vs M1 swaps")
    log(f"plots: {work / 'roc.png'}, {work / 'histograms.png'} (internal only: real people's scores, no images)")
    return {"rows": rows, "threshold": thr}


def speed(det, work: Path) -> dict:
    """Faces/s of the detector on aligned 128 px crops, and `faceswap detect` end to end on a video."""
    from faceswap.detect import DetectConfig, run_detect

    faces = torch.randint(0, 255, (256, 3, 128, 128), dtype=torch.uint8)
    det.score(faces[:64])  # warm-up
    t = time.perf_counter()
    for i in range(0, len(faces), 64):
        det.score(faces[i : i + 64])
    fps = len(faces) / (time.perf_counter() - t)
    video = work / "videos" / "A_m1_crf23.mp4"
    t = time.perf_counter()
    report = run_detect(DetectConfig(inputs=[video], detector_dir=work / "detector", model_dir=DET_MODEL), show_progress=False)
    seconds = time.perf_counter() - t
    frames = report.to_json()["sources"][0]["faces"]
    log(f"speed: detector alone {fps:.0f} faces/s (128 px crops, batches of 64); faceswap detect end to end on "
        f"{video.name}: {frames} faces in {seconds:.1f} s = {frames / seconds:.1f} faces/s (incl. decode, MTCNN, watermark check)")
    return {"faces_per_s": fps, "end_to_end_faces_per_s": frames / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="swap model M1 (the detector's S1 model)")
    parser.add_argument("--model2", type=Path, default=None, help="swap model M2 (never seen by the detector)")
    parser.add_argument("--work", type=Path, required=True, help="cache folder (videos, faces, detector); internal only")
    parser.add_argument("--clips", default="ABCD")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes for the videos and faces")
    parser.add_argument("--oneclass-iterations", type=int, default=None, help="default: faceswap detect train's")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"needs the shared clips in {SHARED}")
    models = {"m1": args.model, **({"m2": args.model2} if args.model2 else {})}
    log(f"preparing videos and faces in {args.work}")
    prepare(args.work, models, list(args.clips), args.jobs)
    if args.prepare_only:
        return
    torch.set_num_threads(args.threads)
    global CLIPS_USED, DET_MODEL
    CLIPS_USED, DET_MODEL = list(args.clips), args.model
    from faceswap.video import probe

    has_m2 = args.model2 is not None
    kinds = ["real", "m1"] + (["m2"] if has_m2 else [])
    data = {}
    for c in CLIPS_USED:
        n = probe(SHARED / f"{CLIPS[c][0]}.mp4").frame_count
        for kind in kinds:
            for codec in (CODECS if kind != "m2" else CODECS[:1]):
                data[c, kind, codec] = Faces(args.work / "faces" / f"{c}_{kind}_{codec}", n, 128, first_frame(c, kind))
    det, fit_sig = fit_detector(data, args.model, 0.01, args.oneclass_iterations)
    det.save(args.work / "detector")
    results = evaluate(det, data, args.work, has_m2, fit_sig)
    results["speed"] = speed(det, args.work)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (args.work / "results.json").write_text(json.dumps(results, indent=2, default=float))
    log(f"results: {args.work / 'results.json'}")


if __name__ == "__main__":
    main()

"""Generalisation table of `faceswap detect` (issue #16): leave one person out, on the shared clips.

For each person P of A, B, C, D (one fold each) a detector is fitted exactly as a user would fit
one, `faceswap detect train --real <face folders of the OTHER people> -o WORK/det_<P>` (no swap
model, no fakes), and tested on P only:

- real: every frame of P's clip (our lossless writer path, bench/detect.py's `lossless_copy`);
- ours: swaps of P by our own swap model (`swap_video`, watermark off), which the detector never
  saw: /work/runs/m_AB for A (a2b) and B (b2a), /work/runs/m_CD for C (a2b) and D (b2a);
- paste-*: "third-party" swaps made without our autoencoder, the classic way: a donor face of the
  paired person (A<->B, C<->D; the donor frame nearest in 5-point shape) warped onto P's frame by
  the similarity between their 5-point landmarks (`faceswap extract`'s alignments.json of the raw
  clips), pasted inside P's face hull (dlib's 68 points), eroded and feathered. Four variants:
  {Poisson (cv2.seamlessClone NORMAL_CLONE), alpha} x {LAB mean-std colour matched, raw};
- every kind, the real clip included, also after H.264 CRF 23, CRF 35 and a 360 px downscale
  (scale=-2:360, CRF 23); the real faces of each codec row went through that same codec.

Faces of every video are re-detected with `faceswap extract` defaults. Rows are pooled over the
folds on `logit - fold threshold` (each fold has its own detector and operating point): frame
ROC-AUC, video ROC-AUC (windows of 25 frames, mean logit), TPR and FPR at the fold's threshold,
and per fold the frame AUC and FPR. Also: each real clip's verdict as a whole (mean logit, and max
sliding 25-frame window) and each fused signal's AUC alone on the lossless rows.

    OMP_NUM_THREADS=1 python bench/detect_unseen.py --jobs 2            # the full table
    python bench/detect_unseen.py --max-frames 60 --people AB --skip-ours --every 3   # quick run

Everything is cached in --work (delete a file to redo it); a --max-frames run uses its own
sub-folder. The clips are real people: every output (videos, faces, strips) stays internal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from detect import (CLIPS, SHARED, WINDOW, Faces, auc_between, extracted, faces_of, lossless_copy,  # noqa: E402
                    reencode, swap_video, windows)

RUNS = Path("/work/runs")
STEMS = {p: CLIPS[p][0] for p in "ABCD"}
OURS = {"A": ("m_AB", "a2b"), "B": ("m_AB", "b2a"), "C": ("m_CD", "a2b"), "D": ("m_CD", "b2a")}
DONOR = {"A": "B", "B": "A", "C": "D", "D": "C"}
PASTES = {"paste-poisson-colour": (True, True), "paste-poisson-raw": (True, False),
          "paste-alpha-colour": (False, True), "paste-alpha-raw": (False, False)}  # (poisson, colour)
KINDS = ("ours", *PASTES)
CODECS = ("lossless", "crf23", "crf35", "360p")
TARGET_OURS, TARGET_THIRD, TARGET_CRF35, TARGET_FPR = 0.95, 0.90, 0.85, 0.02
DONOR_CANDIDATES = 64  # donor frames kept (as face crops) to pick the nearest pose from
ERODE, FEATHER = 0.12, 0.08  # of the inter-ocular distance: mask erosion, alpha blur sigma
STRIP_FRAMES = 3


def log(*args) -> None:
    print(*args, flush=True)


# --- 1. videos ---------------------------------------------------------------------------------
def video(root: Path, person: str, kind: str, codec: str) -> Path:
    return root / "videos" / f"{person}_{kind}_{codec}.mp4"


def face_dir(root: Path, person: str, kind: str, codec: str) -> Path:
    return root / "faces" / f"{person}_{kind}_{codec}"


def real_source(src: Path, dst: Path, max_frames: int | None) -> None:
    """P's real clip through our lossless writer; with `max_frames`, only its first frames (no
    audio then: it would outlast them). Every fake of P is made from this file."""
    if max_frames is None:
        return lossless_copy(src, dst)
    from faceswap.video import FrameReader, VideoWriter, probe

    info = probe(src)
    with VideoWriter(dst, info.width, info.height, info.fps, lossless=True) as writer:
        for _, frames in FrameReader(src, end=max_frames).chunks(32):
            writer.write(frames)


def downscale(src: Path, dst: Path, height: int = 360, crf: int = 23) -> None:
    """A smaller upload: scale to `height` px (width even, aspect kept), H.264 CRF 23."""
    import ffmpeg

    from faceswap.video import ffmpeg_exe

    tmp = dst.with_name(f".{dst.stem}.partial.mp4")
    (ffmpeg.input(str(src)).output(str(tmp), vf=f"scale=-2:{height}", vcodec="libx264", pix_fmt="yuv420p", crf=crf,
                                   preset="medium", acodec="copy").overwrite_output().run(cmd=ffmpeg_exe(), quiet=True))
    os.replace(tmp, dst)


def landmarks_of(faces_folder: Path) -> dict[int, np.ndarray]:
    """Frame -> `(5, 2)` landmarks (eyes, nose, mouth corners) of the best face, from the
    alignments.json `faceswap extract` wrote (faceswap/faces/store.py)."""
    sources = json.loads((faces_folder / "alignments.json").read_text())["sources"]
    out = {}
    for source in (sources.values() if isinstance(sources, dict) else sources):
        for frame, faces in source["frames"].items():
            if faces:
                out[int(frame)] = np.asarray(max(faces, key=lambda f: f["score"])["landmarks"], np.float64)
    return out


def shape_code(lm: np.ndarray) -> np.ndarray:
    """Nose (x, y) and mouth width in eye coordinates (origin between the eyes, x along them, unit
    = inter-ocular distance): yaw, pitch and a smile / grimace. Compared as offsets from each
    person's own median, so that two faces' proportions do not decide the match."""
    mid, eyes = (lm[0] + lm[1]) / 2, lm[1] - lm[0]
    iod = np.linalg.norm(eyes)
    ux = eyes / iod
    uy = np.array([-ux[1], ux[0]])
    nose = lm[2] - mid
    return np.array([nose @ ux / iod, nose @ uy / iod, np.linalg.norm(lm[4] - lm[3]) / iod])


def donor_crops(person: str, count: int = DONOR_CANDIDATES) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(crop, its landmarks, shape code) of `count` evenly spaced frames of `person`'s clip: the
    head region at native resolution (a second resampling would blur the paste), streamed."""
    from faceswap.video import FrameReader

    lms = landmarks_of(RUNS / f"faces_{person}")
    median = np.median([shape_code(lm) for lm in lms.values()], 0)
    keep = set(sorted(lms)[:: max(1, len(lms) // count)][:count])
    out = []
    for index, frame in FrameReader(SHARED / f"{STEMS[person]}.mp4", end=max(keep) + 1):
        if index not in keep:
            continue
        lm = lms[index]
        half = 2.6 * np.linalg.norm(lm[1] - lm[0])  # the whole head, with the hair line and chin
        cx, cy = lm.mean(0)
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(frame.shape[1], cx + half)), int(min(frame.shape[0], cy + half))
        out.append((frame[y0:y1, x0:x1].copy(), lm - (x0, y0), shape_code(lm) - median))
    return out


class Paster:
    """Classic face paste onto frames of one target clip from a donor's crops."""

    def __init__(self, donor: str, target: dict[int, np.ndarray]):
        from quality import Dlib

        self.median = np.median([shape_code(lm) for lm in target.values()], 0)  # the target's own neutral
        self.donors = donor_crops(donor)
        self.codes = np.stack([d[2] for d in self.donors])
        self.dlib = Dlib()

    def hull68(self, frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
        """dlib's 68 points of the face, on the rectangle of dlib's own detector (on a half-size
        copy: the faces are large) or, where it finds none, a square on the 5 points."""
        small = cv2.resize(frame, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        rect = self.dlib.detect(small)
        d = self.dlib.dlib
        if rect is not None:
            rect = d.rectangle(rect.left() * 2, rect.top() * 2, rect.right() * 2, rect.bottom() * 2)
        else:
            side = 2.4 * np.linalg.norm(lm[1] - lm[0])
            cx, cy = lm.mean(0)
            rect = d.rectangle(int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
        return self.dlib.landmarks(frame, rect)

    def variants(self, frame: np.ndarray, lm: np.ndarray) -> dict[str, np.ndarray]:
        """Every PASTES variant of one `(H, W, 3)` uint8 RGB frame whose face has 5 points `lm`."""
        from quality import erode, hull_mask, iod

        crop, dlm, _ = self.donors[int(np.argmin(((self.codes - (shape_code(lm) - self.median)) ** 2).sum(1)))]
        m, _ = cv2.estimateAffinePartial2D(dlm.astype(np.float32), lm.astype(np.float32), method=cv2.LMEDS)
        h, w = frame.shape[:2]
        warped = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        covered = cv2.warpAffine(np.ones(crop.shape[:2], np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
        pts = self.hull68(frame, lm)
        mask = erode(hull_mask(pts, (h, w)) & covered, ERODE * iod(pts))
        mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = False, False, False, False  # seamlessClone needs a margin
        if mask.sum() < 100:  # no usable face region: leave the frame as it is
            return {k: frame for k in PASTES}
        matched = colour_match(warped, frame, mask)
        sigma = FEATHER * iod(pts)  # the feather lies inside the mask: its outer edge is 0
        alpha = cv2.GaussianBlur(erode(mask, 2 * sigma).astype(np.float32), (0, 0), sigma)[..., None]
        x, y, bw, bh = cv2.boundingRect(mask.astype(np.uint8))
        centre = (x + bw // 2, y + bh // 2)  # seamlessClone centres the mask's box here: no shift
        out = {}
        for name, (poisson, colour) in PASTES.items():
            src = matched if colour else warped
            if poisson:
                out[name] = cv2.seamlessClone(src, frame, mask.astype(np.uint8) * 255, centre, cv2.NORMAL_CLONE)
            else:
                out[name] = (alpha * src + (1 - alpha) * frame).round().clip(0, 255).astype(np.uint8)
        return out


def colour_match(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`src` with its L*a*b* mean and std inside `mask` moved to `dst`'s (Reinhard transfer)."""
    s = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    d = cv2.cvtColor(dst, cv2.COLOR_RGB2LAB).astype(np.float32)
    ms, ss = s[mask].mean(0), s[mask].std(0) + 1e-3
    md, sd = d[mask].mean(0), d[mask].std(0)
    return cv2.cvtColor(((s - ms) / ss * sd + md).round().clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_videos(root: Path, person: str, strips: Path) -> None:
    """The four PASTES variants of P's real lossless clip, written side by side, frame by frame,
    plus a strip (source | each variant) of a few frames for a person to look at."""
    from faceswap.video import FrameReader, VideoWriter, probe

    src = video(root, person, "real", "lossless")
    info = probe(src)
    lms = landmarks_of(RUNS / f"faces_{person}")
    paster = Paster(DONOR[person], lms)
    strip_at = set(np.linspace(0, info.frame_count - 1, STRIP_FRAMES).round().astype(int).tolist())
    rows = []
    writers = {k: VideoWriter(video(root, person, k, "lossless"), info.width, info.height, info.fps, lossless=True)
               for k in PASTES}
    try:
        for index, frame in FrameReader(src):
            out = paster.variants(frame, lms[index]) if index in lms else {k: frame for k in PASTES}
            for k, writer in writers.items():
                writer.write(out[k])
            if index in strip_at and index in lms:
                rows.append(strip_row(frame, out, lms[index]))
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    if rows:
        strips.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(strips / f"{person}_paste.png"), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def strip_row(frame: np.ndarray, out: dict[str, np.ndarray], lm: np.ndarray, side: int = 256) -> np.ndarray:
    """source | each variant, the head region of one frame at `side` px, labelled."""
    from quality import _label

    half = 2.6 * np.linalg.norm(lm[1] - lm[0])
    cx, cy = lm.mean(0)
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(frame.shape[1], cx + half)), int(min(frame.shape[0], cy + half))
    tiles = [_label(cv2.resize(img[y0:y1, x0:x1], (side, side), interpolation=cv2.INTER_AREA), name.removeprefix("paste-"))
             for name, img in [("source", frame), *out.items()]]
    return np.concatenate(tiles, 1)


def make_lossless(root: Path, person: str, group: str, max_frames: int | None, strips: Path) -> None:
    """The lossless video(s) of one group: real (the source), ours, or the four pastes."""
    if group == "real":
        real_source(SHARED / f"{STEMS[person]}.mp4", video(root, person, "real", "lossless"), max_frames)
    elif group == "ours":
        name, direction = OURS[person]
        swap_video(video(root, person, "real", "lossless"), RUNS / name, direction, video(root, person, "ours", "lossless"))
    else:
        paste_videos(root, person, strips)


def prepare_group(root: Path, person: str, group: str, max_frames: int | None, strips: Path) -> dict[str, float]:
    """A group's lossless videos, their codec versions and the faces of all (idempotent).
    Returns the seconds spent per stage."""
    kinds = {"real": ["real"], "ours": ["ours"], "paste": list(PASTES)}[group]
    seconds = {"lossless": 0.0, "codecs": 0.0, "faces": 0.0}
    t = time.perf_counter()
    if not all(video(root, person, k, "lossless").exists() for k in kinds):
        make_lossless(root, person, group, max_frames, strips)
        seconds["lossless"] = time.perf_counter() - t
        log(f"  {person} {group} lossless: {seconds['lossless']:.1f} s")
    for kind in kinds:
        lossless = video(root, person, kind, "lossless")
        t = time.perf_counter()
        for codec in CODECS[1:]:
            dst = video(root, person, kind, codec)
            if dst.exists():
                continue
            if codec == "360p":
                downscale(lossless, dst)
            else:
                reencode(lossless, dst, int(codec[3:]))
        seconds["codecs"] += time.perf_counter() - t
        t = time.perf_counter()
        for codec in CODECS:
            faces = face_dir(root, person, kind, codec)
            if not extracted(faces):
                faces_of(video(root, person, kind, codec), faces)
        seconds["faces"] += time.perf_counter() - t
    log(f"  {person} {group}: codecs {seconds['codecs']:.1f} s, faces {seconds['faces']:.1f} s")
    return seconds


def _worker_init() -> None:
    torch.set_num_threads(1)  # one process per core beats two threads per process on this CPU


def check_models(people: list[str]) -> None:
    """Fail at once, with what to do, when a swap model is missing or still training."""
    prep = RUNS / "prep.log"
    for name in sorted({OURS[p][0] for p in people}):
        model = RUNS / name
        if not (model / "config.json").exists():
            sys.exit(f"swap model {model} is missing (no config.json): train it, or run with --skip-ours")
        if prep.exists() and f"trained{name[2:]}" not in prep.read_text():
            sys.exit(f"swap model {model} is still training ({prep} has no 'trained{name[2:]}' yet): "
                     f"wait for it, or run with --skip-ours")


def prepare(root: Path, people: list[str], ours: bool, max_frames: int | None, jobs: int, strips: Path) -> dict:
    """Every video and face folder the table reads. The real lossless clips come first: every
    fake is made from them. Returns seconds per (person, group, stage)."""
    from concurrent.futures import ProcessPoolExecutor

    (root / "videos").mkdir(parents=True, exist_ok=True)
    (root / "faces").mkdir(parents=True, exist_ok=True)
    phases = [[(p, "real") for p in people], [(p, g) for g in (["ours"] if ours else []) + ["paste"] for p in people]]
    seconds = {}
    for tasks in phases:
        if jobs <= 1:
            done = [prepare_group(root, p, g, max_frames, strips) for p, g in tasks]
        else:
            with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
                done = [f.result() for f in [pool.submit(prepare_group, root, p, g, max_frames, strips) for p, g in tasks]]
        seconds.update({f"{p} {g}": s for (p, g), s in zip(tasks, done)})
    return seconds


# --- 2. detectors, one per fold ----------------------------------------------------------------
def train_fold(work: Path, person: str, people: list[str], every: int, oneclass_iterations: int | None,
               reuse: bool = False) -> float:
    """`faceswap detect train --real <the other people's faces> -o WORK/det_<P>`; seconds. The
    whole clips even with --max-frames (that only shortens the test videos): the detector of a
    quick run is the full run's, given the same --every. With `reuse`, a detector this script
    trained before on the same inputs is kept (and its recorded seconds returned)."""
    from faceswap.detect.oneclass import OneClassConfig
    from faceswap.detect.train import DetectTrainConfig, run_detect_train

    real = [RUNS / f"faces_{q}" for q in people if q != person]
    extra = {} if oneclass_iterations is None else {"oneclass": OneClassConfig(iterations=oneclass_iterations)}
    record = work / f"det_{person}.bench.json"  # beside the detector dir, not in it
    inputs = {"real": [str(r) for r in real], "every": every, "oneclass_iterations": oneclass_iterations}
    if reuse and record.exists() and json.loads(record.read_text())["inputs"] == inputs:
        seconds = json.loads(record.read_text())["seconds"]
        log(f"  fold {person}: reusing {work / f'det_{person}'} (trained in {seconds:.0f} s)")
        return seconds
    record.unlink(missing_ok=True)
    t = time.perf_counter()
    summary = run_detect_train(DetectTrainConfig(real=real, output=work / f"det_{person}", overwrite=True, every=every, **extra),
                               show_progress=False)
    seconds = time.perf_counter() - t
    record.write_text(json.dumps({"inputs": inputs, "seconds": seconds}))
    log(f"  fold {person}: detect train on {', '.join(q for q in people if q != person)} in {seconds:.0f} s. {summary.line()} "
        f"{summary.calibration_line()}")
    return seconds


# --- 3. scores --------------------------------------------------------------------------------
def score_fold(work: Path, root: Path, person: str, kinds: list[str]) -> dict:
    """(kind, codec) -> logits, margins (logit - threshold), frames and signed z of each fused
    signal (lossless only) of P's faces under the fold's detector."""
    from faceswap.detect import Detector
    from faceswap.detect.run import signals_of
    from faceswap.errors import FaceswapError
    from faceswap.video import probe

    det = Detector.load(work / f"det_{person}")
    thr = float(det.fusion.threshold)
    n = probe(video(root, person, "real", "lossless")).frame_count
    out = {"threshold": thr}
    for kind in ["real", *kinds]:
        for codec in CODECS:
            try:
                faces = Faces(face_dir(root, person, kind, codec), n, det.size)
            except (RuntimeError, FaceswapError) as exc:  # a folder without faces (MTCNN found none)
                log(f"  {person} {kind} {codec}: no faces ({exc})")
                out[kind, codec] = {"logit": np.zeros(0), "margin": np.zeros(0), "frames": np.zeros(0, int), "signals": {}}
                continue
            sig = signals_of(det, faces.faces)
            logit = det.fusion.logit(sig).numpy()
            out[kind, codec] = {"logit": logit, "margin": logit - thr, "frames": faces.frame,
                                "signals": signed_signals(det, sig) if codec == "lossless" else {}}
    return out


def signed_signals(det, sig: dict) -> dict[str, np.ndarray]:
    """Each fused signal alone, higher = fake: z-scored on the fold's fit reals (so folds pool),
    signed by its fusion weight (two-sided signals of the unsupervised rule count |z|)."""
    from faceswap.detect.fusion import ANOMALY_SIGN

    fusion = det.fusion
    out = {}
    for i, name in enumerate(fusion.names):
        x = (sig[name].double().numpy() - fusion.mean[i]) / fusion.std[i]
        if not fusion.supervised and ANOMALY_SIGN.get(name) == 0:
            x = np.abs(x)
        out[name] = x * (1.0 if fusion.weight[i] >= 0 else -1.0)
    return out


# --- 4. table ---------------------------------------------------------------------------------
def target_of(kind: str, codec: str) -> float | None:
    if codec == "crf35":
        return TARGET_CRF35
    if codec == "360p":
        return None  # the issue sets none
    return TARGET_OURS if kind == "ours" else TARGET_THIRD


def table_row(scores: dict, people: list[str], kind: str, codec: str) -> dict:
    """One (kind, codec) row pooled over the folds on margins, and per fold."""
    real = [scores[p]["real", codec] for p in people]
    fake = [scores[p][kind, codec] for p in people]
    r = np.concatenate([x["margin"] for x in real])
    f = np.concatenate([x["margin"] for x in fake])
    vr = np.concatenate([windows(x["margin"], x["frames"]) for x in real if len(x["margin"])] or [np.zeros(0)])
    vf = np.concatenate([windows(x["margin"], x["frames"]) for x in fake if len(x["margin"])] or [np.zeros(0)])
    ok = lambda a, b: len(a) and len(b)  # noqa: E731
    return {"kind": kind, "codec": codec, "target": target_of(kind, codec), "n_real": len(r), "n_fake": len(f),
            "frame_auc": auc_between(r, f) if ok(r, f) else float("nan"),
            "video_auc": auc_between(vr, vf) if ok(vr, vf) else float("nan"), "n_windows": [len(vr), len(vf)],
            "tpr": float((f > 0).mean()) if len(f) else float("nan"), "fpr": float((r > 0).mean()) if len(r) else float("nan"),
            "per_fold": {p: {"frame_auc": auc_between(a["margin"], b["margin"]) if ok(a["margin"], b["margin"]) else float("nan"),
                             "fpr": float((a["margin"] > 0).mean()) if len(a["margin"]) else float("nan")}
                         for p, a, b in zip(people, real, fake)}}


def print_table(rows: list[dict], people: list[str]) -> None:
    log(f"\n{'kind':<22} {'codec':<8} {'target':>6} | {'faces r/f':>11} {'frame':>6} {'video':>6} {'TPR':>6} {'FPR':>6} | "
        f"per fold ({' '.join(people)}): frame AUC / FPR   verdict")
    for r in rows:
        t = r["target"]
        verdict = "" if t is None else ("meets" if min(r["frame_auc"], r["video_auc"]) >= t else "MISSES")
        if r["fpr"] > TARGET_FPR:
            verdict += f" (FPR > {TARGET_FPR:.0%})"
        folds = " ".join(f"{v['frame_auc']:.2f}/{v['fpr']:.2f}" for v in r["per_fold"].values())
        log(f"{r['kind']:<22} {r['codec']:<8} {'' if t is None else f'{t:.2f}':>6} | {r['n_real']:>5}/{r['n_fake']:<5} "
            f"{r['frame_auc']:6.3f} {r['video_auc']:6.3f} {r['tpr']:6.3f} {r['fpr']:6.3f} | {folds}   {verdict}")


def max_sliding(logits: np.ndarray, frames: np.ndarray, size: int = WINDOW) -> float:
    """Highest mean logit over any `size` consecutive faces (in frame order)."""
    x = logits[np.argsort(frames, kind="stable")]
    if len(x) < size:
        return float(x.mean())
    c = np.cumsum(np.r_[0.0, x])
    return float(((c[size:] - c[:-size]) / size).max())


def real_verdicts(scores: dict, people: list[str]) -> dict:
    """Each real clip as a whole at its fold's threshold: "wrong" when flagged."""
    out = {}
    log(f"\nreal clips as a whole (flagged = wrong): mean logit / max {WINDOW}-frame window, minus the fold's threshold")
    for p in people:
        thr = scores[p]["threshold"]
        cells = []
        for codec in CODECS:
            x = scores[p]["real", codec]
            if not len(x["logit"]):
                cells.append(f"{codec} no faces")
                continue
            mean, top = float(x["logit"].mean()), max_sliding(x["logit"], x["frames"])
            out[p, codec] = {"mean_logit": mean, "max_window": top, "threshold": thr,
                             "clip_flagged": mean > thr, "window_flagged": top > thr}
            cells.append(f"{codec} {mean - thr:+.2f} {'wrong' if mean > thr else 'ok'} / {top - thr:+.2f} "
                         f"{'wrong' if top > thr else 'ok'}")
        log(f"  {p} (threshold {thr:+.3f}): " + ";  ".join(cells))
    return {f"{p} {c}": v for (p, c), v in out.items()}


def single_signals(scores: dict, people: list[str], kinds: list[str]) -> dict:
    """Frame AUC of each fused signal alone (pooled over folds), lossless rows."""
    names = list(scores[people[0]]["real", "lossless"]["signals"])
    out = {}
    log("\nsingle signals, lossless, frame ROC-AUC pooled over folds (z on the fold's fit reals, sign of its weight):")
    for kind in kinds:
        aucs = {}
        for n in names:
            r = np.concatenate([scores[p]["real", "lossless"]["signals"].get(n, np.zeros(0)) for p in people])
            f = np.concatenate([scores[p][kind, "lossless"]["signals"].get(n, np.zeros(0)) for p in people])
            aucs[n] = auc_between(r, f) if len(r) and len(f) else float("nan")
        out[kind] = aucs
        log(f"  {kind:<22} " + ", ".join(f"{n} {a:.2f}" for n, a in aucs.items()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/work/runs/unseen"), help="cache and outputs (internal only)")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default WORK/results.json)")
    parser.add_argument("--people", default="ABCD", help="the folds (and the people the detectors train on)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes for the videos and faces")
    parser.add_argument("--every", type=int, default=1, help="detect train on every Nth real face")
    parser.add_argument("--max-frames", type=int, default=None, help="only the first N frames of the tested clips (quick run; "
                        "the detectors still train on whole face folders)")
    parser.add_argument("--oneclass-iterations", type=int, default=None, help="default: faceswap detect train's")
    parser.add_argument("--reuse-detectors", action="store_true",
                        help="keep det_<P> trained by an earlier run on the same inputs (default: train again)")
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--skip-ours", action="store_true", help="without our swap models (m_AB, m_CD)")
    args = parser.parse_args()
    from faceswap.errors import FaceswapError
    people = list(dict.fromkeys(args.people.upper()))
    if not SHARED.is_dir() or any(p not in STEMS for p in people) or len(people) < 2:
        sys.exit(f"needs the shared clips in {SHARED} and --people of at least two of ABCD")
    missing = [p for p in people if not extracted(RUNS / f"faces_{p}")]
    if missing:
        sys.exit(f"no extracted real faces for {missing}: faceswap extract the clip to {RUNS}/faces_<P> first")
    if not args.skip_ours:
        check_models(people)
    kinds = [k for k in KINDS if not (args.skip_ours and k == "ours")]
    root = args.work if args.max_frames is None else args.work / f"first{args.max_frames}"
    seconds = {}

    t = time.perf_counter()
    log(f"preparing videos and faces in {root}")
    seconds["prepare"] = prepare(root, people, not args.skip_ours, args.max_frames, args.jobs,
                                 args.work / "strips")
    seconds["prepare_total"] = time.perf_counter() - t
    log(f"prepared in {seconds['prepare_total']:.0f} s")
    if args.prepare_only:
        return
    log("detectors (leave one person out):")
    try:
        seconds["detect_train"] = {p: train_fold(args.work, p, people, args.every, args.oneclass_iterations,
                                                 args.reuse_detectors)
                                   for p in people}
    except FaceswapError as exc:
        sys.exit(f"detect train failed: {exc}")
    t = time.perf_counter()
    scores = {p: score_fold(args.work, root, p, kinds) for p in people}
    seconds["score"] = time.perf_counter() - t

    rows = [table_row(scores, people, k, c) for k in kinds for c in CODECS]
    print_table(rows, people)
    fpr = {p: float((scores[p]["real", "lossless"]["margin"] > 0).mean()) for p in people}
    log(f"\nunseen real faces flagged, lossless, per fold: " + " ".join(f"{p} {v:.1%}" for p, v in fpr.items())
        + f"  (min {min(fpr.values()):.1%}, max {max(fpr.values()):.1%}; target <= {TARGET_FPR:.0%} at the 1 % threshold)")
    verdicts = real_verdicts(scores, people)
    single = single_signals(scores, people, kinds)
    log(f"\nseconds: prepare {seconds['prepare_total']:.0f}, detect train " +
        " ".join(f"{p} {s:.0f}" for p, s in seconds["detect_train"].items()) + f", scoring {seconds['score']:.0f}")
    out = args.out or args.work / "results.json"
    results = {"people": people, "kinds": kinds, "codecs": list(CODECS), "every": args.every, "max_frames": args.max_frames,
               "pooled_on": "logit - fold threshold", "window": WINDOW, "rows": rows,
               "thresholds": {p: scores[p]["threshold"] for p in people}, "real_fpr_lossless": fpr,
               "real_clip_verdicts": verdicts, "single_signals_lossless": single, "seconds": seconds}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    log(f"results: {out}")


if __name__ == "__main__":
    main()

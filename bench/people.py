"""Multi-person bench of `faceswap extract --person` and `faceswap convert --person` (issue #14).

The shared clips hold one person each (A, B, C, D; see /work/shared/data/faces/README.md), so
multi-person videos are composited from them, with a ground truth that is known by construction:

1. Ground truth per clip: plain `faceswap extract CLIP --end 360` (WORK/faces_<X>): the person's
   face box in every source frame (the best-scored face; a frame without one is "don't care").
2. References: `faceswap extract CLIP --end 45` (WORK/ref_<X>, frames 0-44), and for the harder
   variant one photo (WORK/ref_<X>.png, frame 20). Composites use only frames >= 60 of each clip,
   so no reference face is ever a test face.
3. Composites (COMPOSITES below; 270 frames, 30 fps, libx264 CRF 12 yuv420p), bottom layer first:
   sbs_*  two clips fitted into the left and right halves of 960x540 (faces never touch);
   cross_* clip 1 fills 960x540 (fit to the height); clip 2, scaled 0.45-0.6 and cut to a feathered
           ellipse around its face, moves on PATH: beside face 1, over its top and side (touching,
           partly covering it), out of the canvas for ~45 frames (178-222), back under its chin;
   three_* a third person on PATH2 (left to right, crossing PATH);
   small_* 640x360, clip 1 in a small box, the patch on PATH at 0.35x: faces ~80-115 px.
   C/D is the hard pair (dlib median distance 0.54: alike), A/B the main one, D/A a mixed one.
   Per frame and person, the GT box is the source box through that layer's scale and offset, and
   a state: visible (>= 70 % of the box shown by its own layer inside the canvas and <= 30 % of it
   under a layer above), gone (< 25 % of the box shown) or partial (don't care for recall; a
   non-target extracted or swapped there still counts as wrong).
4. Extract: each kept face (alignments.json of `extract COMP --person REF`) is labelled with the
   non-gone GT box it overlaps best (IoU >= 0.3) or "nobody". Recall = frames with the target
   visible and kept / frames with it visible; precision = frames whose kept faces are all the
   target / frames with any kept face; wrong = frames with a kept face of anyone else or nobody.
5. Convert (`convert COMP --person REF --crf 0`: lossless, so untouched pixels are bit-identical
   to the decoded input): a person is swapped in a frame when >= 10 % of the pixels of its inner
   box (central 60 %, only where its own layer shows, minus other non-gone boxes grown by 10 %)
   differ from the input by more than 2 levels. Recall and wrong frames as for extract.
6. Sanity rows: plain extract / plain convert (no --person) must find / swap every visible face,
   so the same measures report the non-targets as wrong (proves they can fail).
7. Speed: frames/s (wall time of the whole command, median of 2 runs) of plain extract and
   extract --person on cross_AB, and their ratio.

Targets: precision and recall >= 99.5 %, zero wrong-person frames, ratio >= 0.80.

    python bench/people.py --shared /work/shared/data/faces --work /work/runs/people --json out.json
    python bench/people.py --quick            # cross_AB and cross_CD, first target only
    python bench/people.py --self-test        # scorers on fake outputs made from the GT itself

Heavy commands run under `nice -n 19` with OMP_NUM_THREADS=1. Everything is cached in --work
(delete a file or folder to redo it). The clips are real people: every output stays internal.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceswap.video import FrameReader, VideoWriter, probe  # noqa: E402

CLIPS = {"A": "A_lp_d3", "B": "B_lp_d6", "C": "C_lp_d9", "D": "D_lp_d13"}
GT_END, REF_END, PHOTO_FRAME, FIRST, N = 360, 45, 20, 60, 270
IOU, SWAP_SHARE, SWAP_LEVEL = 0.3, 0.10, 2
VISIBLE, COVERED, GONE = 0.70, 0.30, 0.25
TARGET_PR, TARGET_SPEED = 0.995, 0.80
# Patch paths: keyframes (frame, face centre x, y as a share of the canvas, scale).
PATH = [(0, .88, .30, .45), (60, .74, .35, .50), (100, .56, .28, .55), (130, .40, .45, .60), (160, .22, .55, .60),
        (185, -.25, .60, .60), (215, -.25, .75, .50), (240, .25, .78, .50), (269, .70, .75, .45)]
PATH2 = [(0, -.20, .70, .50), (30, .15, .70, .50), (80, .45, .72, .55), (120, .62, .60, .50), (150, .85, .40, .50),
         (170, 1.25, .30, .50), (200, 1.25, .30, .50), (230, .80, .25, .45), (269, .35, .20, .45)]
FULL, LEFT, RIGHT, SMALL = (0, 0, 1, 1), (0, 0, .5, 1), (.5, 0, 1, 1), (.36, .25, .64, .75)
# name: (canvas, layers bottom first: (person, rect region) or (person, path, scale factor), targets)
COMPOSITES = {
    "sbs_AB": ((960, 540), [("A", LEFT), ("B", RIGHT)], "AB"),
    "sbs_CD": ((960, 540), [("C", LEFT), ("D", RIGHT)], "CD"),
    "cross_AB": ((960, 540), [("A", FULL), ("B", PATH, 1.0)], "AB"),
    "cross_CD": ((960, 540), [("C", FULL), ("D", PATH, 1.0)], "CD"),
    "cross_DA": ((960, 540), [("D", FULL), ("A", PATH, 1.0)], "DA"),
    "three_CDA": ((960, 540), [("C", FULL), ("D", PATH, 1.0), ("A", PATH2, 1.0)], "CDA"),
    "small_CD": ((640, 360), [("C", SMALL), ("D", PATH, 0.35)], "CD"),
    "small_AB": ((640, 360), [("A", SMALL), ("B", PATH, 0.35)], "AB"),
}
QUICK = ["cross_AB", "cross_CD"]
SPEED_COMP = "cross_AB"


def log(*args) -> None:
    print(*args, flush=True)


def faceswap(*args, check: bool = True) -> float:
    """Run `faceswap ARGS` niced on one thread; returns its wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    done = subprocess.run(["nice", "-n", "19", sys.executable, "-m", "faceswap", *map(str, args)], env=env,
                          capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"faceswap {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def has_person_flag(command: str) -> bool:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "faceswap", command, "--help"], capture_output=True, text=True, env=env)
    return "--person" in out.stdout


def read_faces(folder: Path) -> dict[int, list[dict]]:
    """Frame -> face records of the (single) source of `folder`/alignments.json."""
    sources = json.loads((folder / "alignments.json").read_text())["sources"]
    out: dict[int, list[dict]] = {}
    for source in (sources.values() if isinstance(sources, dict) else sources):
        for frame, faces in source["frames"].items():
            out.setdefault(int(frame), []).extend(faces)
    return out


def extracted(folder: Path) -> bool:
    try:
        return all(s.get("complete", True) for s in json.loads((folder / "alignments.json").read_text())["sources"].values())
    except (OSError, ValueError):
        return False


# --- 1-2. ground truth per clip and references ------------------------------------------------
def prepare_clips(shared: Path, work: Path, people: set[str]) -> dict[str, np.ndarray]:
    """Per person: `(GT_END, 5)` source boxes + known flag (missing frames take the nearest box)."""
    boxes = {}
    for p in sorted(people):
        clip = shared / f"{CLIPS[p]}.mp4"
        if not extracted(work / f"faces_{p}"):
            log(f"ground truth: extract {clip.name}")
            faceswap("extract", clip, "--end", GT_END, "-o", work / f"faces_{p}", "--quiet")
        if not extracted(work / f"ref_{p}"):
            faceswap("extract", clip, "--end", REF_END, "-o", work / f"ref_{p}", "--quiet")
        if not (work / f"ref_{p}.png").exists():
            frame = next(iter(FrameReader(clip, start=PHOTO_FRAME, end=PHOTO_FRAME + 1)))[1]
            cv2.imwrite(str(work / f"ref_{p}.png"), frame[..., ::-1])
        faces = read_faces(work / f"faces_{p}")
        known = sorted(f for f, v in faces.items() if v)
        b = np.zeros((GT_END, 5))
        for f in range(GT_END):
            near = min(known, key=lambda k: abs(k - f))
            b[f, :4] = max(faces[near], key=lambda r: r["score"])["box"]
            b[f, 4] = near == f
        boxes[p] = b
    return boxes


# --- 3. composites ------------------------------------------------------------------------------
def smooth(a: np.ndarray, k: int = 7) -> np.ndarray:
    pad = np.pad(a, ((k // 2, k // 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(pad[:, i], np.ones(k) / k, "valid") for i in range(a.shape[1])], 1)


class Layout:
    """Placement of every layer in every frame, its alpha and the GT box and state of each person,
    computed from the GT boxes alone (the scorer needs no pixels of the composite to know them)."""

    def __init__(self, name: str, boxes: dict[str, np.ndarray], sizes: dict[str, tuple[int, int]]):
        (self.w, self.h), self.layers, self.targets = COMPOSITES[name]
        self.name, self.boxes, self.sizes = name, boxes, sizes
        self.people = [layer[0] for layer in self.layers]
        self.smooth = {p: smooth(boxes[p][:, :4]) for p in self.people}  # a steady patch around the face

    def place(self, li: int, f: int) -> tuple[float, int, int]:
        """Scale and integer offset of layer `li` in composite frame `f`: canvas = s * source + t."""
        layer, (sw, sh) = self.layers[li], self.sizes[self.layers[li][0]]
        if len(layer) == 2:  # a rect: the whole clip fitted (aspect kept) and centred in a region
            x0, y0, x1, y1 = layer[1]
            s = min((x1 - x0) * self.w / sw, (y1 - y0) * self.h / sh)
            return s, round(((x0 + x1) * self.w - s * sw) / 2), round(((y0 + y1) * self.h - s * sh) / 2)
        keys = np.array(layer[1], float)
        cx, cy, s = (np.interp(f, keys[:, 0], keys[:, i]) for i in (1, 2, 3))
        s *= layer[2]
        b = self.smooth[layer[0]][FIRST + f]
        return s, round(cx * self.w - s * (b[0] + b[2]) / 2), round(cy * self.h - s * (b[1] + b[3]) / 2)

    def frame(self, f: int) -> tuple[list, list[np.ndarray], dict[str, np.ndarray], dict[str, int]]:
        """(placements, alphas `(h, w)` float32, GT boxes, states 2 visible / 1 partial / 0 gone)."""
        places, alphas, gt, state = [], [], {}, {}
        for li, (p, *_) in enumerate(self.layers):
            s, tx, ty = self.place(li, f)
            sw, sh = self.sizes[p]
            rect = np.zeros((self.h, self.w), np.float32)
            rect[max(0, ty):max(0, ty + round(s * sh)), max(0, tx):max(0, tx + round(s * sw))] = 1
            if len(self.layers[li]) == 3:  # a patch: a feathered ellipse around the (smoothed) face
                b = self.smooth[p][FIRST + f] * s + [tx, ty, tx, ty]
                axes = (0.75 * (b[2] - b[0]), 0.8 * (b[3] - b[1]))
                ell = np.zeros_like(rect)
                cv2.ellipse(ell, (((b[0] + b[2]) / 2, (b[1] + b[3]) / 2), (2 * axes[0], 2 * axes[1]), 0), 1, -1)
                rect *= cv2.GaussianBlur(ell, (0, 0), 0.08 * min(axes))
            places.append((s, tx, ty))
            alphas.append(rect)
            gt[p] = self.boxes[p][FIRST + f, :4] * s + [tx, ty, tx, ty]
        for li, p in enumerate(self.people):
            above = np.max(alphas[li + 1:], 0) > 0.5 if li + 1 < len(alphas) else np.zeros((self.h, self.w), bool)
            x0, y0, x1, y1 = gt[p]
            area = max(1.0, (x1 - x0) * (y1 - y0))
            sl = np.s_[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))]
            own, cover = alphas[li][sl] > 0.5, above[sl]
            inside, covered = own.sum() / area, cover.sum() / max(1, cover.size)
            shown = (own & ~cover).sum() / area
            state[p] = 0 if shown < GONE else 2 if inside >= VISIBLE and covered <= COVERED else 1
            if not self.boxes[p][FIRST + f, 4]:
                state[p] = min(state[p], 1)  # no GT face in that source frame: don't care
        return places, alphas, gt, state

    def truth(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        rows = [self.frame(f)[2:] for f in range(N)]
        return ({p: np.array([r[0][p] for r in rows]) for p in self.people},
                {p: np.array([r[1][p] for r in rows]) for p in self.people})


def build(lay: Layout, path: Path) -> None:
    """Render the composite: each layer's frame scaled (INTER_AREA down), placed and alpha-blended."""
    readers = {p: iter(FrameReader(path_of[p], start=FIRST, end=FIRST + N)) for p in lay.people}
    with VideoWriter(path, lay.w, lay.h, 30, crf=12) as writer:
        for f in range(N):
            places, alphas, _, _ = lay.frame(f)
            canvas = np.zeros((lay.h, lay.w, 3), np.float32)
            for p, (s, tx, ty), a in zip(lay.people, places, alphas):
                src = next(readers[p])[1]
                img = cv2.resize(src, (round(src.shape[1] * s), round(src.shape[0] * s)),
                                 interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
                placed = np.zeros_like(canvas)
                x0, y0 = max(0, tx), max(0, ty)
                x1, y1 = min(lay.w, tx + img.shape[1]), min(lay.h, ty + img.shape[0])
                if x1 > x0 and y1 > y0:
                    placed[y0:y1, x0:x1] = img[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
                canvas += a[..., None] * (placed - canvas)
            writer.write(canvas.round().clip(0, 255).astype(np.uint8))


path_of: dict[str, Path] = {}


# --- 4. extract score ---------------------------------------------------------------------------
def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / max(1e-9, (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def label(box, f: int, gt: dict, state: dict) -> str:
    """The non-gone person whose GT box overlaps `box` best (IoU >= IOU), else '-' (nobody)."""
    best = max(((iou(box, gt[p][f]), p) for p in gt if state[p][f] > 0), default=(0.0, "-"))
    return best[1] if best[0] >= IOU else "-"


def score_frames(labels: list[list[str]], target: str, state: dict, undecided: list[set] | None = None) -> dict:
    """Precision, recall and wrong frames from per-frame labels of the kept / swapped faces;
    frames where the target is `undecided` are left out of recall."""
    vis = (state[target] == 2) & ~np.array([target in u for u in undecided or [set()] * N])
    hit = np.array([target in ls for ls in labels])
    kept = np.array([bool(ls) for ls in labels])
    ok = np.array([bool(ls) and all(x == target for x in ls) for ls in labels])
    wrong = [f for f, ls in enumerate(labels) if any(x != target for x in ls)]
    return {"visible": int(vis.sum()), "recall": float((hit & vis).sum() / max(1, vis.sum())),
            "precision": float(ok.sum() / kept.sum()) if kept.any() else 1.0, "wrong": len(wrong),
            "wrong_frames": {f: labels[f] for f in wrong}, "missed": [int(f) for f in np.flatnonzero(vis & ~hit)]}


def score_extract(folder: Path, target: str, gt: dict, state: dict) -> dict:
    faces = read_faces(folder)
    labels = [[label(r["box"], f, gt, state) for r in faces.get(f, [])] for f in range(N)]
    out = score_frames(labels, target, state)
    dist = [r.get("person_distance") for f in out["wrong_frames"] for r in faces.get(f, [])]
    out["wrong_distances"] = [round(d, 3) for d in dist if d is not None][:20]
    return out


# --- 5. convert score ---------------------------------------------------------------------------
def swapped(lay: Layout, src: Path, out: Path, gt: dict, state: dict) -> tuple[list[list[str]], list[set]]:
    """Per frame, the people whose inner box changed (see the docstring), and those whose region is
    under 100 px (undecidable: e.g. a patch face inside the box of the face it covers, where that
    face's swap would land too)."""
    labels, undecided = [], []
    for f, ((_, a), (_, b)) in enumerate(zip(FrameReader(src), FrameReader(out))):
        diff = np.abs(a.astype(np.int16) - b).max(2) > SWAP_LEVEL
        _, alphas, _, _ = lay.frame(f)
        row, unknown = [], set()
        for li, p in enumerate(lay.people):
            if state[p][f] == 0:
                continue
            x0, y0, x1, y1 = gt[p][f]
            mx, my = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
            region = np.zeros((lay.h, lay.w), bool)
            region[max(0, int(y0 + my)):max(0, int(y1 - my)), max(0, int(x0 + mx)):max(0, int(x1 - mx))] = True
            region &= alphas[li] > 0.5
            for lj in range(li + 1, len(alphas)):
                region &= alphas[lj] <= 0.5
            for q in lay.people:
                if q != p and state[q][f] > 0:
                    qx0, qy0, qx1, qy1 = gt[q][f]
                    gx, gy = 0.1 * (qx1 - qx0), 0.1 * (qy1 - qy0)
                    region[max(0, int(qy0 - gy)):max(0, int(qy1 + gy + 1)), max(0, int(qx0 - gx)):max(0, int(qx1 + gx + 1))] = False
            if region.sum() < 100:
                unknown.add(p)
            elif diff[region].mean() >= SWAP_SHARE:
                row.append(p)
        labels.append(row)
        undecided.append(unknown)
    return labels, undecided


# --- 6-7. runs, speed and the table -------------------------------------------------------------
def fmt(r: dict | None) -> str:
    if r is None:
        return f"{'-':>4} {'-':>7} {'-':>7} {'-':>5}"
    return f"{r['visible']:4d} {100 * r['precision']:6.1f}% {100 * r['recall']:6.1f}% {r['wrong']:5d}"


def ranges(frames: list[int]) -> str:
    out, start = [], None
    for i, f in enumerate(frames):
        start = f if start is None else start
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            out.append(f"{start}" if start == f else f"{start}-{f}")
            start = None
    return ",".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces")
    ap.add_argument("--work", type=Path, default=Path("/work/runs/people"))
    ap.add_argument("--model", type=Path, help="swap model for convert (default: train WORK/model_AB, lite, 2 min)")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, first target")
    ap.add_argument("--only", nargs="*", help="composites to run")
    ap.add_argument("--photo", action="store_true", help="also a one-photo reference (extract, cross_*/three_*)")
    ap.add_argument("--no-convert", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="redo the --person runs (after a change to faceswap)")
    ap.add_argument("--self-test", action="store_true", help="scorers against fakes made from the GT")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = args.work
    (work / "comp").mkdir(parents=True, exist_ok=True)
    names = QUICK if args.quick else args.only or list(COMPOSITES)
    if args.self_test:
        names = ["cross_AB"]
    people = {layer[0] for n in names for layer in COMPOSITES[n][1]}
    path_of.update({p: args.shared / f"{CLIPS[p]}.mp4" for p in CLIPS})
    sizes = {p: (probe(path_of[p]).width, probe(path_of[p]).height) for p in people}
    boxes = prepare_clips(args.shared, work, people)
    ext_person = has_person_flag("extract")
    conv_person = has_person_flag("convert")
    if not (ext_person and conv_person) and not args.self_test:
        log(f"warning: --person missing (extract: {ext_person}, convert: {conv_person}): only the plain rows run")
    model = args.model or work / "model_AB"
    if not args.no_convert and not args.self_test and not (model / "config.json").exists() and not any(model.glob("*.pt")):
        log(f"training {model} (lite, 2 min)")
        faceswap("train", "--a", work / "faces_A", "--b", work / "faces_B", "-m", model, "--preset", "lite",
                 "--minutes", 2, "--seed", 0)

    results, rows = {}, []
    for name in names:
        lay = Layout(name, boxes, sizes)
        comp = work / "comp" / f"{name}.mp4"
        if not comp.exists():
            log(f"composite {name}")
            build(lay, comp)
        gt, state = lay.truth()
        if args.self_test:
            return self_test(lay, comp, gt, state, work)
        res = results[name] = {"states": {p: np.bincount(state[p], minlength=3).tolist() for p in lay.people}, "rows": []}
        refs = [(t, "clip", work / f"ref_{t}") for t in (lay.targets[:1] if args.quick else lay.targets)]
        if args.photo and not name.startswith(("sbs", "small")):
            refs += [(t, "photo", work / f"ref_{t}.png") for t in lay.targets[:2]]
        # Sanity: plain extract / convert, scored against each target (non-targets must show up as wrong).
        plain = work / "out" / f"{name}__plain"
        if not extracted(plain):
            faceswap("extract", comp, "-o", plain, "--quiet")
        conv_plain = None
        if not args.no_convert:
            out = work / "out" / f"{name}__plain.mp4"
            if not out.exists():
                faceswap("convert", comp, "-o", out, "-m", model, "--crf", 0, "--quiet")
            conv_plain = swapped(lay, comp, out, gt, state)
        for t in dict.fromkeys(t for t, _, _ in refs):
            row = {"target": t, "ref": "none", "extract": score_extract(plain, t, gt, state),
                   "convert": score_frames(*conv_plain[:1], t, state, conv_plain[1]) if conv_plain else None}
            res["rows"].append(row)
            rows.append((name, row))
        for t, kind, ref in refs:
            if not ext_person:
                break
            out_dir = work / "out" / f"{name}__{t}_{kind}"
            if args.fresh:
                shutil.rmtree(out_dir, ignore_errors=True)
                (work / "out" / f"{name}__{t}_{kind}.mp4").unlink(missing_ok=True)
            if not extracted(out_dir) and not (out_dir / "failed.txt").exists():
                log(f"extract {name} --person {ref.name}")
                try:
                    faceswap("extract", comp, "-o", out_dir, "--person", ref, "--quiet")
                except RuntimeError as exc:  # e.g. "no faces of ref_X found": scored as nothing kept
                    log(f"  {exc}".splitlines()[-1])
                    out_dir.mkdir(parents=True, exist_ok=True)
                    (out_dir / "failed.txt").write_text(str(exc))
            ext = (score_extract(out_dir, t, gt, state) if extracted(out_dir) else score_frames([[]] * N, t, state))
            row = {"target": t, "ref": kind, "extract": ext, "convert": None}
            if conv_person and not args.no_convert and kind == "clip":
                out = work / "out" / f"{name}__{t}_{kind}.mp4"
                if not out.exists():
                    log(f"convert {name} --person {ref.name}")
                    faceswap("convert", comp, "-o", out, "-m", model, "--person", ref, "--crf", 0, "--quiet")
                labels, undecided = swapped(lay, comp, out, gt, state)
                row["convert"] = score_frames(labels, t, state, undecided)
            res["rows"].append(row)
            rows.append((name, row))

    speed = None
    if ext_person and not args.no_speed and SPEED_COMP in names:
        comp, tmp = work / "comp" / f"{SPEED_COMP}.mp4", work / "speed"
        times: dict[str, list[float]] = {"plain": [], "person": []}
        for _ in range(2):
            for kind, extra in (("plain", []), ("person", ["--person", work / f"ref_{COMPOSITES[SPEED_COMP][2][0]}"])):
                shutil.rmtree(tmp, ignore_errors=True)
                times[kind].append(faceswap("extract", comp, "-o", tmp, "--quiet", *extra))
        shutil.rmtree(tmp, ignore_errors=True)
        fps = {k: N / statistics.median(v) for k, v in times.items()}
        speed = {"composite": SPEED_COMP, "fps_plain": fps["plain"], "fps_person": fps["person"],
                 "ratio": fps["person"] / fps["plain"], "times": times}

    log(f"\n{'':<10} {'':>3} {'':>5} | {'extract':^26} | {'convert':^26}\n{'composite':<10} {'tgt':>3} {'ref':>5} | "
        + " | ".join([f"{'vis':>4} {'P':>7} {'R':>7} {'wrong':>5}"] * 2))
    tot: dict[str, list] = {}
    for name, r in rows:
        log(f"{name:<10} {r['target']:>3} {r['ref']:>5} | {fmt(r['extract'])} | {fmt(r['convert'])}")
        for what in ("extract", "convert"):
            if r[what] is not None and r["ref"] != "none":
                tot.setdefault(f"{what}/{r['ref']}", []).append(r[what])
    log("\ntotals (pooled over rows; ref=none rows left out)")
    summary = {}
    for key, rs in tot.items():
        vis = sum(r["visible"] for r in rs)
        rec = sum(r["recall"] * r["visible"] for r in rs) / max(1, vis)
        summary[key] = {"recall": rec, "min_precision": min(r["precision"] for r in rs), "wrong": sum(r["wrong"] for r in rs)}
        ok = rec >= TARGET_PR and summary[key]["min_precision"] >= TARGET_PR and summary[key]["wrong"] == 0
        log(f"  {key:<14} recall {100 * rec:6.2f}%  min precision {100 * summary[key]['min_precision']:6.2f}%  "
            f"wrong frames {summary[key]['wrong']:4d}  {'PASS' if ok else 'FAIL'} (target >= 99.5 %, 0 wrong)")
    if speed:
        log(f"speed ({SPEED_COMP}, {N} frames, wall incl. start-up): plain {speed['fps_plain']:.1f} fps, --person "
            f"{speed['fps_person']:.1f} fps, ratio {speed['ratio']:.2f} ({'PASS' if speed['ratio'] >= TARGET_SPEED else 'FAIL'}, target >= 0.80)")
    for name, r in rows:
        for what in ("extract", "convert"):
            s = r[what]
            if s and r["ref"] != "none" and (s["wrong"] or s["missed"]):
                wf = sorted(s["wrong_frames"])
                log(f"  {name} {r['target']}/{r['ref']} {what}: wrong {ranges(wf) or '-'} "
                    f"{('labels ' + str(s['wrong_frames'][wf[0]])) if wf else ''}; missed {ranges(s['missed']) or '-'}")
    if args.json:
        args.json.write_text(json.dumps({"composites": results, "totals": summary, "speed": speed}, indent=1, default=str))


def self_test(lay: Layout, comp: Path, gt: dict, state: dict, work: Path) -> None:
    """Fakes made from the GT: the target's own boxes (must score 100 % / 0 wrong), the other
    person's (every frame where it is not gone must be wrong), and a video with a patch painted on
    one person's face (only that person may come out swapped)."""
    t, other = lay.people[0], lay.people[1]
    fake = work / "selftest"
    fake.mkdir(exist_ok=True)
    for who in (t, other):
        keep = state[who] == 2 if who == t else state[who] > 0
        frames = {str(f): [{"box": gt[who][f].tolist(), "score": 1.0}] for f in np.flatnonzero(keep)}
        (fake / who).mkdir(exist_ok=True)
        (fake / who / "alignments.json").write_text(json.dumps({"version": 2, "sources": {str(comp): {"frames": frames}}}))
    good, bad = score_extract(fake / t, t, gt, state), score_extract(fake / other, t, gt, state)
    log(f"fake extract, target boxes: {fmt(good)}; other person's boxes: {fmt(bad)}")
    assert good["precision"] == 1 and good["recall"] == 1 and good["wrong"] == 0
    assert bad["wrong"] == int((state[other] > 0).sum()) and bad["precision"] == 0
    painted = fake / "painted.mp4"
    with VideoWriter(painted, lay.w, lay.h, 30, lossless=True) as writer:
        for f, (_, frame) in enumerate(FrameReader(comp)):
            x0, y0, x1, y1 = gt[other][f]
            if state[other][f] == 2:  # a crude "swap" of `other`: its inner box brightened
                sl = np.s_[max(0, int(y0 + .2 * (y1 - y0))):max(0, int(y1 - .2 * (y1 - y0))),
                           max(0, int(x0 + .2 * (x1 - x0))):max(0, int(x1 - .2 * (x1 - x0)))]
                frame[sl] = np.clip(frame[sl].astype(int) + 40, 0, 255)
            writer.write(frame)
    sw, unknown = swapped(lay, comp, painted, gt, state)
    as_t, as_other = score_frames(sw, t, state, unknown), score_frames(sw, other, state, unknown)
    log(f"painted {other}: as target {t}: {fmt(as_t)}; as target {other}: {fmt(as_other)} "
        f"({as_other['visible']} frames decidable, {int((state[other] == 2).sum()) - as_other['visible']} not)")
    assert as_other["recall"] == 1 and as_other["wrong"] == 0 and as_t["wrong"] == as_other["visible"]
    assert score_frames(*swapped(lay, comp, comp, gt, state)[:1], t, state)["recall"] == 0
    log("self-test passed")


if __name__ == "__main__":
    main()

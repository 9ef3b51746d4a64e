"""Stage 3, convert: a video (or image folder) + a trained model -> the same video with faces swapped.

Per chunk of frames streamed from ffmpeg:

1. landmarks: from `alignments.json` (written by extract) when it has the frame, else MTCNN;
2. smoothing: each face track's landmarks through `LandmarkSmoother` (a few frames of lookahead);
3. align: frame -> crop similarity per face (`faces.align`), crops cut with kornia at the model size;
4. model: all faces of the chunk through the encoder and the other identity's decoder in one batch;
5. mask (template ellipse or the learned mask, eroded/blurred), colour transfer inside it;
6. paste: face and mask warped back through the inverse transform over the face's frame region only,
   alpha or Poisson blended;
7. encode: H.264 yuv420p (or lossless RGB at CRF 0) with the source audio, labelled as synthetic,
   under a temporary name renamed when complete.

Frames without a face are written exactly as decoded. Memory holds one chunk plus the smoother's
lookahead, whatever the video's length.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from faceswap.convert.blend import BLEND_MODES, paste_alphas, paste_faces
from faceswap.convert.color import COLOR_MODES, DEFAULT_COLOR, transfer_color
from faceswap.convert.detail import DEFAULT_STRENGTH as DEFAULT_DETAIL
from faceswap.convert.detail import transfer_detail
from faceswap.convert.mask import MASK_SOURCES, crop_landmarks, face_masks
from faceswap.convert.smooth import DEFAULT_DEGREE, DEFAULT_LOOKAHEAD, LandmarkSmoother
from faceswap.device import pick_device, torch_threads
from faceswap.errors import FaceswapError
from faceswap.faces.align import alignment_matrices, matrix_scale, warp_faces
from faceswap.choices import PERSON_DISTANCE
from faceswap.faces.detect import DetectorConfig
from faceswap.faces.people import PeopleFollower, ReferencePeople, reference_people
from faceswap.atomic import atomic_write_bytes
from faceswap.faces.store import Alignments, file_fingerprint, list_images, png_chunk, read_face_png
from faceswap.errors import NoSpaceError, write_failure
from faceswap.lock import OutputLock
from faceswap.model.occlusion import load_occlusion, occlusion_probs
from faceswap.provenance import container_tags, finish_output, mark_faces, payload_bits
from faceswap.video import FrameReader, VideoWriter, probe

OUTPUT_VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov"}
DETAIL_FACTOR = 4  # paste size / model size for detail transfer when the model has no refiners
STAGES = ("decode", "detect/align", "model", "colour/blend", "encode")


@dataclass
class ConvertConfig:
    """Everything `faceswap convert` can be told. Frame indices are 0-based; `end` is exclusive.

    mask_erode / mask_blur are percent of the model's crop side (see `convert.mask`); crf 0 writes
    lossless RGB H.264 (bit-exact frames), anything else H.264 yuv420p at that CRF.
    """

    input: Path
    output: Path
    model_dir: Path
    alignments: Path | None = None
    direction: str = "a2b"
    mask: str = "auto"  # auto = the learned mask when the model has one, else the landmark-following one
    mask_erode: float = 0.0
    mask_blur: float = 0.0
    color: str = DEFAULT_COLOR
    blend: str = "alpha"
    smooth: bool = True
    refine: bool = True  # paste the refiners' R*S px faces when the model has refiners (False: the decoder's S px)
    detail: float = DEFAULT_DETAIL  # strength of the source's fine detail added to the swap (convert.detail); 0 = none
    smooth_window: int = DEFAULT_LOOKAHEAD  # frames each side of the zero-phase landmark filter
    crf: int = 18
    x264_preset: str = "medium"
    start: int = 0
    end: int | None = None
    batch_size: int = 16  # frames per chunk; all their faces go through the model together
    device: str = "auto"
    precision: str = "auto"  # model arithmetic: auto = bf16 where the CPU/GPU does it natively, else fp32
    threads: int | None = None  # torch CPU threads (None = what other jobs leave free)
    overwrite: bool = False
    no_credentials: bool = False  # skip metadata + C2PA (with a warning); the watermark always stays
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    people: list[Path] = field(default_factory=list)  # --person: swap only these people's faces (photos or face folders)
    person_distance: float = PERSON_DISTANCE

    def options(self) -> dict[str, Any]:
        """What shaped the pictures (recorded in the output's metadata)."""
        keys = ("direction", "mask", "mask_erode", "mask_blur", "color", "blend", "smooth", "smooth_window", "crf", "start", "end",
                "precision", "refine", "detail")
        return {k: getattr(self, k) for k in keys}


@dataclass
class ConvertSummary:
    frames: int = 0
    faces_swapped: int = 0
    frames_without_face: int = 0
    frames_detected: int = 0  # frames whose faces were detected on the fly (not from alignments)
    frames_with_several_faces: int = 0  # frames that showed more than one face (of anyone)
    faces_of_others: int = 0  # --person: faces left as they were
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # per-image failures in folder mode
    outputs: list[Path] = field(default_factory=list)  # files written in folder mode
    output: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        others = f", {self.faces_of_others} faces of other people left as they were" if self.faces_of_others else ""
        return (f"{self.frames} frames, {self.faces_swapped} faces swapped, {self.frames_without_face} frames without a face"
                f"{others} ({self.fps:.1f} frames/s)")

    def stage_line(self) -> str:
        total = sum(self.stage_seconds.values()) or 1.0
        return ", ".join(f"{k} {v:.1f}s ({v / total:.0%})" for k, v in self.stage_seconds.items())


class StageTimer:
    """Adds wall time per stage into `summary.stage_seconds` (time the main thread spends there;
    ffmpeg decodes and encodes in parallel processes, so decode/encode count only the waiting)."""

    def __init__(self, seconds: dict[str, float] | None = None):
        self.seconds = dict.fromkeys(STAGES, 0.0) if seconds is None else seconds

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - t0


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` -> bf16 where the hardware has it (AVX512-BF16/AMX CPUs, recent GPUs), else fp32.

    Measured on the 2-core AVX512-BF16 EPYC: lite 1.65x faster per face; the decoder's last conv
    stays fp32 (see `model.autoencoder.Decoder`), so pixels are not quantised coarser than 8 bit.
    """
    if name not in PRECISIONS:
        raise FaceswapError(f"unknown precision {name!r} (choose from {', '.join(PRECISIONS)})")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


class FaceSwapper:
    """The per-batch core: frames + landmarks in, frames with swapped faces out."""

    def __init__(self, model, config: ConvertConfig, device: torch.device, timer: StageTimer, watermark_bits: np.ndarray):
        if config.direction not in ("a2b", "b2a"):
            raise FaceswapError(f"unknown direction {config.direction!r} (use a2b or b2a)")
        if config.mask not in MASK_SOURCES:
            raise FaceswapError(f"unknown mask {config.mask!r} (choose from {', '.join(MASK_SOURCES)})")
        if config.color not in COLOR_MODES:
            raise FaceswapError(f"unknown colour mode {config.color!r} (choose from {', '.join(COLOR_MODES)})")
        if config.blend not in BLEND_MODES:
            raise FaceswapError(f"unknown blend mode {config.blend!r} (choose from {', '.join(BLEND_MODES)})")
        if config.mask == "learned" and not model.learn_mask:
            raise FaceswapError(f"--mask learned: the model in {config.model_dir} has no learned mask (train with --learn-mask)")
        self.model, self.config, self.device, self.timer = model, config, device, timer
        self.watermark_bits = watermark_bits
        self.size, self.coverage = model.size, model.coverage
        # What is pasted: the refiner's output (model.out_size) or the decoder's (size). Masks, colour
        # statistics and the paste all work at that side, from crops cut at that side.
        self.refine = bool(model.refine) and config.refine
        if not 0 <= config.detail <= 2:
            raise FaceswapError(f"--detail {config.detail:g} out of range (0..2)")
        # Without refiners, detail still needs room above the model's resolution: the model's
        # output is upscaled (bicubic) to DETAIL_FACTOR times its side and the band fills the rest.
        self.out_size = model.out_size if self.refine else self.size * (DETAIL_FACTOR if config.detail > 0 else 1)
        self.learned = model.learn_mask and config.mask in ("auto", "learned")
        # auto without a learned mask: the template ellipse narrowed on the far side of a turned head
        # (`convert.mask.landmark_face_masks`), so the decoder's background beside the cheek is not pasted.
        self.follow_landmarks = config.mask in ("auto", "landmarks", "occlusion")
        # --mask occlusion: the landmark-following mask minus what the model dir's occlusion net
        # (`model.occlusion`, `faceswap train-occlusion`) flags as in front of the source's face.
        self.occlusion = None
        if config.mask == "occlusion":
            self.occlusion, info = load_occlusion(config.model_dir, device)
            if info.coverage != self.coverage:
                raise FaceswapError(f"the occlusion net in {config.model_dir} is for {info.coverage!r} crops, the model "
                                    f"for {self.coverage!r}: train it again with `faceswap train-occlusion --overwrite`")
        self.precision = resolve_precision(config.precision, device)
        face_masks(1, self.size, self.coverage, config.mask_erode, config.mask_blur)  # range check before any work

    def crops(self, frames: list[np.ndarray], owners: list[int], matrices: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """`(B, 3, S, S)` float crops of each face, cut with kornia (`warp_faces`).

        A face much larger than the crop is first area-reduced by an integer factor on the uint8
        frame with OpenCV (<1 ms for a 512 px frame), leaving kornia a near 1:1 resample: warping the
        full frame with its Gaussian pyramid took 30 ms per 512 px frame on one core, half the budget
        of a 10 frames/s convert. Faces are grouped by (frame size, factor) and warped per group.
        """
        size_out = size or self.size
        out = torch.empty(len(owners), 3, size_out, size_out, device=self.device)
        factors = torch.floor(1.0 / matrix_scale(matrices).clamp_min(1e-6)).clamp_min(1).to(torch.int64).tolist()
        groups: dict[tuple, list[int]] = {}
        for i, o in enumerate(owners):
            groups.setdefault((frames[o].shape, factors[i]), []).append(i)
        for (shape, f), faces in groups.items():
            h, w = shape[:2]
            size = (max(1, round(w / f)), max(1, round(h / f)))
            needed = sorted({owners[i] for i in faces})
            stack = np.stack([frames[o] if f == 1 else cv2.resize(frames[o], size, interpolation=cv2.INTER_AREA) for o in needed])
            t = torch.from_numpy(stack).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            # reduced -> frame pixels (centres at integers): x = (x_r + 0.5) * fx - 0.5
            fx, fy = w / size[0], h / size[1]
            pre = torch.tensor([[fx, 0.0, (fx - 1) / 2], [0.0, fy, (fy - 1) / 2], [0.0, 0.0, 1.0]], dtype=matrices.dtype)
            m = matrices[faces] @ pre
            pick = torch.tensor([needed.index(owners[i]) for i in faces], device=self.device)
            out[faces] = warp_faces(t[pick], m.to(self.device), size_out)
        return out

    def swap(self, frames: list[np.ndarray], landmarks: list[list[np.ndarray]],
             alphas: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Swap every face.

        Args:
            frames: `(H, W, 3)` uint8 RGB images (sizes may differ).
            landmarks: per frame, its faces' `(5, 2)` landmarks in frame pixels.
            alphas: when a list is given, it is filled with each frame's `(H, W)` float32 paste
                alpha (`convert.blend.paste_alphas`: where the swap replaced the frame), for benches.
        Returns:
            the frames, new arrays where a face was pasted, the very same arrays elsewhere.
        """
        owners = [i for i, faces in enumerate(landmarks) for _ in faces]
        if alphas is not None:
            alphas[:] = [np.zeros(f.shape[:2], np.float32) for f in frames]
        if not owners:
            return list(frames)
        cfg = self.config
        out = [f.copy() if landmarks[i] else f for i, f in enumerate(frames)]
        with torch.inference_mode():
            with self.timer("detect/align"):
                lms = np.stack([lm for faces in landmarks for lm in faces])
                matrices = alignment_matrices(lms, self.size, self.coverage)
                crops = self.crops(frames, owners, matrices)
                if self.out_size != self.size:  # the originals at the pasted faces' side, for the colour statistics
                    matrices = alignment_matrices(lms, self.out_size, self.coverage)
                    originals = self.crops(frames, owners, matrices, self.out_size)
                else:
                    originals = crops
            with self.timer("model"), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                if self.occlusion is not None:
                    faces, learned, recon = self.model.swap_and_reconstruct(crops, cfg.direction, refine=self.refine)
                else:
                    faces, learned = self.model.swap(crops, cfg.direction, refine=self.refine)
            faces = faces.float()
            if faces.shape[-1] != self.out_size:
                faces = F.interpolate(faces, size=self.out_size, mode="bicubic", align_corners=False).clamp(0, 1)
            learned = learned.float() if learned is not None else None
            occluded = None
            if self.occlusion is not None:  # outside the autocast: fp32, as it was trained
                with self.timer("model"):
                    occluded = occlusion_probs(self.occlusion, originals, recon, self.occlusion.size)
            if learned is not None and self.out_size != self.size:
                learned = F.interpolate(learned, size=self.out_size, mode="bilinear", align_corners=False)
            with self.timer("colour/blend"):
                masks = face_masks(len(owners), self.out_size, self.coverage, cfg.mask_erode, cfg.mask_blur,
                                   learned if self.learned else None, self.device,
                                   landmarks=crop_landmarks(lms, matrices) if self.follow_landmarks else None,
                                   occlusion=occluded)
                faces = transfer_color(faces, originals, masks, cfg.color)
                faces = transfer_detail(faces, originals, self.out_size / self.size, cfg.detail)
                by_shape: dict[tuple, list[int]] = {}
                for i, o in enumerate(owners):
                    by_shape.setdefault(frames[o].shape, []).append(i)
                for idx in by_shape.values():
                    paste_faces(out, [owners[i] for i in idx], faces[idx].cpu(), masks[idx].cpu(), matrices[idx], cfg.blend)
                    if alphas is not None:
                        shown = paste_alphas(frames[owners[idx[0]]].shape[:2], len(frames), [owners[i] for i in idx],
                                             masks[idx].cpu(), matrices[idx])
                        for o in {owners[i] for i in idx}:
                            alphas[o] = shown[o]
                    # Provenance layer 2: the invisible mark in every pasted face, no opt-out.
                    mark_faces(out, [owners[i] for i in idx], masks[idx].cpu(), matrices[idx], self.watermark_bits)
        return out


class _LandmarkSource:
    """Each frame's landmarks: from an alignments entry when it lists the frame, else detected;
    with `people` (--person), only those people's faces (`faces.people`)."""

    def __init__(self, entry: dict | None, config: ConvertConfig, device: torch.device, summary: ConvertSummary,
                 people: ReferencePeople | None = None):
        self.entry, self.config, self.device, self.summary = entry, config, device, summary
        self._detector = None
        self.people = people
        self.follower = PeopleFollower(people) if people is not None else None

    @property
    def detector(self):
        if self._detector is None:
            from faceswap.faces.detect import FaceDetector  # loads MTCNN: only when something needs detecting

            self._detector = FaceDetector(self.config.detector, self.device)
        return self._detector

    def video(self, indices: list[int], frames: np.ndarray) -> list[list[np.ndarray]]:
        known = self.entry["frames"] if self.entry else {}
        out: list[list[np.ndarray] | None] = [
            [np.asarray(f["landmarks"], np.float64) for f in known[str(i)]] if str(i) in known else None for i in indices]
        missing = [k for k, v in enumerate(out) if v is None]
        if missing:
            # Full detection on every frame: the keyframe tracker of `faces.track` drifts by up to
            # 60 px within its 8-frame interval on clip A's looking-down frames (measured).
            found = self.detector.detect(frames[missing])
            for k, faces in zip(missing, found):
                out[k] = [f.landmarks.astype(np.float64) for f in faces]
            self.summary.frames_detected += len(missing)
        return [self._chosen(self.follower, i, frame, lms) for i, frame, lms in zip(indices, frames, out)]

    def _chosen(self, follower: PeopleFollower | None, index: int, frame: np.ndarray, landmarks: list[np.ndarray]) -> list[np.ndarray]:
        """The faces to swap among a frame's `landmarks` (frame pixels)."""
        self.summary.frames_with_several_faces += len(landmarks) > 1
        if follower is None:
            n = self.config.detector.max_faces  # also for faces from alignments, which extract may have kept all of
            if 0 < n < len(landmarks):
                landmarks = sorted(landmarks, key=lambda lm: -float(np.linalg.norm(lm[1] - lm[0])))[:n]
            return landmarks
        from faceswap.faces.descriptor import load_descriptor

        describe = load_descriptor()
        tracks = follower.frame(index, landmarks, frame, lambda todo: describe([frame] * len(todo), [landmarks[t] for t in todo]))
        kept = [lm for lm, t in zip(landmarks, tracks) if t.person >= 0]
        self.summary.faces_of_others += len(landmarks) - len(kept)
        return kept

    def image(self, path: Path, image: np.ndarray, alignments: Alignments | None) -> list[np.ndarray]:
        found = alignments.find_source(path) if alignments else None
        if found is not None:
            _check_entry(alignments.path, found[0], found[1], ["0"])
        if found is not None and "0" in found[1]["frames"]:
            landmarks = [np.asarray(f["landmarks"], np.float64) for f in found[1]["frames"]["0"]]
        else:
            self.summary.frames_detected += 1
            landmarks = [f.landmarks.astype(np.float64) for f in self.detector.detect_images([image])[0]]
        follower = PeopleFollower(self.people) if self.people is not None else None  # images are not a sequence
        return self._chosen(follower, 0, image, landmarks)


def _check_writable(folder: Path, what: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".faceswap-write-test")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise FaceswapError(f"cannot write {what} in {folder}: {exc.strerror or exc}") from exc


def _check_paths(cfg: ConvertConfig) -> str:
    """Validate input/output before any heavy work. Returns "video" or "images"."""
    src, out = Path(cfg.input), Path(cfg.output)
    if not src.exists():
        raise FaceswapError(f"{src}: no such file or folder")
    if out.resolve() == src.resolve():
        raise FaceswapError(f"output {out} is the input: choose another path")
    if cfg.crf < 0 or cfg.crf > 51:
        raise FaceswapError(f"--crf {cfg.crf} out of range (0 = lossless .. 51)")
    if cfg.batch_size < 1 or cfg.smooth_window < 0:
        raise FaceswapError("--batch-size must be >= 1 and --smooth-window >= 0")
    if src.is_dir():
        if cfg.start != 0 or cfg.end is not None:
            raise FaceswapError("--start/--end apply to videos, not image folders")
        if out.exists() and not out.is_dir():
            raise FaceswapError(f"input is an image folder, so the output must be a folder too; {out} is a file")
        return "images"  # the folder is made by the output lock (and removed again if nothing lands in it)
    if out.suffix.lower() not in OUTPUT_VIDEO_EXTENSIONS:
        raise FaceswapError(f"output {out.name}: use a video file name ending in {', '.join(sorted(OUTPUT_VIDEO_EXTENSIONS))}")
    if out.is_dir():
        raise FaceswapError(f"output {out} is a folder; give a video file name")
    if out.exists() and not cfg.overwrite:
        raise FaceswapError(f"{out} already exists (use --overwrite to replace it)")
    if not out.parent.is_dir():
        raise FaceswapError(f"cannot write {out}: folder {out.parent} does not exist")
    _check_writable(out.parent, out.name)
    if cfg.end is not None and cfg.end <= cfg.start:
        raise FaceswapError(f"--end {cfg.end} must be greater than --start {cfg.start}")
    return "video"


def _load_alignments(path: Path) -> Alignments:
    al = Alignments.load(path)
    bad = next((k for k, e in al.sources.items() if not isinstance(e, dict)), None)
    if bad is not None:
        raise FaceswapError(f"{path}: the entry for {Path(bad).name} is not an object; extract again")
    return al


def _check_entry(path: Path, key: str, entry: dict, frames: list[str] | None = None) -> None:
    """Refuse an alignments entry convert cannot use, naming the file, source, frame and face
    (an edited or damaged file otherwise surfaced as a bare TypeError deep in the alignment)."""
    where = f"{path}: {Path(key).name}"
    known = entry.get("frames")
    if not isinstance(known, dict):
        raise FaceswapError(f"{where}: 'frames' is missing or not an object")
    for i in known if frames is None else [f for f in frames if f in known]:
        faces = known[i]
        if not isinstance(faces, list):
            raise FaceswapError(f"{where}, frame {i}: expected a list of faces, got {type(faces).__name__}")
        for k, face in enumerate(faces):
            lm = face.get("landmarks") if isinstance(face, dict) else None
            try:
                ok = lm is not None and np.isfinite(arr := np.asarray(lm, np.float64)).all() and arr.shape == (5, 2)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                what = "is not an object" if not isinstance(face, dict) else \
                    "has no 'landmarks'" if lm is None else "has 'landmarks' that are not 5 finite (x, y) points"
                raise FaceswapError(f"{where}, frame {i}, face {k} {what}; extract again")


def _alignments_entry(cfg: ConvertConfig, info) -> dict:
    """The alignments entry for the input video; refuses alignments made for another video."""
    al = _load_alignments(cfg.alignments)
    found = al.find_source(cfg.input)
    if found is None:
        names = ", ".join(sorted(Path(k).name for k in al.sources)) or "none"
        raise FaceswapError(f"{cfg.alignments} has no alignments for {Path(cfg.input).name} (it lists: {names}); "
                            f"run `faceswap extract` on this video or leave out --alignments")
    key, entry = found
    if entry.get("kind", "video") != "video":
        raise FaceswapError(f"{cfg.alignments} lists {Path(key).name} as an image, not a video")
    got = (entry.get("width"), entry.get("height"), entry.get("frame_count"), entry.get("fingerprint"))
    want = (info.width, info.height, info.frame_count, file_fingerprint(cfg.input))
    if got != want:
        raise FaceswapError(f"{cfg.alignments} was made for another version of {Path(key).name} "
                            f"({got[0]}x{got[1]}, {got[2]} frames; this video is {want[0]}x{want[1]}, {want[2]} frames, "
                            f"or its content changed): extract it again")
    _check_entry(Path(cfg.alignments), key, entry)
    return entry


def _progress(console: Console, show: bool) -> Progress | None:
    if not show:
        return None
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TextColumn("[cyan]{task.fields[faces]} faces"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


def _convert_video(cfg: ConvertConfig, swapper: FaceSwapper, source: _LandmarkSource, tags: dict[str, str],
                   summary: ConvertSummary, timer: StageTimer, progress: Progress | None) -> None:
    info = probe(cfg.input)
    last = max(info.frame_count, info.nominal_frames)
    if cfg.start >= last:
        raise FaceswapError(f"--start {cfg.start} is past the end of {Path(cfg.input).name} ({last} frames)")
    entry = _alignments_entry(cfg, info) if cfg.alignments else None
    if entry is not None:
        source.entry = entry
    # timestamps: every frame keeps its source time (a variable-frame-rate clip re-timed to its
    # average rate drifted from the audio copied beside it).
    reader = FrameReader(cfg.input, start=cfg.start, end=cfg.end, info=info, timestamps=True)
    # Audio for exactly the frames written: from the first to the last frame when a range was asked
    # for (audio_start=None), copied whole otherwise.
    trimmed = cfg.start > 0 or cfg.end is not None
    audio_start = None if trimmed else 0.0
    audio_duration = None
    smoother = LandmarkSmoother(cfg.smooth_window if cfg.smooth else 0, DEFAULT_DEGREE)
    task = progress.add_task(Path(cfg.input).name, total=reader.expected, faces=0) if progress else None
    pending: dict[int, np.ndarray] = {}

    def emit(ready: list[tuple[int, list[np.ndarray]]], writer: VideoWriter) -> None:
        if not ready:
            return
        frames = [pending.pop(i) for i, _ in ready]
        landmarks = [faces for _, faces in ready]
        out = swapper.swap(frames, landmarks)
        with timer("encode"):
            writer.write(np.stack(out), pts=[reader.pts.pop(i) for i, _ in ready], time_base=reader.time_base)
        n_faces = sum(len(f) for f in landmarks)
        summary.frames += len(ready)
        summary.faces_swapped += n_faces
        summary.frames_without_face += sum(1 for f in landmarks if not f)
        if progress:
            progress.update(task, advance=len(ready), faces=summary.faces_swapped)

    with VideoWriter(cfg.output, info.width, info.height, info.fps, crf=cfg.crf, preset=cfg.x264_preset,
                     audio_from=cfg.input, audio_start=audio_start, audio_duration=audio_duration, metadata=tags,
                     lossless=cfg.crf == 0) as writer:
        chunks = reader.chunks(min(cfg.batch_size, max(1, reader.expected)))  # no batch larger than the video
        while True:
            with timer("decode"):
                chunk = next(chunks, None)
            if chunk is None:
                break
            indices, frames = chunk
            with timer("detect/align"):
                landmarks = source.video(indices, frames)
            ready = []
            for idx, frame, faces in zip(indices, frames, landmarks):
                pending[idx] = frame
                ready += smoother.push(idx, faces)
            emit(ready, writer)
        emit(smoother.flush(), writer)
        if writer.frames_written != reader.frames_read:
            raise FaceswapError(f"internal error: read {reader.frames_read} frames but wrote {writer.frames_written}")
    if reader.warning:
        summary.warnings.append(reader.warning)
    if progress:
        progress.update(task, total=summary.frames, completed=summary.frames)
    if summary.frames_detected and entry is not None:
        summary.warnings.append(f"{summary.frames_detected} frames were not in {cfg.alignments} and were detected on the fly")
    if summary.faces_swapped == 0:
        who = " of " + ", ".join(source.people.names) if source.people is not None else ""
        summary.warnings.append(f"no face{who} found in {Path(cfg.input).name}: its frames were copied through unchanged (still labelled)")
    elif source.people is None and summary.frames_with_several_faces:
        summary.warnings.append(f"{summary.frames_with_several_faces} frames show more than one face and every face was swapped "
                                f"(--person REF swaps one person only; --max-faces N the N largest)")


def labelled_png(image: np.ndarray, tags: dict[str, str]) -> bytes:
    """PNG bytes of an `(H, W, 3)` uint8 RGB image with `tags` as tEXt chunks (`comment` -> `Comment`)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise FaceswapError("could not encode an output image as PNG")
    png = buf.tobytes()
    text = b"".join(png_chunk(b"tEXt", ("Comment" if k == "comment" else k).encode("latin-1") + b"\0" + v.encode("latin-1", "replace"))
                    for k, v in tags.items())
    iend = png.rfind(b"IEND") - 4
    return png[:iend] + text + png[iend:]


def _convert_images(cfg: ConvertConfig, swapper: FaceSwapper, source: _LandmarkSource, tags: dict[str, str],
                    summary: ConvertSummary, timer: StageTimer, progress: Progress | None) -> None:
    paths = list_images(cfg.input)
    if not paths:
        raise FaceswapError(f"{cfg.input}: folder has no images")
    alignments = _load_alignments(cfg.alignments) if cfg.alignments else None
    names = {}
    for p in paths:  # outputs are PNG (lossless, carries the label); keep names unique
        name = p.stem + ".png"
        names[p] = p.name + ".png" if name in names.values() else name
    clashes = [n for n in names.values() if (Path(cfg.output) / n).exists()]
    if clashes and not cfg.overwrite:
        raise FaceswapError(f"{cfg.output} already holds {clashes[0]} (and {len(clashes) - 1} more outputs); use --overwrite or another folder")
    try:
        _swap_images(cfg, swapper, source, tags, summary, timer, progress, paths, names, alignments)
    except BaseException:
        # A failed run (disk full, Ctrl-C) leaves none of the images it added; replaced ones stay replaced.
        for p in summary.outputs:
            if p.name not in clashes:
                p.unlink(missing_ok=True)
        raise
    if summary.faces_swapped == 0 and summary.frames:
        summary.warnings.append(f"no face found in the images of {cfg.input}: copied through unchanged (still labelled)")


def _swap_images(cfg: ConvertConfig, swapper: FaceSwapper, source: _LandmarkSource, tags: dict[str, str], summary: ConvertSummary,
                 timer: StageTimer, progress: Progress | None, paths: list[Path], names: dict[Path, str],
                 alignments: Alignments | None) -> None:
    task = progress.add_task(f"{len(paths)} images", total=len(paths), faces=0) if progress else None
    for start in range(0, len(paths), cfg.batch_size):
        batch, images, landmarks = [], [], []
        for path in paths[start : start + cfg.batch_size]:
            try:
                with timer("decode"):
                    image, _ = read_face_png(path)
            except FaceswapError as exc:
                summary.errors.append(str(exc))
                continue
            with timer("detect/align"):
                landmarks.append(source.image(path, image, alignments))
            batch.append(path)
            images.append(image)
        out = swapper.swap(images, landmarks)
        for path, image, faces in zip(batch, out, landmarks):
            target = Path(cfg.output) / names[path]
            with timer("encode"):
                try:
                    atomic_write_bytes(target, labelled_png(image, tags))
                except OSError as exc:
                    raise write_failure(target, exc) from exc
            summary.outputs.append(target)
            summary.frames += 1
            summary.faces_swapped += len(faces)
            summary.frames_without_face += not faces
        if progress:
            progress.update(task, advance=len(paths[start : start + cfg.batch_size]), faces=summary.faces_swapped)


def run_convert(config: ConvertConfig, console: Console | None = None, show_progress: bool = True) -> ConvertSummary:
    """Convert one video or image folder. Raises `FaceswapError` for bad input (nothing is left
    under the output name then); per-image failures in folder mode land in `summary.errors`."""
    console = console or Console(stderr=True)
    kind = _check_paths(config)
    # One job per output: a second convert into it is refused before it writes anything. An image
    # folder is made by the lock and removed again by it when the run wrote nothing there.
    with OutputLock(config.output, "convert", folder=kind == "images"):
        _check_paths(config)  # again: a job that held the lock may have finished this output meanwhile
        if kind == "images":
            _check_writable(Path(config.output), "images")
            return _run_convert(config, console, show_progress, kind)
        return _keeping_previous(Path(config.output), lambda: _run_convert(config, console, show_progress, kind))


def _keeping_previous(out: Path, run):
    """Run a video convert with an earlier output (--overwrite) moved aside until the new one is
    complete and signed: a failure (a full disk, Ctrl-C) restores it and leaves nothing new."""
    previous = out.with_name(f".{out.name}.faceswap-previous") if out.exists() else None
    if previous is not None:
        os.replace(out, previous)
    try:
        summary = run()
    except BaseException:
        out.unlink(missing_ok=True)  # ours: an earlier file was moved aside above
        if previous is not None:
            os.replace(previous, out)
        raise
    if previous is not None:
        previous.unlink(missing_ok=True)
    return summary


def _check_room_to_sign(path: Path, margin: int) -> None:
    """Signing writes a signed copy beside the output before the rename: on a full disk c2pa only
    said "UntrackedPointer" and the run went on unsigned. Refuse with the reason instead.
    margin: bytes the manifest adds (~4 KiB measured with the local certificate chain)."""
    need = path.stat().st_size + margin
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise NoSpaceError(f"no space left on device writing {path}: signing its Content Credentials needs "
                           f"{need / 2**20:.2f} MiB free beside it, {free / 2**20:.2f} MiB are; free some space and run again")


def _run_convert(config: ConvertConfig, console: Console, show_progress: bool, kind: str) -> ConvertSummary:
    from faceswap.model.autoencoder import load_model_with_id

    device = pick_device(config.device)
    # torch's threads: --threads, or the CPUs other jobs leave free (restored when convert ends)
    with torch_threads(config.threads):
        model, mid = load_model_with_id(config.model_dir, device)
        tags = {} if config.no_credentials else container_tags(mid, config.options())
        summary = ConvertSummary(output=Path(config.output))
        timer = StageTimer(summary.stage_seconds)
        swapper = FaceSwapper(model, config, device, timer, payload_bits(mid))
        people = reference_people(config.people, config.person_distance) if config.people else None
        source = _LandmarkSource(None, config, device, summary, people)
        progress = _progress(console, show_progress)
        t0 = time.perf_counter()
        with progress or nullcontext():
            if kind == "video":
                _convert_video(config, swapper, source, tags, summary, timer, progress)
            else:
                _convert_images(config, swapper, source, tags, summary, timer, progress)
        # Provenance layer 3: Content Credentials on the finished file(s); a failed signing only warns.
        outputs = [Path(config.output)] if kind == "video" else summary.outputs
        try:
            for path in outputs:
                if not config.no_credentials:
                    _check_room_to_sign(path, 0)  # cannot fit: do not even try
                warnings = finish_output(path, mid, credentials=not config.no_credentials)
                if warnings and not config.no_credentials:
                    _check_room_to_sign(path, 64 << 10)  # the signing failed for want of space after all
                summary.warnings += [w for w in warnings if w not in summary.warnings]
        except NoSpaceError:
            if kind == "images":
                for p in summary.outputs:  # none of this run's images stays unsigned
                    p.unlink(missing_ok=True)
            raise
        summary.seconds = time.perf_counter() - t0
        return summary


__all__ = ["ConvertConfig", "ConvertSummary", "FaceSwapper", "labelled_png", "run_convert"]

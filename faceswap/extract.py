"""Stage 1, extract: videos/images -> aligned face PNGs + `alignments.json`.

Frames stream from ffmpeg in batches. Worker threads find the faces of the next batches (MTCNN on
a downscaled copy, see `faces.detect` and `faces.track`; on CPU two batches side by side) while
this thread cuts each face of the current one out onto the template (`faces.align.cut_faces`) and
a small pool writes them as PNGs with their metadata. `alignments.json` is checkpointed every few seconds, so an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import collections
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from faceswap import __version__
from faceswap.atomic import atomic_write_bytes, sync_folder
from faceswap.device import keep_freed_memory, pick_device
from faceswap.errors import FaceswapError
from faceswap.faces.align import COVERAGES, DEFAULT_COVERAGE, alignment_matrices, cut_faces
from faceswap.faces.detect import DetectorConfig, Face, FaceDetector
from faceswap.faces import descriptor as face_descriptor
from faceswap.faces.people import PERSON_DISTANCE, FaceTracker, PeopleFollower, ReferencePeople, group_tracks, reference_people
from faceswap.faces.track import track_faces
from faceswap.faces.store import (ALIGNMENTS_NAME, IMAGE_EXTENSIONS, Alignments, file_fingerprint, list_images, read_face_meta,
                                  read_face_png, read_png_meta, replace_png_meta, write_face_png)
from faceswap.errors import NoSpaceError, write_failure
from faceswap.lock import OutputLock
from faceswap.video import FrameReader, probe

CHECKPOINT_SECONDS = 5.0
PNG_WRITERS = 2  # each writes one batch's faces (isal releases the GIL while it deflates)
DETECT_AHEAD = 3  # batches detected ahead of the one being saved (keeps both detection workers busy)


@dataclass
class ExtractConfig:
    """Everything `faceswap extract` can be told. Frame indices are 0-based; `end` is exclusive."""

    inputs: list[Path]
    output: Path
    size: int = 256
    coverage: str = DEFAULT_COVERAGE
    every: int = 1
    start: int = 0
    end: int | None = None
    batch_size: int = 32
    device: str = "auto"
    overwrite: bool = False
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    people: list[Path] = field(default_factory=list)  # --person: keep only these people's faces (photos or face folders)
    split_people: bool = False  # --split-people: group the faces into people, a folder of each
    person_distance: float = PERSON_DISTANCE


@dataclass
class ExtractSummary:
    frames_read: int = 0
    faces_written: int = 0
    frames_without_face: int = 0
    faces_of_others: int = 0  # faces found but not written: not the --person asked for
    descriptions: int = 0  # faces described for identity
    people: dict[str, int] = field(default_factory=dict)  # faces written per person
    sources_done: int = 0
    sources_skipped: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        others = f", {self.faces_of_others} faces of other people left out" if self.faces_of_others else ""
        people = "; people: " + ", ".join(f"{k} {v} faces" for k, v in self.people.items()) if self.people else ""
        return (f"{self.frames_read} frames read, {self.faces_written} faces written, "
                f"{self.frames_without_face} frames without a face{others}{people}")


def _face_record(face: Face, matrix: np.ndarray, file: str) -> dict[str, Any]:
    return {"box": np.round(face.box.astype(float), 2).tolist(), "landmarks": np.round(face.landmarks.astype(float), 3).tolist(),
            "score": round(face.score, 5), "matrix": np.round(matrix, 6).tolist(), "file": file}


def _write_faces(faces: list[tuple[Path, np.ndarray, dict[str, Any]]]) -> None:
    for path, crop, meta in faces:
        try:
            write_face_png(path, crop, meta, sync=False)
        except OSError as exc:
            raise write_failure(path, exc) from exc


class _Extractor:
    """One extract run: owns the detector, the alignments, the writer pool and the progress bar."""

    def __init__(self, config: ExtractConfig, console: Console, show_progress: bool, people: ReferencePeople | None = None):
        self.config = config
        self.people = people  # --person: only their faces are written
        self.describe = face_descriptor.load_descriptor() if people is not None or config.split_people else None
        self.console = console
        self.show_progress = show_progress
        self.summary = ExtractSummary()
        self.out = config.output
        self.device = pick_device(config.device)
        self.alignments = self._open_output()
        # On CPU two worker threads detect the next batches side by side while this thread saves the
        # current one; each thread running torch ops gets an equal share of torch's threads (several
        # full OpenMP teams on the same cores spin against each other). Set before the nets are
        # built: tracing them with a full OpenMP team took ~0.4 s more.
        # OpenCV's own thread pool gets one thread for the same reason (measured ~5 % faster on clip A).
        cpu = self.device.type == "cpu"
        keep_freed_memory()
        self.torch_threads, self.cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
        if cpu:
            torch.set_num_threads(max(1, self.torch_threads // 3))
            cv2.setNumThreads(1)
        # The nets are built in the background (~0.2 s, mostly TorchScript tracing) while the first
        # video is probed and its first frames decode; `detector` waits for them.
        self._builder = ThreadPoolExecutor(max_workers=1)
        self._detector = self._builder.submit(FaceDetector, config.detector, self.device, threads=2 if cpu else 1)
        self.pool = ThreadPoolExecutor(max_workers=PNG_WRITERS)
        self.detect_workers = 2 if cpu else 1
        self.detect_pool = ThreadPoolExecutor(max_workers=self.detect_workers)  # batches are detected independently
        self.pending: list[Future] = []
        self.write_failed = False  # a face write failed: alignments must not list its frames
        self.new_keys: set[str] = set()  # sources this run added to alignments
        self.replaced_files: set[str] = set()  # old face files to delete once their source is redone
        self.last_save = time.monotonic()
        self.checkpoint_every = CHECKPOINT_SECONDS

    @property
    def detector(self) -> FaceDetector:
        return self._detector.result()

    # -- output folder ---------------------------------------------------------------------------
    def _open_output(self) -> Alignments:
        cfg = self.config
        if cfg.coverage not in COVERAGES:
            raise FaceswapError(f"unknown coverage {cfg.coverage!r} (choose from {', '.join(COVERAGES)})")
        if cfg.size < 32:
            raise FaceswapError(f"--size {cfg.size} is too small (use 32 or more)")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            probe_file = self.out / ".faceswap-write-test"
            probe_file.write_bytes(b"")
            probe_file.unlink()
        except OSError as exc:
            raise FaceswapError(f"cannot write to output folder {self.out}: {exc.strerror or exc}") from exc
        path = self.out / ALIGNMENTS_NAME
        if path.exists():
            existing = Alignments.load(path)
            if (existing.size, existing.coverage) != (cfg.size, cfg.coverage):
                if not cfg.overwrite:
                    raise FaceswapError(
                        f"{self.out} holds faces at size {existing.size}/coverage {existing.coverage}, not "
                        f"{cfg.size}/{cfg.coverage}; use another folder or --overwrite to replace them")
                self.replaced_files.update(existing.face_files())
                return Alignments(path, cfg.size, cfg.coverage)
            return existing
        images = list_images(self.out)
        # Faces of our own run that stopped before its first checkpoint (a full disk, a kill) carry
        # their metadata: taken as ours, rewritten by this run. Anything else is the user's.
        foreign = None if cfg.overwrite else next((p for p in images if not self._own_face(p)), None)
        if foreign is not None:
            raise FaceswapError(f"{self.out} already holds images that faceswap extract did not write ({foreign.name} "
                                f"of {len(images)} images); use another folder or --overwrite")
        return Alignments(path, cfg.size, cfg.coverage)

    def _own_face(self, path: Path) -> bool:
        """An aligned face PNG that extract wrote with this run's size and coverage."""
        if path.suffix.lower() != ".png":
            return False
        try:
            meta = read_face_meta(path)
        except OSError:
            return False
        return (isinstance(meta, dict) and str(meta.get("tool", "")).startswith("faceswap ") and "source" in meta
                and "frame" in meta and (meta.get("size"), meta.get("coverage")) == (self.config.size, self.config.coverage))

    def _checkpoint(self, force: bool = False) -> None:
        """Save alignments once every face it lists is on disk. Faces are written without an fsync
        each (measured ~0.8 ms CPU per face and stalled writers); one `syncfs` of the output's
        filesystem here makes them all durable before alignments.json names them. alignments.json
        is rewritten whole (~30 MB, 0.7 s for an hour of video), so the interval grows to keep saving
        under ~5 % of the time."""
        if not force and time.monotonic() - self.last_save < self.checkpoint_every:
            return
        self._wait_for_writes()
        started = time.monotonic()
        self._save()
        self.last_save = time.monotonic()
        self.checkpoint_every = max(CHECKPOINT_SECONDS, 20 * (self.last_save - started))

    def _wait_for_writes(self) -> None:
        """Wait for every queued face write; then re-raise the first failure."""
        error = None
        while self.pending:
            try:
                self.pending.pop(0).result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other writes
                self.write_failed = True
                error = error or exc
        if error is not None:
            raise error

    def _save(self) -> None:
        if not self.alignments.sources and not self.alignments.path.exists():
            return  # nothing extracted into a new folder: no alignments.json (the lock removes the empty folder)
        sync_folder(self.out)
        try:
            self.alignments.save()
        except OSError as exc:
            raise write_failure(self.alignments.path, exc) from exc

    def _drop_unwritten(self) -> None:
        """After a failed face write: forget the frames whose faces are not all on disk, so that
        alignments.json lists only files that exist and a rerun resumes before the first gap."""
        for key, entry in list(self.alignments.sources.items()):
            gaps = [int(i) for i, faces in entry["frames"].items() if any(not (self.out / f["file"]).exists() for f in faces)]
            if not gaps:
                continue
            if entry.get("kind") != "video":
                del self.alignments.sources[key]
                continue
            first = min(gaps)
            entry["frames"] = {i: faces for i, faces in entry["frames"].items() if int(i) < first}
            entry["next_frame"], entry["complete"] = first, False

    def _stem_for(self, key: str, path: Path) -> str:
        """A face-file prefix unique among sources in this folder (same-named files in different folders)."""
        used = {e.get("stem") for k, e in self.alignments.sources.items() if k != key}
        stem, n = path.stem, 2
        while stem in used:
            stem, n = f"{path.stem}-{n}", n + 1
        return stem

    # -- faces -----------------------------------------------------------------------------------
    def _save_faces(self, frames: np.ndarray, frame_faces: list[list[Face]], indices: list[int], entry: dict, source: str,
                    follower: FaceTracker | PeopleFollower) -> int:
        """Warp every face of a batch in one kornia call, follow them (`faces.people`) and queue the
        PNG writes of those to keep. Returns faces written."""
        cfg = self.config
        owner = [i for i, faces in enumerate(frame_faces) for _ in faces]
        flat = [f for faces in frame_faces for f in faces]
        for idx in indices:
            entry["frames"][str(idx)] = []
        if not flat:
            self.summary.frames_without_face += len(indices)
            return 0
        matrices = alignment_matrices(np.stack([f.landmarks for f in flat]), cfg.size, cfg.coverage)
        crops = cut_faces(frames, owner, matrices, cfg.size)
        mats = matrices.numpy()
        tracks = self._follow(frames, frame_faces, indices, crops, mats, entry, follower)
        writes = []
        per_frame_count: dict[int, int] = {}
        for face, m, o, crop, track in zip(flat, mats, owner, crops, tracks):
            if self.people is not None and track.person < 0:
                self.summary.faces_of_others += 1
                continue
            k = per_frame_count.get(o, 0)
            per_frame_count[o] = k + 1
            idx = indices[o]
            name = f"{entry['stem']}_{idx:06d}_{k}.png" if entry["kind"] == "video" else f"{entry['stem']}_{k}.png"
            record = _face_record(face, m, name)
            record["track"] = track.id
            if self.people is not None:
                record["person"], record["person_distance"] = self.people.names[track.person], round(track.distance, 4)
                self.summary.people[record["person"]] = self.summary.people.get(record["person"], 0) + 1
            entry["frames"][str(idx)].append(record)
            meta = {"source": source, "frame": idx, "face": k, "size": cfg.size, "coverage": cfg.coverage,
                    "tool": f"faceswap {__version__}",
                    **{k2: record[k2] for k2 in ("matrix", "landmarks", "box", "score", "track", "person") if k2 in record}}
            writes.append((self.out / name, crop, meta))
            self.replaced_files.discard(name)
        self.summary.frames_without_face += len(indices) - len(per_frame_count)
        if writes:
            self.pending.append(self.pool.submit(_write_faces, writes))  # one task per batch: fewer thread hand-offs
        self.summary.faces_written += len(writes)
        return len(writes)

    def _follow(self, frames: np.ndarray, frame_faces: list[list[Face]], indices: list[int], crops: np.ndarray,
                mats: np.ndarray, entry: dict, follower: FaceTracker | PeopleFollower) -> list:
        """The track of every face of a batch (flat order). Faces that need a description are
        described from their aligned crops (landmarks mapped into the crop)."""
        out, start = [], 0
        for o, faces in enumerate(frame_faces):
            lms = [f.landmarks for f in faces]
            if isinstance(follower, FaceTracker):
                out += follower.link(lms, frames[o])
            else:
                def describe(todo: list[int], base=start) -> np.ndarray:
                    picked = [base + t for t in todo]
                    crop_lms = [lms[t] @ mats[j][:, :2].T + mats[j][:, 2] for t, j in zip(todo, picked)]
                    return self.describe([crops[j] for j in picked], crop_lms)

                tracks = follower.frame(indices[o], lms, frames[o], describe)
                for t in tracks:
                    if t.described_at == indices[o]:  # described just now: its summary in alignments
                        info = entry.setdefault("tracks", {}).setdefault(str(t.id), {})
                        if t.descriptors:
                            info["descriptor"] = np.round(np.mean(t.descriptors, 0), 4).tolist()
                        if t.person is not None:
                            info["person"] = self.people.names[t.person] if t.person >= 0 else None
                out += tracks
            start += len(faces)
        entry["next_track"] = follower.tracker.next_id if isinstance(follower, PeopleFollower) else follower.next_id
        return out

    def _follower(self, entry: dict) -> FaceTracker | PeopleFollower:
        """Track ids continue from a resumed run's."""
        start = int(entry.get("next_track", 0))
        if self.describe is None:
            return FaceTracker(next_id=start)
        return PeopleFollower(self.people, next_track=start)

    # -- sources ---------------------------------------------------------------------------------
    def _begin_source(self, path: Path, kind: str, info: dict) -> tuple[str, dict] | None:
        """The alignments entry to fill for `path`, or None when it is already done."""
        found = self.alignments.find_source(path)
        key = str(path.resolve())
        if found is not None:
            old_key, entry = found
            if entry.get("complete") and not self.config.overwrite:
                self.summary.sources_skipped += 1
                self.console.print(f"[dim]{path.name}: already extracted into {self.out} (use --overwrite to redo)[/dim]")
                return None
            if entry.get("complete") or entry.get("options") != self._options():
                # --overwrite, or a partial run with other options: start this source afresh.
                self.replaced_files.update(f["file"] for faces in entry["frames"].values() for f in faces)
                del self.alignments.sources[old_key]
            else:
                self.alignments.sources[key] = self.alignments.sources.pop(old_key)
                return key, self.alignments.sources[key]  # resume a partial run
        entry = {"path": key, "kind": kind, "fingerprint": file_fingerprint(path), **info,
                 "options": self._options(), "complete": False, "next_frame": self.config.start if kind == "video" else 0,
                 "frames": {}}
        entry["stem"] = self._stem_for(key, path)
        self.alignments.sources[key] = entry
        self.new_keys.add(key)
        return key, entry

    def _options(self) -> dict[str, Any]:
        c = self.config
        people = {"people": [str(p.resolve()) for p in c.people], "person_distance": c.person_distance} if c.people else {}
        return {"every": c.every, "start": c.start, "end": c.end, "detect_size": c.detector.detect_size,
                "min_face": c.detector.min_face, "min_score": c.detector.min_score, "max_faces": c.detector.max_faces,
                "redetect_every": c.detector.redetect_every, **people, **({"split_people": True} if c.split_people else {})}

    def video(self, path: Path, progress: Progress | None) -> None:
        cfg = self.config
        info = probe(path)
        last = max(info.frame_count, info.nominal_frames)
        if cfg.start >= last:
            raise FaceswapError(f"{path.name}: --start {cfg.start} is past its end ({last} frames); nothing extracted")
        begun = self._begin_source(path, "video", {"width": info.width, "height": info.height, "fps": info.fps,
                                                   "frame_count": info.frame_count})
        if begun is None:
            return
        key, entry = begun
        first = max(cfg.start, int(entry["next_frame"]))
        if cfg.end is not None and first >= cfg.end or first >= max(info.frame_count, info.nominal_frames):
            entry["complete"] = True
            return
        reader = FrameReader(path, start=first, end=cfg.end, every=cfg.every, info=info)
        if first > cfg.start:
            self.console.print(f"{path.name}: resuming at frame {first}")
        task = progress.add_task(path.name, total=reader.expected, faces=0) if progress else None
        found = 0
        batch = min(cfg.batch_size, max(1, reader.expected))  # a batch larger than the video allocates for nothing
        follower = self._follower(entry)
        try:
            for indices, frames, faces in self._detect_ahead(reader.chunks(batch), reader.expected):
                found += self._save_faces(frames, faces, indices, entry, key, follower)
                self.summary.frames_read += len(indices)
                entry["next_frame"] = indices[-1] + 1
                if progress:
                    progress.update(task, advance=len(indices), faces=found)
                self._checkpoint()
        except FaceswapError:
            if not entry["frames"]:
                del self.alignments.sources[key]  # nothing decoded: no entry (nor a folder) left behind
            raise
        finally:
            self.summary.descriptions += getattr(follower, "descriptions", 0)
        if reader.warning:
            self.summary.warnings.append(reader.warning)
        entry["complete"] = True
        if progress:
            progress.update(task, total=reader.frames_read, completed=reader.frames_read)
            progress.stop_task(task)  # its frames/s stays the source's own
        self._finish_source(path, entry)

    def _detect_ahead(self, chunks: Iterator[tuple[list[int], np.ndarray]], expected: int) -> Iterator[tuple[list[int], np.ndarray, list[list[Face]]]]:
        """`(indices, frames, faces)` per batch, in order. The next batches are detected in worker
        threads while the caller warps and saves this one (torch, OpenCV and isal release the GIL).
        The last full batch is split in two at a keyframe so that both workers finish together
        (the same keyframes, so the same faces; a lone last batch left a core idle ~0.2 s)."""
        every = self.config.detector.redetect_every
        pending: collections.deque = collections.deque()

        def oldest():
            indices, frames, jobs = pending.popleft()
            return indices, frames, [faces for job in jobs for faces in job.result()]

        seen = 0
        for indices, frames in chunks:
            seen += len(indices)
            cut = -(-len(frames) // 2 // every) * every  # the first keyframe at or after the middle
            last_full = expected - seen < len(frames) and self.detect_workers > 1 and 0 < cut < len(frames)
            parts = [frames[:cut], frames[cut:]] if last_full else [frames]
            pending.append((indices, frames, [self.detect_pool.submit(track_faces, self.detector, part, every) for part in parts]))
            if len(pending) > DETECT_AHEAD:
                yield oldest()
        while pending:
            yield oldest()

    def images(self, paths: list[Path], progress: Progress | None) -> None:
        task = progress.add_task(f"{len(paths)} images", total=len(paths), faces=0) if progress else None
        found = 0
        for start in range(0, len(paths), self.config.batch_size):
            batch = []
            for path in paths[start : start + self.config.batch_size]:
                try:
                    image, _ = read_face_png(path)
                except FaceswapError as exc:
                    self.summary.errors.append(str(exc))
                    continue
                begun = self._begin_source(path, "image", {"width": image.shape[1], "height": image.shape[0]})
                if begun is not None:
                    batch.append((path, image, *begun))
            if batch:
                faces = self.detector.detect_images([b[1] for b in batch])
                for (path, image, key, entry), frame_faces in zip(batch, faces):
                    follower = self._follower(entry)
                    found += self._save_faces(image[None], [frame_faces], [0], entry, key, follower)
                    self.summary.descriptions += getattr(follower, "descriptions", 0)
                    self.summary.frames_read += 1
                    entry["complete"] = True
                    self._finish_source(path, entry)
            if progress:
                progress.update(task, advance=len(paths[start : start + self.config.batch_size]), faces=found)
            self._checkpoint()

    def _finish_source(self, path: Path, entry: dict) -> None:
        self.summary.sources_done += 1
        if not any(entry["frames"].values()):
            who = " of " + ", ".join(self.people.names) if self.people is not None else ""
            self.summary.warnings.append(f"no face{who} found in {path.name}")

    def split_people(self) -> None:
        """--split-people, once every source is done: group all tracks of the folder into people by
        their mean descriptors, write each face's person into alignments and its PNG (metadata
        only), and link the faces of each person into `person_<n>/` (hard links: no copies)."""
        self._wait_for_writes()
        keys = [(k, t) for k, e in self.alignments.sources.items() for t, info in e.get("tracks", {}).items() if "descriptor" in info]
        if not keys:
            return
        labels = group_tracks({i: np.asarray(self.alignments.sources[k]["tracks"][t]["descriptor"], np.float32)
                               for i, (k, t) in enumerate(keys)}, self.config.person_distance)
        person_of = {kt: f"person_{labels[i]}" for i, kt in enumerate(keys)}
        self.alignments.people = {name: {"split": True} for name in sorted(set(person_of.values()), key=lambda n: int(n[7:]))}
        for name in self.alignments.people:
            folder = self.out / name
            folder.mkdir(exist_ok=True)
            for old in folder.glob("*.png"):  # our links from an earlier split; nothing else is touched
                if (self.out / old.name).exists() and os.path.samefile(old, self.out / old.name):
                    old.unlink()
        counts: dict[str, int] = {}
        for key, entry in self.alignments.sources.items():
            for t, info in entry.get("tracks", {}).items():
                info["person"] = person_of.get((key, t))
            for faces in entry["frames"].values():
                for face in faces:
                    name = person_of.get((key, str(face.get("track"))))
                    if name is None:
                        continue
                    face["person"] = name
                    counts[name] = counts.get(name, 0) + 1
                    path = self.out / face["file"]
                    data = path.read_bytes()
                    meta = read_png_meta(data) or {}
                    if meta.get("person") != name:
                        atomic_write_bytes(path, replace_png_meta(data, {**meta, "person": name}), sync=False)
                    try:
                        os.link(path, self.out / name / face["file"])
                    except FileExistsError:
                        pass
                    except OSError:
                        shutil.copy2(path, self.out / name / face["file"])  # a filesystem without hard links
        self.summary.people = dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def _restore_process_settings(self) -> None:
        torch.set_num_threads(self.torch_threads)
        cv2.setNumThreads(self.cv2_threads)
        keep_freed_memory(False)  # the next stage (demo: training) gets freed memory returned again

    def close(self, success: bool) -> None:
        """Wait for the writes and save alignments (also after a failure or Ctrl-C, so a rerun
        resumes); raises a write failure only when the run itself succeeded (else it would hide
        the error in flight)."""
        error: BaseException | None = None
        try:
            try:
                self._wait_for_writes()
            except BaseException as exc:  # noqa: BLE001 - see the docstring
                error = exc
            if self.write_failed:
                self._drop_unwritten()
            try:
                self._save()
            except FaceswapError as exc:
                error = error or exc
            if error is not None and success:
                raise error
        finally:
            self.pool.shutdown()
            self.detect_pool.shutdown()
            self._builder.shutdown()
            self._restore_process_settings()
        if success and not self.write_failed:
            # Files of redone sources that the new run did not write again.
            for name in self.replaced_files:
                (self.out / name).unlink(missing_ok=True)


def _expand_inputs(inputs: list[Path], summary: ExtractSummary) -> list[tuple[str, Any]]:
    """Group inputs into ('video', path) and ('images', [paths]) jobs; bad inputs become errors."""
    jobs: list[tuple[str, Any]] = []
    for path in inputs:
        if path.is_dir():
            images = list_images(path)
            if not images:
                summary.errors.append(f"{path}: folder has no images")
            else:
                jobs.append(("images", images))
        elif not path.exists():
            summary.errors.append(f"{path}: no such file or folder")
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            jobs.append(("images", [path]))
        else:
            jobs.append(("video", path))
    return jobs


def run_extract(config: ExtractConfig, console: Console | None = None, show_progress: bool = True) -> ExtractSummary:
    """Extract faces from every input. Failures of single inputs are collected in
    `summary.errors` while the others go on; a run that finds no face at all raises."""
    console = console or Console(stderr=True)
    summary_pre = ExtractSummary()
    jobs = _expand_inputs(config.inputs, summary_pre)
    people = reference_people(config.people, config.person_distance) if config.people else None
    if people is not None and config.split_people:
        raise FaceswapError("--person and --split-people do not go together: --person keeps one person's faces, "
                            "--split-people sorts every face into a folder per person")
    if config.split_people:
        face_descriptor.load_descriptor()  # the one-line install hint now, not after the first batch
    # One job per output folder: a second one is refused here, before it writes anything.
    with OutputLock(config.output, "extract"):
        return _run_extract(config, console, show_progress, jobs, summary_pre, people)


def _run_extract(config: ExtractConfig, console: Console, show_progress: bool, jobs: list[tuple[str, Any]],
                 summary_pre: ExtractSummary, people: ReferencePeople | None = None) -> ExtractSummary:
    extractor = _Extractor(config, console, show_progress, people)
    summary = extractor.summary
    summary.errors += summary_pre.errors
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("[cyan]{task.fields[faces]} faces"), TextColumn("{task.fields[fps]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    progress = _ExtractProgress(*columns, console=console, transient=False) if show_progress else None
    success = False
    try:
        with progress or nullcontext():
            for kind, job in jobs:
                try:
                    if kind == "video":
                        extractor.video(job, progress)
                    else:
                        extractor.images(job, progress)
                except NoSpaceError:
                    raise  # every further source would fail the same way
                except FaceswapError as exc:
                    summary.errors.append(str(exc))
        if summary.faces_written == 0 and summary.sources_done > 0 and not summary.errors:
            # Not recorded as done (a rerun would skip them and exit 0); a new folder is not left behind.
            for key in extractor.new_keys:
                extractor.alignments.sources.pop(key, None)
            who = " of " + ", ".join(people.names) if people is not None else ""
            raise FaceswapError(f"no faces{who} found in " + ", ".join(str(p) for p in config.inputs))
        if people is not None:
            for name, ref in zip(people.names, config.people):
                extractor.alignments.people[name] = {"references": [str(Path(ref).resolve())]}
        if config.split_people:
            extractor.split_people()
        success = True
    finally:
        extractor.close(success)
    return summary


class _ExtractProgress(Progress):
    """Progress bar that shows frames/s per task."""

    def get_renderables(self):
        for task in self.tasks:
            # Over the whole task: rich's own estimate uses the last few updates, and frames arrive
            # 32 at a time (it showed 1350 fr/s on a 64-frame run that took a second).
            speed = task.completed / task.elapsed if task.elapsed and task.completed else None
            task.fields["fps"] = f"{speed:5.1f} fr/s" if speed else "  -- fr/s"
        yield from super().get_renderables()

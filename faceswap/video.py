"""Streaming video I/O through ffmpeg-python, driving the static ffmpeg that imageio-ffmpeg ships.

Frames are `(H, W, 3)` uint8 RGB numpy arrays and travel through pipes: no whole video is ever
held in memory. There is no ffprobe here, so `probe` asks imageio-ffmpeg (which parses ffmpeg's
own header dump) and counts packets with a stream copy.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ffmpeg
import imageio_ffmpeg
import numpy as np
from imageio_ffmpeg._parsing import parse_ffmpeg_header

from faceswap.errors import FaceswapError

VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video. `frame_count` counts the packets actually in the file;
    `nominal_frames` is what the container header promises (they differ for truncated files)."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    nominal_frames: int
    duration: float
    has_audio: bool
    codec: str


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FaceswapError(f"{path}: no such file")
    if not path.is_file():
        raise FaceswapError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise FaceswapError(f"{path}: empty file (0 bytes)")


def _last_ffmpeg_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg failed"


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, fps, frame count and audio presence of a video file.

    Raises:
        FaceswapError: missing, empty, or not a video ffmpeg can decode.
    """
    path = Path(path)
    _check_file(path)
    counting = _start_packet_count(path)  # its own ffmpeg, side by side with the header read
    try:
        # `ffmpeg -i` alone prints the header and stops (~25 ms); imageio-ffmpeg's own header parser
        # (the one its `read_frames` uses) reads it. Starting a decode to get the header took ~0.1 s.
        header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, errors="replace").stderr
        try:
            meta = parse_ffmpeg_header(header)
        except (IndexError, KeyError, ValueError) as exc:
            with open(path, "rb") as f:
                looks_mp4 = f.read(12)[4:8] == b"ftyp"
            if "moov atom not found" in header and looks_mp4:
                raise FaceswapError(f"{path}: truncated or corrupt video (no index: 'moov atom not found')") from exc
            raise FaceswapError(f"{path}: not a video ffmpeg can read (corrupt or another kind of file)") from exc
        width, height = (int(v) for v in meta["size"])
        fps = float(meta.get("fps") or 0.0)
        duration = float(meta.get("duration") or 0.0)
        if width <= 0 or height <= 0 or fps <= 0:
            raise FaceswapError(f"{path}: not a video (no video stream with a frame rate)")
    except BaseException:
        counting.kill()
        counting.communicate()
        raise
    frame_count = _packet_count(counting)
    nominal = int(round(duration * fps)) if duration > 0 else frame_count
    return VideoInfo(path, width, height, fps, int(frame_count), nominal, duration, "audio_codec" in meta, str(meta.get("codec", "")))


def _start_packet_count(path: Path) -> subprocess.Popen:
    """Start counting the frames in the file with a stream copy (no decoding: ~0.1 s for a minute
    of video); `_packet_count` collects the answer."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "null", "-",
           "-progress", "pipe:1"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _packet_count(counting: subprocess.Popen) -> int:
    out, _ = counting.communicate()
    counts = re.findall(r"^frame=(\d+)", out, flags=re.MULTILINE)
    return int(counts[-1]) if counts else 0


def _drain(stream, lines: collections.deque) -> None:
    """Keep ffmpeg's stderr flowing (a full pipe would stall it) and remember the last lines."""
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode("utf-8", "replace").rstrip())
    stream.close()


class FrameReader:
    """Decode frames `start, start+every, ...` (< `end`) of a video, in a background thread.

    Iterate for `(frame_index, frame)` pairs, or call `chunks(n)` for `(indices, (N, H, W, 3))`
    batches. After iteration, `frames_read` is the number of frames delivered and `warning` says
    why the video ended early (truncated or damaged), or is None.
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, end: int | None = None, every: int = 1,
                 info: VideoInfo | None = None, prefetch: int = 32):
        if every < 1 or start < 0 or (end is not None and end <= start):
            raise FaceswapError(f"bad frame range: start={start} end={end} every={every}")
        self.info = info or probe(path)
        self.path = Path(path)
        self.start, self.end, self.every = start, end, every
        self.prefetch = prefetch
        self.frames_read = 0
        self.warning: str | None = None

    @property
    def expected(self) -> int:
        """How many frames this range should deliver for an intact file."""
        stop = self.info.nominal_frames if self.end is None else min(self.end, max(self.info.nominal_frames, self.info.frame_count))
        return max(0, math.ceil((stop - self.start) / self.every))

    def _command(self) -> list[str]:
        stream = ffmpeg.input(str(self.path)).video
        conditions = []
        if self.start > 0:
            conditions.append(f"gte(n,{self.start})")
        if self.end is not None:
            conditions.append(f"lt(n,{self.end})")
        if self.every > 1:
            conditions.append(f"not(mod(n-{self.start},{self.every}))")
        if conditions:
            stream = stream.filter("select", "*".join(conditions))
        # passthrough: never duplicate or drop frames to keep a constant rate.
        out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough", loglevel="error")
        return out.compile(cmd=ffmpeg_exe())

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        for indices, frames in self.chunks(8):
            yield from zip(indices, frames)

    def chunks(self, size: int) -> Iterator[tuple[list[int], np.ndarray]]:
        """Frames in batches: `(indices, frames)` with frames `(N, H, W, 3)` uint8, N <= size.
        ffmpeg's output is read straight into each batch's array: no copy and no buffer per frame."""
        w, h = self.info.width, self.info.height
        frame_bytes = w * h * 3
        # With an end, stop as soon as the range is delivered instead of decoding to the end.
        limit = None if self.end is None else math.ceil((self.end - self.start) / self.every)
        proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        errors: collections.deque = collections.deque(maxlen=20)
        err_thread = threading.Thread(target=_drain, args=(proc.stderr, errors), daemon=True)
        err_thread.start()
        batches: queue.Queue = queue.Queue(maxsize=max(1, self.prefetch // size))
        stop = threading.Event()

        def pump():
            n = 0
            try:
                while not stop.is_set() and (limit is None or n < limit):
                    count = size if limit is None else min(size, limit - n)
                    batch = np.empty((count, h, w, 3), np.uint8)
                    filled = 0
                    while filled < count and proc.stdout.readinto(memoryview(batch[filled]).cast("B")) == frame_bytes:
                        filled += 1
                    n += filled
                    if filled:
                        batches.put(batch[:filled])
                    if filled < count:
                        break  # end of the stream (a partial last frame is dropped)
            finally:
                batches.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        index = self.start
        try:
            while (batch := batches.get()) is not None:
                self.frames_read += len(batch)
                indices = list(range(index, index + len(batch) * self.every, self.every))
                index += len(batch) * self.every
                yield indices, batch
        finally:
            stop.set()
            # Unblock the pump if it waits on a full queue, then stop ffmpeg.
            while reader.is_alive():
                try:
                    batches.get_nowait()
                except queue.Empty:
                    reader.join(0.01)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
            err_thread.join(1)
        finished = limit is None or self.frames_read >= limit
        if self.frames_read == 0 and self.expected > 0:
            raise FaceswapError(f"{self.path}: no frames could be decoded ({_last_ffmpeg_line(chr(10).join(errors))})")
        if finished and self.frames_read < self.expected - 1:
            self.warning = (f"{self.path.name} ended after {self.frames_read} of ~{self.expected} frames "
                            f"(truncated or damaged file); kept the frames it has")


class VideoWriter:
    """Encode RGB frames to H.264 (yuv420p, CRF) with optional audio copied from a source file.

    The file is written under a hidden temporary name next to `path` and renamed into place by
    `close()`; if encoding fails or the writer is used as a context manager that exits with an
    exception, the temporary file is removed and `path` is never touched.

    Args:
        audio_from: a file whose first audio stream is muxed in (skipped when it has none).
        audio_start, audio_duration: seconds of that audio to keep (re-encoded to AAC when trimmed,
            copied bit-exact otherwise).
        metadata: container tags (`comment`, `title`, custom keys...), kept as MP4 tags.
        lossless: RGB H.264 (libx264rgb, CRF 0): decodes to exactly the RGB frames written (yuv420p
            cannot: it halves chroma). Fewer players show it; `crf` is ignored.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, crf: int = 18,
                 preset: str = "medium", audio_from: str | os.PathLike | None = None, audio_start: float = 0.0,
                 audio_duration: float | None = None, metadata: dict[str, str] | None = None, lossless: bool = False):
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        if not self.path.parent.is_dir():
            raise FaceswapError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        self.tmp_path = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=fps).video
        if (width % 2 or height % 2) and not lossless:
            # yuv420p needs even sizes: pad one edge pixel rather than fail.
            video = video.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
        streams = [video]
        codec = {"vcodec": "libx264rgb", "pix_fmt": "rgb24", "crf": 0} if lossless else {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf}
        out_args: dict = {**codec, "preset": preset, "movflags": "+faststart+use_metadata_tags", "loglevel": "error"}
        if audio_from is not None and probe_has_audio(audio_from):
            in_args = {}
            if audio_start > 0:
                in_args["ss"] = f"{audio_start:.6f}"
            if audio_duration is not None:
                in_args["t"] = f"{audio_duration:.6f}"
            streams.append(ffmpeg.input(str(audio_from), **in_args).audio)
            trimmed = audio_start > 0 or audio_duration is not None
            out_args.update({"acodec": "aac", "audio_bitrate": "192k"} if trimmed else {"acodec": "copy"})
        cmd = ffmpeg.output(*streams, str(self.tmp_path), **out_args).overwrite_output().compile(cmd=ffmpeg_exe())
        tags = []
        for key, value in (metadata or {}).items():
            tags += ["-metadata", f"{key}={value}"]
        out_at = cmd.index(str(self.tmp_path))
        cmd = cmd[:out_at] + tags + cmd[out_at:]
        self._errors: collections.deque = collections.deque(maxlen=20)
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._err_thread = threading.Thread(target=_drain, args=(self._proc.stderr, self._errors), daemon=True)
        self._err_thread.start()

    def write(self, frames: np.ndarray) -> None:
        """Append one `(H, W, 3)` frame or a batch `(N, H, W, 3)` of uint8 RGB frames."""
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3):
            raise FaceswapError(f"frame of shape {frames.shape[1:]} does not match the video's {(self.height, self.width, 3)}")
        try:
            self._proc.stdin.write(frames.tobytes())
        except BrokenPipeError as exc:
            self.abort()
            raise FaceswapError(f"ffmpeg stopped while writing {self.path}: {_last_ffmpeg_line(chr(10).join(self._errors))}") from exc
        self.frames_written += len(frames)

    def close(self) -> None:
        """Finish encoding and move the file into place."""
        self._proc.stdin.close()
        code = self._proc.wait()
        self._err_thread.join(5)
        if code != 0:
            self.tmp_path.unlink(missing_ok=True)
            raise FaceswapError(f"ffmpeg failed writing {self.path}: {_last_ffmpeg_line(chr(10).join(self._errors))}")
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        """Stop encoding and remove the partial file; `path` is left as it was."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def probe_has_audio(path: str | os.PathLike) -> bool:
    """Whether a media file has an audio stream."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return any(" Audio: " in line for line in result.stderr.splitlines() if "Stream #" in line)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Container-level tags of a media file (lower-cased keys), as ffmpeg reports them."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "ffmetadata", "-"],
                            capture_output=True, text=True)
    tags = {}
    for line in result.stdout.splitlines()[1:]:
        if "=" in line and not line.startswith(("[", ";")):
            key, _, value = line.partition("=")
            tags[key.strip().lower()] = value.strip()
    return tags

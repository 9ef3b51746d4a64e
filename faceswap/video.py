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
import struct
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
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


def ffmpeg_path(path: str | os.PathLike) -> str:
    """How a local file is named to ffmpeg: `file:` + its absolute path.

    ffmpeg reads `name:rest` as a protocol and `subfile,,...`/`concat:a|b` as recipes, so a file called
    `pipe:x.mp4` would be read from stdin and `concat:a.mp4` or `http:...` opens something else;
    with `file:` every name is just a file. Every path that goes into an ffmpeg command goes through here.
    """
    return "file:" + os.path.abspath(os.fspath(path))


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video. `frame_count` counts the packets actually in the file;
    `nominal_frames` is what the container header promises (they differ for truncated files).

    `width`/`height` are the size as displayed: for a phone clip stored 480x320 with a 90 degree
    rotation they are 320x480, the size of the frames `FrameReader` delivers. `rotation` is that
    display rotation, clockwise degrees (0, 90, 180, 270; other angles: 0 and the picture is decoded
    as stored is not promised); `rotate_tag` says it came from a legacy `rotate` tag, which ffmpeg
    no longer applies by itself, so `FrameReader` rotates those frames itself.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    nominal_frames: int
    duration: float
    has_audio: bool
    codec: str
    rotation: int = 0
    rotate_tag: bool = False


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


def _rotation(header: str) -> tuple[int, bool]:
    """Clockwise display rotation of the first video stream from ffmpeg's header dump, and whether
    it came from a legacy `rotate` tag (ffmpeg < 5 wrote and applied that tag; ffmpeg 9 keeps it as
    a plain tag, e.g. in MKV, and applies only the display matrix)."""
    lines = header.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("Stream #") and " Video: " in ln), None)
    if start is None:
        return 0, False
    block = []
    for ln in lines[start + 1:]:
        if ln.lstrip().startswith(("Stream #", "Output #", "Input #")):
            break
        block.append(ln)
    text = "\n".join(block)
    # ffmpeg 9: "Display Matrix: rotation of -90.00 degrees" (older: "displaymatrix: ..."), counter-clockwise.
    matrix = re.search(r"rotation of (-?[0-9.]+) degrees", text)
    if matrix:
        return _right_angle(-float(matrix.group(1))), False
    tag = re.search(r"^\s*rotate\s*:\s*(-?[0-9.]+)\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    if tag:
        return _right_angle(float(tag.group(1))), True
    return 0, False


def _right_angle(degrees: float) -> int:
    """0/90/180/270 for angles within 1 degree of one (ffmpeg's autorotate tolerance), else 0."""
    d = degrees % 360
    for a in (0, 90, 180, 270, 360):
        if abs(d - a) < 1.0:
            return a % 360
    return 0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size (as displayed), fps, frame count and audio presence of a video file.

    Raises:
        FaceswapError: missing, empty, or not a video ffmpeg can decode.
    """
    path = Path(path)
    _check_file(path)
    counting = _start_packet_count(path)  # its own ffmpeg, side by side with the header read
    try:
        # `ffmpeg -i` alone prints the header and stops (~25 ms); imageio-ffmpeg's own header parser
        # (the one its `read_frames` uses) reads it. Starting a decode to get the header took ~0.1 s.
        header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_path(path)], stdin=subprocess.DEVNULL,
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
        rotation, by_tag = _rotation(header)
        if rotation in (90, 270):
            width, height = height, width
    except BaseException:
        counting.kill()
        counting.communicate()
        raise
    frame_count, covered, partial = _packet_count(counting)
    nominal = int(round(duration * fps)) if duration > 0 else frame_count
    # The header's fps is an average for variable-frame-rate files, and the duration is the
    # container's (audio may run longer): their product is no frame count. When the packets reach
    # the end and the demuxer found every one of them, the packet count is what the file promises.
    if not partial and covered + max(0.5, 2 / fps) >= duration:
        nominal = frame_count
    return VideoInfo(path, width, height, fps, int(frame_count), max(nominal, frame_count), duration, "audio_codec" in meta,
                     str(meta.get("codec", "")), rotation, by_tag)


def _start_packet_count(path: Path) -> subprocess.Popen:
    """Start counting the frames in the file with a stream copy (no decoding: ~0.1 s for a minute
    of video); `_packet_count` collects the answer."""
    # The audio comes along so that `out_time` reaches the end of an intact file whose audio runs longer.
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostats", "-v", "error", "-i", ffmpeg_path(path), "-map", "0:v:0", "-map", "0:a:0?",
           "-c", "copy", "-f", "null", "-", "-progress", "pipe:1"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def _packet_count(counting: subprocess.Popen) -> tuple[int, float, bool]:
    """(video packets, seconds the packets reach, whether the demuxer found packets missing from a cut file)."""
    out, err = counting.communicate()
    counts = re.findall(r"^frame=(\d+)", out, flags=re.MULTILINE)
    times = re.findall(r"^out_time_us=(\d+)", out, flags=re.MULTILINE)
    # mov/mp4: "stream 0, offset 0x...: partial file" when the index lists packets past the end of the file.
    return int(counts[-1]) if counts else 0, int(times[-1]) / 1e6 if times else 0.0, "partial file" in err


def _drain(stream, lines: collections.deque) -> None:
    """Keep ffmpeg's stderr flowing (a full pipe would stall it) and remember the last lines."""
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode("utf-8", "replace").rstrip())
    stream.close()


# What `FrameReader` adds after `select` for a legacy `rotate` tag (clockwise degrees); ffmpeg's own
# autorotate (the display matrix) uses the same filters.
_ROTATE_FILTERS = {90: [("transpose", "clock")], 180: [("hflip", None), ("vflip", None)], 270: [("transpose", "cclock")]}
_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)")
_TIME_BASE = re.compile(r"config in time_base:\s*(\d+)/(\d+)")


class FrameReader:
    """Decode frames `start, start+every, ...` (< `end`) of a video, in a background thread.

    Iterate for `(frame_index, frame)` pairs, or call `chunks(n)` for `(indices, (N, H, W, 3))`
    batches. Frames come as displayed: a clip with a rotation (display matrix or legacy `rotate`
    tag) is delivered upright, `info.width x info.height`. After iteration, `frames_read` is the
    number of frames delivered and `warning` says why the video ended early (truncated or
    damaged), or is None.

    With `timestamps=True`, `pts[frame_index]` is each delivered frame's presentation timestamp in
    `time_base` units (None where the stream has none), known by the time its batch is yielded:
    what `VideoWriter.write(..., pts=)` needs to keep a variable-frame-rate clip's timing (pop the
    entries once used to keep memory flat on long videos).
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, end: int | None = None, every: int = 1,
                 info: VideoInfo | None = None, prefetch: int = 32, timestamps: bool = False):
        if every < 1 or start < 0 or (end is not None and end <= start):
            raise FaceswapError(f"bad frame range: start={start} end={end} every={every}")
        self.info = info or probe(path)
        self.path = Path(path)
        self.start, self.end, self.every = start, end, every
        self.prefetch = prefetch
        self.timestamps = timestamps
        self.frames_read = 0
        self.warning: str | None = None
        self.pts: dict[int, int | None] = {}
        self.time_base: Fraction | None = None

    @property
    def expected(self) -> int:
        """How many frames this range should deliver for an intact file."""
        stop = self.info.nominal_frames if self.end is None else min(self.end, max(self.info.nominal_frames, self.info.frame_count))
        return max(0, math.ceil((stop - self.start) / self.every))

    def _command(self) -> list[str]:
        # ffmpeg applies a display matrix itself (autorotate, flips included, which its header dump
        # does not show); `probe` reports the size after it. Only the legacy tag is ours to apply.
        stream = ffmpeg.input(ffmpeg_path(self.path)).video
        conditions = []
        if self.start > 0:
            conditions.append(f"gte(n,{self.start})")
        if self.end is not None:
            conditions.append(f"lt(n,{self.end})")
        if self.every > 1:
            conditions.append(f"not(mod(n-{self.start},{self.every}))")
        if conditions:
            stream = stream.filter("select", "*".join(conditions))
        if self.info.rotate_tag:
            for name, arg in _ROTATE_FILTERS.get(self.info.rotation, []):
                stream = stream.filter(name, arg) if arg else stream.filter(name)
        if self.timestamps:
            # One log line per frame with its pts (no checksums: they cost a pass over every frame).
            stream = stream.filter("showinfo", checksum=0)
        # passthrough: never duplicate or drop frames to keep a constant rate.
        out = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                            loglevel="level+info" if self.timestamps else "error").global_args("-nostats")
        return out.compile(cmd=ffmpeg_exe())

    def _drain(self, stream, lines: collections.deque, pts: list, done: threading.Condition) -> None:
        """stderr: showinfo's pts into `pts`, other warnings and errors into `lines`."""
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if "Parsed_showinfo" in line:
                if (m := _SHOWINFO.search(line)) is not None:
                    with done:
                        pts.append(None if m.group(2) == "NOPTS" else int(m.group(2)))
                        done.notify_all()
                elif (m := _TIME_BASE.search(line)) is not None:
                    self.time_base = Fraction(int(m.group(1)), int(m.group(2)))
            elif "[info]" not in line:
                lines.append(line.replace("[error] ", "").replace("[warning] ", "").replace("[fatal] ", ""))
        stream.close()
        with done:
            self._stamps_ended = True
            done.notify_all()

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
        stamps: list = []
        self._stamps_ended = False
        stamped = threading.Condition()
        err_thread = threading.Thread(target=self._drain, args=(proc.stderr, errors, stamps, stamped), daemon=True)
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
                indices = list(range(index, index + len(batch) * self.every, self.every))
                if self.timestamps:
                    # showinfo logs a frame before ffmpeg writes it out: its line is on the way.
                    with stamped:
                        stamped.wait_for(lambda: len(stamps) >= self.frames_read + len(batch) or self._stamps_ended)
                    got = stamps[self.frames_read:self.frames_read + len(batch)]
                    if len(got) < len(batch):
                        raise FaceswapError(f"{self.path}: ffmpeg reported no timestamps for frames {indices[len(got)]}..")
                    self.pts.update(zip(indices, got))
                self.frames_read += len(batch)
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
    """Encode RGB frames to H.264 (CRF) with optional audio copied from a source file.

    The file is written under a hidden temporary name next to `path` and renamed into place by
    `close()`; if encoding fails or the writer is used as a context manager that exits with an
    exception, the temporary file is removed and `path` is never touched.

    Frames reach ffmpeg with a timestamp each (an IVF stream: 12 bytes of size + pts before each raw
    frame, the simplest container ffmpeg reads from a pipe that carries one), so the output keeps
    them: frame n at n / fps, or at the `pts` given to `write` (a variable-frame-rate source's own
    timing, `FrameReader(timestamps=True)`). With `pts`, the first frame is placed against the audio
    as it was in the source, so they stay in sync whatever the timing.

    Args:
        audio_from: a file whose first audio stream is muxed in (skipped when it has none).
        audio_start, audio_duration: seconds of that audio to keep (re-encoded to AAC when trimmed,
            copied bit-exact otherwise); `audio_start=None` starts it at the first frame written
            and, without a duration, ends it with the last one.
        metadata: container tags (`comment`, `title`, custom keys...), kept as MP4 tags.
        lossless: RGB H.264 (libx264rgb, CRF 0): decodes to exactly the RGB frames written (yuv420p
            cannot: it halves chroma). Fewer players show it; `crf` is ignored.
        time_base: the unit of `write`'s `pts` (default: 1 / fps, frame numbers).

    Odd sizes are encoded yuv444p (High 4:4:4): 4:2:0 chroma, and H.264's cropping of it, come in
    2-pixel steps, so yuv420p could only pad to one pixel more (511x383 came out 512x384).
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, crf: int = 18,
                 preset: str = "medium", audio_from: str | os.PathLike | None = None, audio_start: float | None = 0.0,
                 audio_duration: float | None = None, metadata: dict[str, str] | None = None, lossless: bool = False,
                 time_base: Fraction | None = None):
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0
        if not self.path.parent.is_dir():
            raise FaceswapError(f"cannot write {self.path}: folder {self.path.parent} does not exist")
        if fps <= 0:
            raise FaceswapError(f"cannot write {self.path}: frame rate {fps} is not positive")
        self.tmp_path = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.time_base = time_base
        self._settings = dict(crf=crf, preset=preset, audio_from=audio_from, audio_start=audio_start,
                              audio_duration=audio_duration, metadata=metadata or {}, lossless=lossless)
        self._proc: subprocess.Popen | None = None
        self._last_pts: int | None = None
        self._errors: collections.deque = collections.deque(maxlen=20)

    def _start(self, first_pts: int | None) -> None:
        """Start ffmpeg once the first frame's time (the audio may start there) is known.
        `first_pts`: the first frame's pts on the source's clock, or None for frame numbers."""
        s, tb = self._settings, self.time_base
        video_args: dict = {"format": "ivf"}
        odd = self.width % 2 or self.height % 2
        codec = ({"vcodec": "libx264rgb", "pix_fmt": "rgb24", "crf": 0} if s["lossless"] else
                 {"vcodec": "libx264", "pix_fmt": "yuv444p" if odd else "yuv420p", "crf": s["crf"]})
        # passthrough + demux time base: the frames' own timestamps, no re-timing to a constant rate.
        out_args: dict = {**codec, "preset": s["preset"], "fps_mode": "passthrough", "enc_time_base": "demux",
                          "movflags": "+faststart+use_metadata_tags", "loglevel": "error"}
        audio = None
        audio_from = s["audio_from"]
        header = _header(audio_from) if audio_from is not None else ""
        if any(" Audio: " in ln for ln in header.splitlines() if "Stream #" in ln):
            found = re.search(r"Duration: .*?, start: (-?[0-9.]+)", header)
            # the first frame, in seconds from the start of the source file
            first = float(first_pts * tb) - (float(found.group(1)) if found else 0.0) if first_pts is not None else 0.0
            audio_start = max(0.0, first) if s["audio_start"] is None else s["audio_start"]
            in_args = {}
            if audio_start > 0:
                in_args["ss"] = f"{audio_start:.6f}"
            if s["audio_duration"] is not None:
                in_args["t"] = f"{s['audio_duration']:.6f}"
            audio = ffmpeg.input(ffmpeg_path(audio_from), **in_args).audio
            if s["audio_start"] is None and s["audio_duration"] is None:
                # End with the last frame: silence-padded audio, cut where the video ends (a
                # frame count / average fps duration is off for variable-frame-rate video).
                audio = audio.filter("apad")
                out_args["shortest"] = None
            out_args.update({"acodec": "aac", "audio_bitrate": "192k"} if in_args or "shortest" in out_args else {"acodec": "copy"})
            # ffmpeg starts each input at zero: put the video back where it was against the audio
            # (e.g. a source whose first frame comes 23 ms after its first audio).
            if first_pts is not None and abs(first - audio_start) > 1e-6:
                video_args["itsoffset"] = f"{first - audio_start:.6f}"
        # RV24 is BGR; swapping to RGB first keeps swscale on the RGB -> YUV path that rawvideo rgb24
        # took (straight from BGR, a flat (87, 108, 127) came back 2 levels darker per round trip).
        streams = [ffmpeg.input("pipe:", **video_args).video.filter("format", "rgb24")] + ([audio] if audio is not None else [])
        target = ffmpeg_path(self.tmp_path)
        cmd = ffmpeg.output(*streams, target, **out_args).overwrite_output().compile(cmd=ffmpeg_exe())
        tags = []
        for key, value in s["metadata"].items():
            tags += ["-metadata", f"{key}={value}"]
        out_at = cmd.index(target)
        cmd = cmd[:out_at] + tags + cmd[out_at:]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._err_thread = threading.Thread(target=_drain, args=(self._proc.stderr, self._errors), daemon=True)
        self._err_thread.start()
        # IVF file header: fourcc RV24 (raw BGR24), size, time base (denominator first), frame count unknown.
        self._send(b"DKIF" + struct.pack("<HH4sHHIIII", 0, 32, b"RV24", self.width, self.height, tb.denominator,
                                         tb.numerator, 0, 0))

    def _send(self, data) -> None:
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError as exc:
            self.abort()
            raise FaceswapError(f"ffmpeg stopped while writing {self.path}: {_last_ffmpeg_line(chr(10).join(self._errors))}") from exc

    def write(self, frames: np.ndarray, pts=None, time_base: Fraction | None = None) -> None:
        """Append one `(H, W, 3)` frame or a batch `(N, H, W, 3)` of uint8 RGB frames.

        `pts`: one presentation timestamp per frame in `time_base` units (given here or to the
        constructor; kept from the first call); None, or a None entry, places a frame one frame
        interval after the previous one. Timestamps that do not increase are moved up by one unit.
        """
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3):
            raise FaceswapError(f"frame of shape {frames.shape[1:]} does not match the video's {(self.height, self.width, 3)}")
        if pts is not None and len(pts) != len(frames):
            raise FaceswapError(f"{len(pts)} timestamps for {len(frames)} frames")
        if self.time_base is None:
            if pts is not None and time_base is None:
                raise FaceswapError("timestamps without a time base")
            self.time_base = time_base or 1 / Fraction(self.fps).limit_denominator(1_000_000)
        step = max(1, round(1 / (self.fps * self.time_base)))
        for i, frame in enumerate(frames):
            t = pts[i] if pts is not None else None
            if t is None:
                t = 0 if self._last_pts is None else self._last_pts + step
            elif self._last_pts is not None and t <= self._last_pts:
                t = self._last_pts + 1
            if self._proc is None:
                self._start(t if pts is not None and pts[i] is not None else None)
            # RGB -> the BGR order of RV24 (one copy, as tobytes() made before).
            data = np.ascontiguousarray(frame[..., ::-1])
            self._send(struct.pack("<Iq", data.nbytes, t))
            self._send(memoryview(data).cast("B"))
            self._last_pts = t
            self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the file into place."""
        if self._proc is None:
            self.time_base = self.time_base or 1 / Fraction(self.fps).limit_denominator(1_000_000)
            self._start(None)
        self._proc.stdin.close()
        code = self._proc.wait()
        self._err_thread.join(5)
        if code != 0:
            self.tmp_path.unlink(missing_ok=True)
            raise FaceswapError(f"ffmpeg failed writing {self.path}: {_last_ffmpeg_line(chr(10).join(self._errors))}")
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        """Stop encoding and remove the partial file; `path` is left as it was."""
        if self._proc is not None:
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


def _header(path: str | os.PathLike) -> str:
    """ffmpeg's dump of a media file's header (its stderr for `ffmpeg -i`)."""
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_path(path)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace").stderr


def probe_has_audio(path: str | os.PathLike) -> bool:
    """Whether a media file has an audio stream."""
    return any(" Audio: " in line for line in _header(path).splitlines() if "Stream #" in line)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Container-level tags of a media file (lower-cased keys), as ffmpeg reports them."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_path(path), "-f", "ffmetadata", "-"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    tags = {}
    for line in result.stdout.splitlines()[1:]:
        if "=" in line and not line.startswith(("[", ";")):
            key, _, value = line.partition("=")
            tags[key.strip().lower()] = value.strip()
    return tags

"""Bad input against every command, as one table: each row runs the CLI and asserts one `Error:`
line (never a traceback), the exit code, and that an output that existed before is left exactly as
it was (and that no new output is left behind). Then the output locks (a second job on one output
is refused; a dead job's lock is taken over) and full disks (monkeypatched ENOSPC).

Everything runs on tiny synthetic inputs: a 24-frame and a 1-frame clip of a photo, a tiny untrained
model, synthetic face PNGs, a detector fitted in a few seconds.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import moving_photo_frames, photo_face
from faceswap.cli import main
from faceswap.detect import DetectTrainConfig, run_detect_train
from faceswap.detect.blend import BlendConfig
from faceswap.detect.oneclass import OneClassConfig
from faceswap.faces.store import Alignments, file_fingerprint, write_face_png
from faceswap.lock import LOCK_NAME, OutputLock, lock_file_for
from faceswap.model.autoencoder import CONFIG_NAME, FORMAT, FORMAT_VERSION, Preset, SwapModel, save_checkpoint
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch
from faceswap.video import VideoWriter, probe

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def snapshot(path: Path) -> dict[str, bytes] | bytes | None:
    """Every file under `path` with its bytes (a file's bytes; None when absent)."""
    if not path.exists():
        return None
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def w(photo_clip, tmp_path_factory):
    """The inputs of the table, made once."""
    root = tmp_path_factory.mktemp("bad")
    d = {"root": root, "clip": photo_clip, "missing": root / "missing.mp4"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d["one"] = root / "one.mp4"
    with VideoWriter(d["one"], 320, 240, 24.0, crf=18) as writer:
        writer.write(moving_photo_frames(1))
    (root / "zero.mp4").write_bytes(b"")
    d["zero"] = root / "zero.mp4"
    d["text"] = root / "text.mp4"
    d["text"].write_text("this is not a video\n")
    d["cut"] = root / "cut.mp4"
    d["cut"].write_bytes(photo_clip.read_bytes()[:2000])
    d["dir_mp4"] = root / "folder.mp4"
    d["dir_mp4"].mkdir()
    d["unicode"] = root / "clip ä 名 x.mp4"
    shutil.copy(d["one"], d["unicode"])
    # A phone-style rotated clip (display matrix, 90 degrees) and a variable-frame-rate one.
    from faceswap.video import ffmpeg_exe

    d["rotated"], d["vfr"] = root / "rotated.mp4", root / "vfr.mp4"
    with VideoWriter(root / "coded.mp4", 240, 320, 24.0, crf=18) as writer:  # upright face turned clockwise
        writer.write(np.ascontiguousarray(np.rot90(moving_photo_frames(1), k=-1, axes=(1, 2))))
    # -display_rotation is counter-clockwise: displayed upright again.
    subprocess.run([ffmpeg_exe(), "-v", "error", "-display_rotation:v:0", "90", "-i", str(root / "coded.mp4"), "-c", "copy",
                    str(d["rotated"])], check=True)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30:d=1",
                    "-vf", "setpts='if(lt(N,15),N/30,0.5+(N-15)/10)/TB'", "-fps_mode", "vfr", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(d["vfr"])], check=True)
    # Image folders: a face photo at an odd size, a faceless picture, an unreadable "image".
    for name in ("odd", "noface", "unreadable"):
        (root / name).mkdir()
    photo = cv2.cvtColor(photo_face(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "odd" / "hopper.jpg"), cv2.resize(photo, (331, 389)))
    cv2.imwrite(str(root / "noface" / "wall.png"), np.full((121, 163, 3), 128, np.uint8))
    (root / "unreadable" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    d["noface_png"] = root / "noface" / "wall.png"
    d["odd_jpg"] = root / "odd" / "hopper.jpg"
    # Training faces (synthetic, with extract's metadata) and a tiny model.
    for name, ident, seed in (("faces_a", IDENTITY_A, 1), ("faces_b", IDENTITY_B, 2)):
        (root / name).mkdir()
        for i, img in enumerate(face_batch(ident, 24, 48, seed=seed).permute(0, 2, 3, 1).numpy()):
            write_face_png(root / name / f"{name}_{i:03d}.png", img,
                           {"source": f"{name}.mp4", "frame": i, "face": 0, "size": 48, "coverage": "face"})
        d[name] = root / name
    torch.manual_seed(0)
    model = SwapModel(TINY).eval()
    d["model"] = root / "model"
    d["model"].mkdir()
    (d["model"] / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **model.describe()}))
    save_checkpoint(d["model"], model, iteration=1)
    # An earlier extract of the clip's first frame (the pre-existing output of the extract rows),
    # written directly: its format is all these rows need, not MTCNN's time.
    d["extracted"] = root / "extracted"
    d["extracted"].mkdir()
    info = probe(photo_clip)
    face = {"box": [40.0, 20.0, 120.0, 120.0], "landmarks": [[60.0, 50.0], [100.0, 50.0], [80.0, 70.0], [65.0, 95.0], [95.0, 95.0]],
            "score": 0.99, "matrix": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "file": "photo_000000_0.png"}
    write_face_png(d["extracted"] / face["file"], np.full((256, 256, 3), 100, np.uint8),
                   {"source": str(photo_clip.resolve()), "frame": 0, "face": 0, "size": 256, "coverage": "face"})
    entry = {"path": str(photo_clip.resolve()), "kind": "video", "fingerprint": file_fingerprint(photo_clip), "width": info.width,
             "height": info.height, "fps": info.fps, "frame_count": info.frame_count, "options": {}, "complete": False,
             "next_frame": 1, "stem": "photo", "frames": {"0": [face]}}
    Alignments(d["extracted"] / "alignments.json", 256, "face", {entry["path"]: entry}).save()
    d["alignments"] = json.loads((d["extracted"] / "alignments.json").read_text())
    d["detector"] = root / "detector"
    run_detect_train(DetectTrainConfig(real=[d["faces_a"], d["faces_b"]], output=d["detector"], size=32, holdout=0.4, device="cpu",
                                       oneclass=OneClassConfig(size=32, width=8, code=4, iterations=10, batch_size=16),
                                       blend=BlendConfig(width=8, iterations=10, batch_size=16)),
                     show_progress=False)
    torch.set_num_threads(threads)
    return d


def bad_alignments(w, tmp: Path, edit) -> Path:
    """The earlier extract's alignments.json with one entry edited by `edit(entry)`."""
    al = json.loads(json.dumps(w["alignments"]))
    (key,) = al["sources"]
    al["sources"][key] = edit(al["sources"][key])
    path = tmp / "edited.json"
    path.write_text(json.dumps(al))
    return path


def _frame0(entry, faces):
    entry["frames"]["0"] = faces
    return entry


# Each row: id, the arguments (from the inputs `w`, a scratch folder `tmp` and the output path `out`),
# what is at `out` before ("extract": a copy of an earlier extract, "file": an earlier output file,
# "faces": a copy of a face folder, None: nothing), the exit code, and what the one Error line says
# (None: the run succeeds, with no Error line).
X, C, TR, D, DT, I = "extract", "convert", "train", "detect", "detect train", "inspect"
CASES = [
    # --- extract ---
    (X, "missing", lambda w, tmp, out: ["extract", w["missing"], "-o", out], "extract", 1, "no such file or folder"),
    (X, "zero-byte", lambda w, tmp, out: ["extract", w["zero"], "-o", out], "extract", 1, "empty file (0 bytes)"),
    (X, "truncated", lambda w, tmp, out: ["extract", w["cut"], "-o", out], "extract", 1, "cut.mp4"),
    (X, "not-a-video", lambda w, tmp, out: ["extract", w["text"], "-o", out], "extract", 1, "not a video ffmpeg can read"),
    (X, "no-face", lambda w, tmp, out: ["extract", w["noface_png"], "-o", out], None, 1, "no faces found"),
    (X, "dir-named-mp4", lambda w, tmp, out: ["extract", w["dir_mp4"], "-o", out], "extract", 1, "folder has no images"),
    (X, "unreadable-image", lambda w, tmp, out: ["extract", w["root"] / "unreadable", "-o", out], None, 1, "not a readable image"),
    (X, "output-is-a-file", lambda w, tmp, out: ["extract", w["one"], "-o", out], "file", 1, "cannot write to output folder"),
    (X, "start-past-end", lambda w, tmp, out: ["extract", w["clip"], "-o", out, "--start", 500], None, 1, "--start 500 is past its end (24 frames)"),
    (X, "batch-size-huge", lambda w, tmp, out: ["extract", w["one"], "-o", out, "--batch-size", 100000], None, 2, "--batch-size"),
    (X, "batch-size-zero", lambda w, tmp, out: ["extract", w["one"], "-o", out, "--batch-size", 0], None, 2, "--batch-size"),
    (X, "size-tiny", lambda w, tmp, out: ["extract", w["one"], "-o", out, "--size", 8], None, 2, "--size"),
    (X, "batch-larger-than-video", lambda w, tmp, out: ["extract", w["one"], "-o", out, "--batch-size", 1024], None, 0, None),
    (X, "odd-size", lambda w, tmp, out: ["extract", w["odd_jpg"], "-o", out], None, 0, None),
    (X, "unicode-spaced", lambda w, tmp, out: ["extract", w["unicode"], "-o", tmp / "faces ä 名"], None, 0, None),
    (X, "rotated", lambda w, tmp, out: ["extract", w["rotated"], "-o", out], None, 0, None),
    (X, "vfr-no-face", lambda w, tmp, out: ["extract", w["vfr"], "-o", out], None, 1, "no faces found"),
    # --- train ---
    (TR, "missing", lambda w, tmp, out: ["train", "--a", w["missing"], "--b", w["faces_b"], "-m", out], None, 1, "missing.mp4"),
    (TR, "file-for-folder", lambda w, tmp, out: ["train", "--a", w["zero"], "--b", w["faces_b"], "-m", out], None, 1, "zero.mp4"),
    (TR, "no-faces", lambda w, tmp, out: ["train", "--a", w["dir_mp4"], "--b", w["faces_b"], "-m", out], None, 1, "holds no face images"),
    (TR, "unreadable-image", lambda w, tmp, out: ["train", "--a", w["root"] / "unreadable", "--b", w["faces_b"], "-m", out], None, 1,
     "not a readable image"),
    (TR, "negative-lr", lambda w, tmp, out: ["train", "--a", w["faces_a"], "--b", w["faces_b"], "-m", out, "--lr", -1], None, 1, "--lr"),
    (TR, "model-dir-is-a-file", lambda w, tmp, out: ["train", "--a", w["faces_a"], "--b", w["faces_b"], "-m", out], "file", 1, "not a folder"),
    # --- convert ---
    (C, "missing", lambda w, tmp, out: ["convert", w["missing"], "-m", w["model"], "-o", out, "--overwrite"], "file", 1, "no such file"),
    (C, "zero-byte", lambda w, tmp, out: ["convert", w["zero"], "-m", w["model"], "-o", out, "--overwrite"], "file", 1, "empty file (0 bytes)"),
    (C, "truncated", lambda w, tmp, out: ["convert", w["cut"], "-m", w["model"], "-o", out, "--overwrite"], "file", 1, "cut.mp4"),
    (C, "not-a-video", lambda w, tmp, out: ["convert", w["text"], "-m", w["model"], "-o", out, "--overwrite"], "file", 1, "not a video"),
    (C, "dir-named-mp4", lambda w, tmp, out: ["convert", w["dir_mp4"], "-m", w["model"], "-o", tmp / "frames"], None, 1, "folder has no images"),
    (C, "unreadable-image", lambda w, tmp, out: ["convert", w["root"] / "unreadable", "-m", w["model"], "-o", tmp / "frames"], None, 1,
     "not a readable image"),
    (C, "model-missing", lambda w, tmp, out: ["convert", w["one"], "-m", w["missing"], "-o", out, "--overwrite"], "file", 1, "missing.mp4"),
    (C, "model-is-a-file", lambda w, tmp, out: ["convert", w["one"], "-m", w["zero"], "-o", out, "--overwrite"], "file", 1, "zero.mp4"),
    (C, "start-past-end", lambda w, tmp, out: ["convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite", "--start", 99], "file", 1,
     "past the end"),
    (C, "batch-size-huge", lambda w, tmp, out: ["convert", w["one"], "-m", w["model"], "-o", out, "--overwrite", "--batch-size", 10**6], "file", 2,
     "--batch-size"),
    (C, "alignments-is-a-folder", lambda w, tmp, out: ["convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
                                                       "--alignments", w["dir_mp4"]], "file", 1, "not a valid alignments file"),
    (C, "alignments-frames-not-an-object", lambda w, tmp, out: [
        "convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
        "--alignments", bad_alignments(w, tmp, lambda e: {**e, "frames": [1, 2]})], "file", 1, "'frames' is missing or not an object"),
    (C, "alignments-face-without-landmarks", lambda w, tmp, out: [
        "convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
        "--alignments", bad_alignments(w, tmp, lambda e: _frame0(e, [{"box": [1, 2, 3, 4]}]))], "file", 1, "frame 0, face 0 has no 'landmarks'"),
    (C, "alignments-landmarks-wrong-shape", lambda w, tmp, out: [
        "convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
        "--alignments", bad_alignments(w, tmp, lambda e: _frame0(e, [{"landmarks": [[1, 2], [3, "x"]]}]))], "file", 1,
     "not 5 finite (x, y) points"),
    (C, "alignments-faces-not-a-list", lambda w, tmp, out: [
        "convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
        "--alignments", bad_alignments(w, tmp, lambda e: _frame0(e, 7))], "file", 1, "frame 0: expected a list of faces"),
    (C, "alignments-entry-not-an-object", lambda w, tmp, out: [
        "convert", w["clip"], "-m", w["model"], "-o", out, "--overwrite",
        "--alignments", bad_alignments(w, tmp, lambda e: "oops")], "file", 1, "is not an object"),
    (C, "no-face-folder", lambda w, tmp, out: ["convert", w["root"] / "noface", "-m", w["model"], "-o", tmp / "frames"], None, 0, None),
    (C, "odd-size-folder", lambda w, tmp, out: ["convert", w["root"] / "odd", "-m", w["model"], "-o", tmp / "frames"], None, 0, None),
    (C, "unicode-spaced", lambda w, tmp, out: ["convert", w["unicode"], "-m", w["model"], "-o", tmp / "swap ä 名.mp4"], None, 0, None),
    (C, "rotated", lambda w, tmp, out: ["convert", w["rotated"], "-m", w["model"], "-o", out], None, 0, None),
    (C, "vfr", lambda w, tmp, out: ["convert", w["vfr"], "-m", w["model"], "-o", out, "--x264-preset", "ultrafast"], None, 0, None),
    # --- detect (score) ---
    (D, "missing", lambda w, tmp, out: ["detect", w["missing"], "-d", w["detector"]], None, 2, "no such file"),
    (D, "zero-byte", lambda w, tmp, out: ["detect", w["zero"], "-d", w["detector"]], None, 2, "empty file (0 bytes)"),
    (D, "truncated", lambda w, tmp, out: ["detect", w["cut"], "-d", w["detector"]], None, 2, "cut.mp4"),
    (D, "not-a-video", lambda w, tmp, out: ["detect", w["text"], "-d", w["detector"]], None, 2, "not a video"),
    (D, "dir-named-mp4", lambda w, tmp, out: ["detect", w["dir_mp4"], "-d", w["detector"]], None, 2, "folder has no images"),
    (D, "no-face", lambda w, tmp, out: ["detect", w["noface_png"], "-d", w["detector"]], None, 2, "no faces found"),
    (D, "detector-missing", lambda w, tmp, out: ["detect", w["faces_a"], "-d", w["missing"]], None, 2, "missing.mp4"),
    (D, "batch-size-huge", lambda w, tmp, out: ["detect", w["faces_a"], "-d", w["detector"], "--batch-size", 10**6], None, 2, "--batch-size"),
    # --- detect train ---
    (DT, "missing", lambda w, tmp, out: ["detect", "train", "--real", w["missing"], "-o", out, "--quiet"], None, 2, "no such file"),
    (DT, "zero-byte", lambda w, tmp, out: ["detect", "train", "--real", w["zero"], "-o", out, "--quiet"], None, 2, "empty file"),
    (DT, "not-a-video", lambda w, tmp, out: ["detect", "train", "--real", w["text"], "-o", out, "--quiet"], None, 2, "not a video"),
    (DT, "no-face", lambda w, tmp, out: ["detect", "train", "--real", w["root"] / "noface", "-o", out, "--quiet"], None, 2, "no faces"),
    (DT, "output-is-a-file", lambda w, tmp, out: ["detect", "train", "--real", w["faces_a"], "-o", out, "--quiet"], "file", 2, "not a folder"),
    # --- inspect ---
    (I, "missing", lambda w, tmp, out: ["inspect", w["missing"]], None, 2, "no such file"),
    (I, "zero-byte", lambda w, tmp, out: ["inspect", w["zero"]], None, 2, "empty file (0 bytes)"),
    (I, "truncated", lambda w, tmp, out: ["inspect", "--no-watermark", w["cut"]], None, 2, "cut.mp4"),
    (I, "not-a-video", lambda w, tmp, out: ["inspect", w["text"]], None, 2, "not a video"),
    (I, "not-a-video-no-watermark", lambda w, tmp, out: ["inspect", "--no-watermark", w["text"]], None, 2, "not a video"),
    (I, "unreadable-image", lambda w, tmp, out: ["inspect", w["root"] / "unreadable" / "broken.png"], None, 2, "not an image"),
    (I, "dir-named-mp4", lambda w, tmp, out: ["inspect", w["dir_mp4"]], None, 2, "is a folder"),
]


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("Error:")]


@pytest.mark.parametrize("command, case, args, before, code, needle", CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_bad_input_table(w, tmp_path, command, case, args, before, code, needle):
    out = tmp_path / ("out.mp4" if command == C else "out")
    if before == "extract":
        shutil.copytree(w["extracted"], out)
    elif before == "file":
        out.write_bytes(b"earlier result")
    old = snapshot(out)
    argv = args(w, tmp_path, out)
    got, stdout, stderr = run(*argv, *(["--quiet"] if command in (X, C, D) else []))
    assert "Traceback" not in stderr + stdout, stderr
    assert got == code, (stdout, stderr)
    errors = _error_lines(stderr)
    if needle is None:
        assert errors == [], stderr
    else:
        assert len(errors) == 1 and needle in errors[0], stderr
        if "Usage:" not in stderr:  # click's own usage errors come with the usage lines
            assert all(ln.startswith(("Error:", "Warning:")) for ln in stderr.splitlines() if ln.strip()), stderr
        # Nothing that was there changed; a failed run leaves nothing new in the scratch folder.
        assert snapshot(out) == old
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != "edited.json") == ([out.name] if old is not None else [])
    assert not list(tmp_path.rglob(f"*{LOCK_NAME}")) and not list(tmp_path.rglob(".*.faceswap.lock"))


# --- locks --------------------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from faceswap.lock import OutputLock
    lock = OutputLock(sys.argv[1], "extract", folder=sys.argv[2] == "dir").acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold_in_another_process(target: Path, folder: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), "dir" if folder else "file"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_extract_is_refused_and_a_killed_holder_leaves_no_block(w, tmp_path):
    out = tmp_path / "faces"
    shutil.copytree(w["extracted"], out)
    before = snapshot(out)
    holder = _hold_in_another_process(out)
    try:
        code, _, stderr = run("extract", w["clip"], "-o", out, "--overwrite", "--quiet")
        assert code == 1 and "Traceback" not in stderr
        (line,) = stderr.strip().splitlines()
        assert line.startswith(f"Error: {out} is in use by another faceswap job: pid {holder.pid} ") and ", since 20" in line
        assert snapshot(out) == {**before, LOCK_NAME: (out / LOCK_NAME).read_bytes()}  # the first job's output untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 left its lock file (naming a dead pid) but no lock: the next job takes it over.
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    code, stdout, stderr = run("extract", w["one"], "-o", out, "--quiet")
    assert code == 0, stderr
    assert "1 faces written" in stdout and not (out / LOCK_NAME).exists()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(w, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    out = tmp_path / "swap.mp4"
    lock_file_for(out, folder=False).write_text(json.dumps({"pid": pid, "host": os.uname().nodename, "command": "faceswap convert",
                                                            "since": "2026-01-01 00:00:00"}))
    lock = OutputLock(out, "convert", folder=False).acquire()
    try:
        assert lock.took_over is not None and lock.took_over.pid == pid
    finally:
        lock.release()
    assert list(tmp_path.iterdir()) == []


def test_second_train_and_convert_and_detect_train_are_refused(w, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(w["model"], model)
    cases = [
        (model, True, ["train", "--a", w["faces_a"], "--b", w["faces_b"], "-m", model, "--overwrite", "--iterations", 1], 1),
        (tmp_path / "swap.mp4", False, ["convert", w["one"], "-m", w["model"], "-o", tmp_path / "swap.mp4", "--overwrite"], 1),
        (tmp_path / "det", True, ["detect", "train", "--real", w["faces_a"], "-o", tmp_path / "det", "--quiet"], 2),
    ]
    (tmp_path / "swap.mp4").write_bytes(b"earlier result")
    for target, folder, args, code in cases:
        before = snapshot(target)
        with OutputLock(target, "test", folder=folder):  # this process is the first job
            got, _, stderr = run(*args)
            assert got == code and "Traceback" not in stderr, stderr
            (line,) = stderr.strip().splitlines()
            assert f"is in use by another faceswap job: pid {os.getpid()}" in line, line
            after = snapshot(target)
            assert (after if not folder else {k: v for k, v in after.items() if k != LOCK_NAME}) == (before or {} if folder else before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "swap.mp4"]  # no lock files, no "det"
    assert (tmp_path / "swap.mp4").read_bytes() == b"earlier result"


# --- full disks ---------------------------------------------------------------------------------------


def test_extract_on_a_full_disk_is_one_clear_error_and_the_rerun_resumes(w, tmp_path, monkeypatch):
    import faceswap.extract as extract_module
    from faceswap.faces.store import Alignments

    real, written = extract_module.write_face_png, []

    def fill_up(path, *args, **kwargs):
        if len(written) == 5:
            raise ENOSPC
        written.append(path)
        return real(path, *args, **kwargs)

    out = tmp_path / "faces"
    monkeypatch.setattr(extract_module, "write_face_png", fill_up)
    monkeypatch.setattr(Alignments, "save", lambda self: (_ for _ in ()).throw(ENOSPC))  # no checkpoint either
    code, _, stderr = run("extract", w["clip"], "-o", out, "--size", 64, "--batch-size", 4, "--quiet")
    assert code == 1 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"Error: no space left on device writing {out}/photo_0000") and "Errno" not in line
    assert len(list(out.glob("*.png"))) == 5 and not (out / "alignments.json").exists()
    monkeypatch.undo()
    # The rerun recognises the faces its own failed run wrote (no "did not write" refusal).
    code, stdout, stderr = run("extract", w["clip"], "-o", out, "--size", 64, "--quiet")
    assert code == 0, stderr
    assert "24 faces written" in stdout and len(list(out.glob("*.png"))) == 24


def test_convert_on_a_full_disk_fails_and_keeps_the_earlier_output(w, tmp_path, monkeypatch):
    import faceswap.convert.swap as swap_module

    out = tmp_path / "swap.mp4"
    out.write_bytes(b"earlier result")
    # Room for the video but not for its signed copy: c2pa's own failure said only "UntrackedPointer".
    monkeypatch.setattr(swap_module, "finish_output", lambda path, mid, credentials=True: [
        f"{Path(path).name}: Content Credentials not attached (UntrackedPointer); the file keeps its metadata label and watermark"])
    monkeypatch.setattr(swap_module.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, out.stat().st_size + 1000))
    code, _, stderr = run("convert", w["one"], "-m", w["model"], "-o", out, "--overwrite", "--quiet")
    assert code == 1 and "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"Error: no space left on device writing {out}") and "UntrackedPointer" not in line
    assert out.read_bytes() == b"earlier result" and list(tmp_path.iterdir()) == [out]
    # Image folders: a failed write leaves none of the run's images, nor the folder it made.
    monkeypatch.undo()
    monkeypatch.setattr(swap_module, "atomic_write_bytes", lambda *a, **k: (_ for _ in ()).throw(ENOSPC))
    code, _, stderr = run("convert", w["root"] / "odd", "-m", w["model"], "-o", tmp_path / "frames", "--quiet")
    assert code == 1 and stderr.strip() == f"Error: no space left on device writing {tmp_path / 'frames' / 'hopper.png'}; free some space and run the same command again"
    assert list(tmp_path.iterdir()) == [out]

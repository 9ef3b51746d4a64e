"""Exclusive locks on what a job writes: an extract's output folder, a model dir, a convert output,
a detector dir. Two jobs on one output would corrupt each other (two extracts into one folder each
rewrite `alignments.json` with only their own source; two trainings of one model dir overwrite each
other's checkpoints), so the second one is refused before it touches anything.

The lock is an `fcntl.flock` on a small hidden file: `<folder>/.faceswap.lock` for a folder,
`<parent>/.<name>.faceswap.lock` beside an output file. The kernel drops a flock when its holder
exits however it exits (kill -9 too), so a lock file left behind by a dead job never blocks: the
next job finds it unlocked and takes it over. The file holds JSON (pid, host, command, since) so a
refused job can say who holds the output.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from faceswap.errors import FaceswapError

LOCK_NAME = ".faceswap.lock"


def lock_file_for(target: str | os.PathLike, folder: bool) -> Path:
    """Where the lock of `target` lives (inside a folder; beside a file)."""
    target = Path(target)
    return target / LOCK_NAME if folder else target.with_name(f".{target.name}.faceswap.lock")


@dataclass
class Holder:
    """Who holds (or last held) a lock, as written in its lock file."""

    pid: int | None = None
    host: str | None = None
    command: str | None = None
    since: str | None = None

    @classmethod
    def read(cls, fd: int) -> "Holder":
        try:
            raw = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return cls(int(raw["pid"]), str(raw.get("host")), str(raw.get("command")), str(raw.get("since")))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def alive(self) -> bool | None:
        """Whether the holder's process runs (None: unknown, e.g. on another host)."""
        if self.pid is None or self.host != socket.gethostname():
            return None
        return pid_alive(self.pid)

    def describe(self) -> str:
        if self.pid is None:
            return "another process (its lock file names no holder)"
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        text = f"pid {self.pid}{where}"
        if self.command:
            text += f" ({self.command})"
        if self.since:
            text += f", since {self.since}"
        if self.alive() is False:
            text += "; that pid has exited, a process it started still holds the lock"
        return text


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (another user's live process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True


def _command(stage: str) -> str:
    """The command line when this is the faceswap CLI, else the stage (an API caller, a test)."""
    argv = sys.argv or [""]
    if Path(argv[0]).name == "faceswap" or Path(argv[0]).parts[-2:] == ("faceswap", "__main__.py"):
        text = " ".join(["faceswap", *argv[1:]])
    else:
        text = f"faceswap {stage}"
    return text if len(text) <= 200 else text[:197] + "..."


class OutputLock:
    """An exclusive lock on one output (a folder or a file), held by this process until `release`.

    folder=True: `target` is a folder, created (with missing parents) if need be; the folders this
    lock created are removed again on release when they are still empty, so a job that fails
    before writing leaves nothing behind (and nothing that existed before is ever removed).
    folder=False: `target` is a file; its folder must exist.

    Use as a context manager, or `acquire()` / `release()`.
    """

    def __init__(self, target: str | os.PathLike, stage: str, folder: bool = True):
        self.target, self.stage, self.folder = Path(target), stage, folder
        self.path = lock_file_for(self.target, folder)
        self.fd: int | None = None
        self.created: list[Path] = []  # folders this lock made, outermost first
        self.took_over: Holder | None = None  # the stale holder whose lock file this one reused

    def _make_folder(self) -> None:
        missing = []
        p = self.target
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        if p.exists() and not p.is_dir():
            raise FaceswapError(f"cannot write to output folder {self.target}: {p} is not a folder")
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue  # made by a concurrent job in between: not ours to remove
            except OSError as exc:
                self._remove_created()
                raise FaceswapError(f"cannot write to output folder {self.target}: {exc.strerror or exc}") from exc
            self.created.append(d)

    def acquire(self) -> "OutputLock":
        if self.fd is not None:
            return self
        if self.folder:
            self._make_folder()
        elif not self.path.parent.is_dir():
            raise FaceswapError(f"cannot write {self.target}: folder {self.path.parent} does not exist")
        try:
            for _ in range(20):  # a holder that releases unlinks its file: retry on the fresh one
                fd = self._open()
                if not self._lock(fd):
                    holder = Holder.read(fd)
                    os.close(fd)
                    raise FaceswapError(f"{self.target} is in use by another faceswap job: {holder.describe()}; "
                                        f"wait for it to finish or choose another output")
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
                previous = Holder.read(fd)
                if previous.pid is not None:
                    self.took_over = previous  # a dead job's lock file: the flock was free
                self._write_holder(fd)
                self.fd = fd
                return self
            raise FaceswapError(f"could not lock {self.target}: its lock file {self.path} keeps changing")
        except BaseException:
            self._remove_created()
            raise

    def _open(self) -> int:
        try:
            # O_CLOEXEC (Python's default, said for clarity): ffmpeg and other children must not
            # inherit the lock and keep it after this process dies.
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise FaceswapError(f"cannot write to {self.path.parent}: {exc.strerror or exc}") from exc

    def _lock(self, fd: int) -> bool:
        """True when this process now holds the lock, False when another one does."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            # A filesystem without flock: fall back to the pid the file names.
            return Holder.read(fd).alive() is not True

    def _write_holder(self, fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(self.stage),
                "since": dt.datetime.now().isoformat(sep=" ", timespec="seconds")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # a full disk: the flock still holds, the refusal just cannot say who

    def _remove_created(self) -> None:
        for d in reversed(self.created):
            try:
                d.rmdir()  # only when empty: whatever a job wrote stays
            except OSError:
                break
        self.created = []

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlink while still holding it (a waiting job then retries on a fresh file), then unlock.
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        self._remove_created()

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


__all__ = ["LOCK_NAME", "Holder", "OutputLock", "lock_file_for", "pid_alive"]

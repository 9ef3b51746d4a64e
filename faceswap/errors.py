"""The one exception type users see: the CLI prints it as a single `Error: ...` line."""

from __future__ import annotations

import errno
import os


class FaceswapError(Exception):
    """A failure caused by the user's input or environment (bad file, missing model, ...).

    Its message must make sense on its own, on one line, without a traceback.
    """


class NoSpaceError(FaceswapError):
    """The output's filesystem is full (ENOSPC / EDQUOT): fatal for the whole run, not one input."""


def write_failure(path: str | os.PathLike, exc: OSError) -> FaceswapError:
    """The one-line error for a failed write of `path` (a full disk says so, not `[Errno 28]`)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left on device"
        return NoSpaceError(f"{what} writing {path}; free some space and run the same command again")
    return FaceswapError(f"cannot write {path}: {exc.strerror or exc}")

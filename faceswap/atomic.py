"""Atomic file writes: every file a kill could break is written to a temp name and renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, private: bool = False, sync: bool = True) -> None:
    """Write `data` to `path` via a temp file in the same folder, fsync and rename: a kill (or
    power loss) leaves either the old file or the new one, never a torn one.

    private: create the file readable by its owner only (keys).
    sync: False skips the fsync (a kill still leaves no torn file; power loss may): for callers
        that write many files and `os.sync()` once before recording them (extract's faces).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

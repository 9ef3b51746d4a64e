"""Shared fixtures: small generated clips (no real faces needed) and the real shared clips."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
REAL_CLIPS = {name: SHARED_FACES / f for name, f in
              {"A": "A_lp_d3.mp4", "B": "B_lp_d6.mp4", "C": "C_lp_d9.mp4", "D": "D_lp_d13.mp4"}.items()}


@pytest.fixture(autouse=True, scope="session")
def _private_config_dir(tmp_path_factory):
    """C2PA certificates go to a temporary config dir, never the user's; no user chain leaks in."""
    os.environ["FACESWAP_CONFIG_DIR"] = str(tmp_path_factory.mktemp("faceswap-config"))
    os.environ.pop("FACESWAP_C2PA_CERT", None)
    os.environ.pop("FACESWAP_C2PA_KEY", None)


def photo_face() -> np.ndarray:
    """A real photo that ships inside a wheel (matplotlib's Grace Hopper), RGB uint8 (600, 512, 3)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def moving_photo_frames(n: int, size: tuple[int, int] = (240, 320), seed: int = 0) -> np.ndarray:
    """`(n, H, W, 3)` frames of the photo drifting and zooming slightly over a plain background."""
    h, w = size
    photo = photo_face()
    rng = np.random.default_rng(seed)
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        s = 0.42 + 0.03 * np.sin(i / 5)
        dx, dy = 40 + 8 * np.sin(i / 7) + rng.normal(0, 0.3), 5 + 4 * np.cos(i / 9)
        m = np.float32([[s, 0, dx], [0, s, dy]])
        frames[i] = cv2.warpAffine(photo, m, (w, h), borderValue=(90, 110, 130))
    return frames


@pytest.fixture(scope="session")
def photo_clip(tmp_path_factory) -> Path:
    """A 24-frame 320x240 H.264 clip at 24 fps, with a tone audio track, showing a real face."""
    from faceswap.video import VideoWriter, ffmpeg_exe
    import subprocess

    d = tmp_path_factory.mktemp("clips")
    tone = d / "tone.m4a"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(tone)], check=True)
    path = d / "photo.mp4"
    with VideoWriter(path, 320, 240, 24.0, crf=18, audio_from=tone) as writer:
        writer.write(moving_photo_frames(24))
    return path


def requires_real_clips():
    return pytest.mark.skipif(not all(p.exists() for p in REAL_CLIPS.values()),
                              reason=f"real clips not found in {SHARED_FACES}")

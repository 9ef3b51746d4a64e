"""Regenerate the bundled sample clips: two synthetic identities, rendered by our own code.

    python samples/make_samples.py            # writes samples/identity_a.mp4, samples/identity_b.mp4

Deterministic (fixed seeds): the same code gives the same frames. Each clip has head motion (turn,
tilt, scale, drift), blinks and mouth movement, and a quiet tone as audio so the audio path is
exercised. Nobody's real face ships with the project.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (320, 320)  # (H, W)
FPS = 25.0
SECONDS = 12
CLIPS = {"identity_a.mp4": ("IDENTITY_A", 1, 440.0), "identity_b.mp4": ("IDENTITY_B", 2, 330.0)}


def make(path: Path, identity_name: str, seed: int, tone_hz: float, frames: int, crf: int = 26) -> None:
    from faceswap import synthetic
    from faceswap.video import VideoWriter, ffmpeg_exe

    identity = getattr(synthetic, identity_name)
    with tempfile.TemporaryDirectory() as tmp:
        tone = Path(tmp) / "tone.m4a"
        subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:duration={frames / FPS}",
                        "-af", "volume=0.05", "-c:a", "aac", "-b:a", "32k", str(tone)], check=True)
        with VideoWriter(path, SIZE[1], SIZE[0], FPS, crf=crf, preset="slow", audio_from=tone,
                         metadata={"comment": "synthetic sample rendered by faceswap/synthetic.py; no real person"}) as writer:
            for frame, _ in synthetic.render_clip(identity, frames, SIZE, seed=seed, fps=FPS):
                writer.write(frame)


def main(out_dir: Path = HERE, seconds: float = SECONDS) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (identity, seed, tone) in CLIPS.items():
        make(out_dir / name, identity, seed, tone, int(seconds * FPS))
        print(f"wrote {out_dir / name} ({(out_dir / name).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)

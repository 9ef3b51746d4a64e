"""How much of the head an aligned crop shows: the `--coverage` choices (see `faces.align`).

Kept apart from `faces.align` (which imports torch and kornia, ~3 s) so that the CLI can list the
choices, and `faceswap --help` answer, without loading them.
"""

from __future__ import annotations

# name -> (span, centre_y): a square crop `span` face units wide, centred `centre_y` below the eyes.
COVERAGES: dict[str, tuple[float, float]] = {
    "tight": (3.0, 0.75),
    "face": (4.0, 0.50),
    "head": (5.5, 0.35),
}
DEFAULT_COVERAGE = "face"

"""Stage 3, convert: swap the faces of a video or image folder and paste them back (see `swap`)."""

from faceswap.convert.swap import ConvertConfig, ConvertSummary, run_convert

__all__ = ["ConvertConfig", "ConvertSummary", "run_convert"]

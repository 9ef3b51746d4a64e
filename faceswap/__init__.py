"""faceswap: make face swaps in video, label them as synthetic, and detect them."""

__version__ = "0.1.0"

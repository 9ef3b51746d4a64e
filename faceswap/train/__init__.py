"""Training: `TrainConfig` + `train()` (loop.py), face caches (data.py), augmentation, losses."""

from faceswap.train.loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]

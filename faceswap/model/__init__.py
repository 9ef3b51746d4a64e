"""The face autoencoder: presets, `SwapModel`, and the model dir format (`load_model`, `model_id`)."""

from faceswap.model.autoencoder import PRESETS, SwapModel, build_model, load_model, model_id

__all__ = ["PRESETS", "SwapModel", "build_model", "load_model", "model_id"]

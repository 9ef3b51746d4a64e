"""Swap detection (issue #6): signals, fusion, calibration, metrics and the `faceswap detect` runs.

    consistency.py  S1: self-consistency under a swap model (made by this model?)
    oneclass.py     S2: one-class autoencoder of real faces' high-pass residual (unlike real faces?)
    spectral.py     S3: power spectrum against real faces', and the inner face's against its own crop's ring
    blend.py        S4: a small CNN trained on pastes made from real faces alone (pasted?)
    selfblend.py    those pastes: self-blends (SBI) and cross-blends of aligned real crops
    regions.py      the inner face convert pastes over and the outer ring it never touches
    fusion.py       z-scores -> source-balanced logistic regression (or an unsupervised rule) -> threshold
    holdout.py      the threshold from real sources held out of the fusion's fit, one at a time
    detector.py     Detector: the signals + fusion, saved as one safetensors file
    faces.py        faces from videos, images and face folders, aligned like extract
    fakes.py        known swaps made by the swap model itself (for the fusion)
    run.py          `faceswap detect INPUT...`
    train.py        `faceswap detect train`
    evaluate.py     `faceswap detect eval`
    metrics.py      ROC, AUC, EER, TPR@FPR and plots
"""

from faceswap.detect.detector import Detector
from faceswap.detect.evaluate import EvalConfig, EvalReport, run_eval
from faceswap.detect.faces import FaceBatch, FaceSourceConfig, iter_faces
from faceswap.detect.fusion import Fusion
from faceswap.detect.run import DetectConfig, DetectReport, print_report, run_detect
from faceswap.detect.train import DetectTrainConfig, DetectTrainSummary, run_detect_train

__all__ = ["DetectConfig", "DetectReport", "DetectTrainConfig", "DetectTrainSummary", "Detector", "EvalConfig", "EvalReport",
           "FaceBatch", "FaceSourceConfig", "Fusion", "iter_faces", "print_report", "run_detect", "run_detect_train", "run_eval"]

"""Detection metrics: ROC curve, ROC-AUC, EER, TPR at a fixed FPR, and their plots.

Convention: a higher score means "more likely fake"; label 1 = fake, 0 = real; a threshold t flags
every score >= t. Tied scores move through the ROC together (one point per distinct score), so
the trapezoid area equals the Mann-Whitney statistic with ties counted one half.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from faceswap.atomic import atomic_write_bytes
from faceswap.errors import FaceswapError


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if len(s) != len(y):
        raise FaceswapError(f"{len(s)} scores but {len(y)} labels")
    if y.all() or not y.any():
        raise FaceswapError("a ROC curve needs both real and fake examples")
    return s, y


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(N,)` scores and 0/1 labels -> fpr, tpr, thresholds, each `(K + 1,)`.

    Point 0 is (0, 0) at threshold +inf; point i > 0 flags the scores >= thresholds[i] (the
    distinct scores, descending), ending at (1, 1).
    """
    s, y = _arrays(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each run of equal scores
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    return np.r_[0.0, fp / (~y).sum()], np.r_[0.0, tp / y.sum()], np.r_[np.inf, s[last]]


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (trapezoids; = P(fake score > real score) + P(tie) / 2)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(np.trapezoid(tpr, fpr))


def eer(scores, labels) -> float:
    """Equal error rate: where the ROC (linearly interpolated) has FPR = 1 - TPR."""
    fpr, tpr, _ = roc_curve(scores, labels)
    d = fpr - (1.0 - tpr)  # rises from -1 to 1 along the curve
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(scores, labels, target: float = 0.01) -> float:
    """Best TPR of a threshold whose FPR is <= `target` (an attainable operating point, no interpolation)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(tpr[fpr <= target + 1e-12].max())


def summary(scores, labels, target: float = 0.01) -> dict:
    """ROC-AUC, EER and TPR@`target` FPR with the class counts, JSON-ready."""
    _, y = _arrays(scores, labels)
    return {"n_real": int((~y).sum()), "n_fake": int(y.sum()), "roc_auc": roc_auc(scores, labels), "eer": eer(scores, labels),
            f"tpr_at_{target:g}_fpr": tpr_at_fpr(scores, labels, target)}


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_roc(path: str | Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], mark_fpr: float = 0.01) -> None:
    """ROC curves {label: (fpr, tpr)} as a PNG, linear axes plus a log-FPR panel for the low-FPR end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, log in zip(axes, (False, True)):
        for label, (fpr, tpr) in curves.items():
            ax.plot(np.maximum(fpr, 1e-4) if log else fpr, tpr, label=label, drawstyle="default")
        ax.axvline(mark_fpr, color="grey", ls=":", lw=1)
        ax.set_xlabel("false-positive rate (real flagged)" + (" [log]" if log else ""))
        ax.set_ylabel("true-positive rate (swaps flagged)")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-4, 1)
        else:
            ax.plot([0, 1], [0, 1], color="lightgrey", lw=1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    _save_figure(fig, Path(path))


def plot_histograms(path: str | Path, real: np.ndarray, fake: np.ndarray, threshold: float | None = None,
                    xlabel: str = "logit", title: str = "") -> None:
    """Score histograms of real and fake examples (densities) as a PNG, with the threshold line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    real, fake = np.asarray(real, float), np.asarray(fake, float)
    both = np.concatenate([real, fake])
    bins = np.linspace(both.min(), both.max() + 1e-9, 50)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(real, bins, density=True, alpha=0.55, label=f"real ({len(real)})")
    ax.hist(fake, bins, density=True, alpha=0.55, label=f"fake ({len(fake)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    _save_figure(fig, Path(path))

"""Fusion of the detector's signals into one logit, and its calibration to a false-positive rate.

1. Every signal is z-scored with the mean and std of real faces (the fit set).
2. logit = weight . z + bias. With examples of fakes, weight and bias come from an L2-regularised,
   class-balanced logistic regression (torch LBFGS), source-balanced when the real faces' sources
   (clips, people) are known: the loss adds `balance` x the variance, over sources, of each
   source's mean real logit, so the weights that separate real from fake are also the ones that
   leave the real sources level. Measured by `bench/detect.py` on the shared clips' test split
   (S2 + S3 signals, fusion fitted on the four clips' [50 %, 60 %) reals): real-vs-real ROC-AUC
   of the six clip pairs AvB AvC AvD BvC BvD CvD 0.41 0.92 0.48 0.97 0.68 0.02 without,
   0.50 0.57 0.41 0.64 0.48 0.24 with it, detection AUCs 1.000 either way (the earlier detector,
   S1 + s2_oneclass + s3_spec/hf unbalanced: 0.01 0.34 0.03 0.99 0.75 0.05). It is fitted on the
   sources it sees; leaving one clip out of the fit, that clip's real faces against the other
   three's ranged 0.22-0.82. Nor does it make the score blind to sharpness: s3_spec / s3_hf keep
   a large weight, and real test faces softened as a whole crop (1 px blur, half resolution) were
   all flagged. Fusing only the self-referenced scores flagged ~11 % of those, but 3-4 % of the
   untouched real test faces crossed the 1 % threshold (one internal run): not the default.
   Without fakes (`supervised = False`) the
   documented unsupervised rule is used: logit = mean_k(ANOMALY_SIGN[k] * z_k), each z-score
   counted in the direction that means "less like real faces / more like this model's output";
   a signal with sign 0 is two-sided and counts |z_k| (the one-class error: measured on the real
   clips, our 64 px swaps pasted into 128 px crops have far LESS high-pass residual to get wrong
   than real faces, while other fakes may have more).
3. `calibrate` sets `threshold` to the (1 - fpr) quantile of the logits of *other* held-out real
   faces (never the test split), and keeps those logits so another FPR can be asked for later.
   A face is flagged when its logit > threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from faceswap.errors import FaceswapError

# S1 scores are reported beside the logit but not fused by default (see consistency.py): they tell
# the swap model's own identities from others by construction, and alone detect real swaps weakly.
REPORTED_ONLY = ("s1_err_a", "s1_err_b", "s1_gap_a", "s1_gap_b")
FIRED_SHARE = 0.25  # a signal "fired" for a face when its term is at least this share of the largest


def fused_names(signals) -> list[str]:
    """The signals the fusion uses by default: all but `REPORTED_ONLY`, in the given order."""
    return [n for n in signals if n not in REPORTED_ONLY]


# Direction in which each signal says "fake" (see the signal modules for the scores themselves).
ANOMALY_SIGN = {
    "s1_err_a": -1.0, "s1_err_b": -1.0,  # a decoder's own output reconstructs suspiciously well
    "s1_gap_a": -1.0, "s1_gap_b": -1.0,  # ... and sits near that decoder's fixed point
    "s2_oneclass": 0.0,  # high-pass residual unlike real faces, in either direction
    "s3_spec": 1.0,  # spectrum far from real faces'
    "s3_hf": -1.0,  # less high-frequency energy than real faces (upsampled decoder output)
    # Self-referenced: the pasted inner face has less fine detail than its own crop's outer ring.
    "s2_rel_err": -1.0, "s2_rel_res": -1.0, "s3_band0": -1.0, "s3_band1": -1.0, "s3_band2": -1.0,
    "s3_tile_hf": -1.0, "s3_tile_slope": -1.0,
    "s4_blend": 1.0, "s4_seam": 1.0,  # the blend net: a paste, and where its seam is
}


def _stack(signals: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    missing = [n for n in names if n not in signals]
    if missing:
        raise FaceswapError(f"signals {missing} are missing (the detector was fitted with {names})")
    return torch.stack([torch.as_tensor(signals[n], dtype=torch.float64).reshape(-1) for n in names], 1)


def _source_groups(sources, n: int) -> torch.Tensor | None:
    """Labels -> `(n,)` int64 group index, or None for fewer than two sources."""
    if sources is None:
        return None
    sources = list(sources)
    if len(sources) != n:
        raise FaceswapError(f"{len(sources)} source labels for {n} real faces")
    index = {s: i for i, s in enumerate(dict.fromkeys(sources))}
    return torch.tensor([index[s] for s in sources]) if len(index) > 1 else None


@dataclass
class Fusion:
    """z-score -> linear logit -> threshold. Vectors are lists (JSON-ready), in `names` order."""

    names: list[str]
    mean: list[float]
    std: list[float]
    weight: list[float]
    bias: float = 0.0
    supervised: bool = False
    threshold: float = math.inf
    fpr: float = 0.01
    calibration: list[float] = field(default_factory=list)  # sorted held-out real logits

    def z(self, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        """`{name: (B,)}` -> `(B, K)` z-scores."""
        x = _stack(signals, self.names)
        return (x - torch.tensor(self.mean, dtype=torch.float64)) / torch.tensor(self.std, dtype=torch.float64)

    def contributions(self, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        """`{name: (B,)}` -> `(B, K)` float64: each signal's term of the logit (they sum to logit - bias)."""
        z = self.z(signals)
        if not self.supervised:  # two-sided signals (weight from sign 0) count |z|
            two_sided = torch.tensor([ANOMALY_SIGN.get(n) == 0 for n in self.names])
            z = torch.where(two_sided, z.abs(), z)
        return z * torch.tensor(self.weight, dtype=torch.float64)

    def logit(self, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        """`{name: (B,)}` -> `(B,)` float64 logits (higher = more likely swapped)."""
        return self.contributions(signals).sum(1) + self.bias

    def fired(self, signals: dict[str, torch.Tensor], share: float = FIRED_SHARE) -> list[list[str]]:
        """Per face, the signals that pushed its logit up: a positive term of at least `share` of
        its largest one, largest first (`(B,)` lists of names)."""
        c = self.contributions(signals)
        top = c.max(1, keepdim=True).values
        out = []
        for row, t in zip(c.tolist(), top[:, 0].tolist()):
            keep = [(v, n) for v, n in zip(row, self.names) if v > 0 and v >= share * t]
            out.append([n for _, n in sorted(keep, reverse=True)])
        return out

    @classmethod
    def fit(cls, real_signals: dict[str, torch.Tensor], fake_signals: dict[str, torch.Tensor] | None = None,
            names: list[str] | None = None, l2: float = 1e-2, sources=None, balance: float = 1.0) -> "Fusion":
        """z-score statistics from `real_signals`; logistic regression against `fake_signals` when given,
        else the unsupervised rule (see module docs). `sources`: one label per real face (any
        hashables); with two or more distinct ones and `balance` > 0 the regression is source-balanced."""
        names = list(names or fused_names(real_signals))
        x = _stack(real_signals, names)
        if len(x) < 2:
            raise FaceswapError(f"fusion needs at least 2 real faces to fit, got {len(x)}")
        mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
        if not fake_signals:
            unknown = [n for n in names if n not in ANOMALY_SIGN]
            if unknown:
                raise FaceswapError(f"no direction known for signals {unknown}: give fakes to fit the fusion")
            w = [(ANOMALY_SIGN[n] or 1.0) / len(names) for n in names]
            return cls(names, mean.tolist(), std.tolist(), w, 0.0, supervised=False)
        xf = _stack(fake_signals, names)
        if len(xf) < 2:
            raise FaceswapError(f"fusion needs at least 2 fake faces to fit, got {len(xf)}")
        z = (torch.cat([x, xf]) - mean) / std
        y = torch.cat([torch.zeros(len(x)), torch.ones(len(xf))]).double()
        # Class-balanced: real and fake each weigh one half, whatever their counts.
        sample_w = torch.where(y > 0, 0.5 / len(xf), 0.5 / len(x)).double()
        groups = _source_groups(sources, len(x)) if balance > 0 else None
        params = torch.zeros(len(names) + 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([params], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            logits = z @ params[:-1] + params[-1]
            loss = (sample_w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
            loss = loss + 0.5 * l2 * params[:-1].square().sum()
            if groups is not None:  # each real source's mean logit, pulled to their common mean
                means = torch.zeros(groups.max() + 1, dtype=torch.float64).index_add(0, groups, logits[: len(x)])
                means = means / torch.bincount(groups).double()
                loss = loss + balance * (means - means.mean()).square().mean()
            loss.backward()
            return loss

        opt.step(closure)
        p = params.detach()
        return cls(names, mean.tolist(), std.tolist(), p[:-1].tolist(), float(p[-1]), supervised=True)

    def calibrate(self, real_signals: dict[str, torch.Tensor], fpr: float = 0.01) -> float:
        """Threshold = the (1 - fpr) quantile of held-out real faces' logits. Returns it."""
        if not 0 < fpr < 1:
            raise FaceswapError(f"false-positive rate {fpr} must be between 0 and 1")
        logits = self.logit(real_signals)
        if len(logits) < 2:
            raise FaceswapError(f"calibration needs at least 2 held-out real faces, got {len(logits)}")
        self.calibration = sorted(logits.tolist())
        self.fpr = fpr
        self.threshold = self.threshold_for(fpr)
        return self.threshold

    def threshold_for(self, fpr: float) -> float:
        """The threshold that flags at most a fraction `fpr` of the calibration faces: the
        ceil((1 - fpr) * n)-th smallest calibration logit (flagging is strict: logit > threshold)."""
        if not self.calibration:
            raise FaceswapError("the fusion is not calibrated")
        if not 0 < fpr < 1:
            raise FaceswapError(f"false-positive rate {fpr} must be between 0 and 1")
        n = len(self.calibration)
        k = min(n, max(1, math.ceil((1.0 - fpr) * n - 1e-9)))
        return float(self.calibration[k - 1])

    def to_json(self) -> dict:
        return {"names": self.names, "mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias,
                "supervised": self.supervised, "threshold": self.threshold, "fpr": self.fpr, "calibration": self.calibration}

    @classmethod
    def from_json(cls, d: dict) -> "Fusion":
        return cls(**{k: d[k] for k in ("names", "mean", "std", "weight", "bias", "supervised", "threshold", "fpr", "calibration")})

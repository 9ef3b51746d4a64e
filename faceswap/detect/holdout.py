"""Calibration that holds on people the detector never saw: leave one source out (issue #16).

A threshold set on held-out frames of the SAME people is optimistic: a new person or camera sits
elsewhere on the logit axis (measured before this: fitted on two people, 58.9 % of a third
person's real faces crossed the 1 % threshold). With three or more real sources (people, clips):

    for each source s:
        fold fusion  = Fusion.fit on the fit split of every source but s (their reals and fakes)
        fold scale   = median and std of the fold fusion's logits on the others' calibration faces
        held-out     = s's calibration faces through the fold fusion, expressed in that scale,
                       then mapped onto the final fusion's scale (its calibration logits' median, std)
        fold FPR     = share of s's calibration faces above the fold's own in-sample threshold

Which signals the fusion uses is decided the same way (`choose_signals`): each candidate set in
SIGNAL_SETS goes through the folds above, and the one whose fold thresholds best separated the
held-out source's real faces from its fakes (mean over folds of TPR - FPR, each measured on the
held-out source at the threshold the others set) is kept. Absolute scores of what real faces
look like (S2's one-class error, S3's spectrum) tell people and cameras apart as much as swaps;
this is where a new person shows it.

The final fusion's calibration logits are then those mapped held-out logits, each source weighing
the same (repeated up to the largest source's count), so `Fusion.threshold_for(fpr)` is the
threshold that flagged `fpr` of real faces of people outside the fit. The fold FPRs say how far
an in-sample threshold would have been off on a new person (their spread is what to expect).

Not held out: the signal nets (S2's autoencoder, S3's reference, S4's blend net) are trained on
the first part of every source; only the fusion and the threshold see the person as new.
"""

from __future__ import annotations

import torch

from faceswap.detect.fusion import Fusion

MIN_SOURCES = 3
# Candidate signal sets (each filtered to the signals present), best first when tied.
SELF_REFERENCED = ("s2_rel_err", "s2_rel_res", "s3_band0", "s3_band1", "s3_band2", "s3_tile_hf", "s3_tile_slope")
BLEND = ("s4_blend", "s4_seam")
SIGNAL_SETS = {"self-referenced + blend": SELF_REFERENCED + BLEND, "blend": BLEND, "all": None}


def _pick(signals: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[keep] for k, v in signals.items()}


def _scale(logits: torch.Tensor) -> tuple[float, float]:
    return float(logits.median()), float(logits.std().clamp_min(1e-6))


def _folds(fit: dict, fit_sources: list[str], fake: dict | None, fake_sources: list, calib: dict, calib_sources: list[str],
           names: list[str], fpr: float, fake_calib: dict | None = None, fake_calib_sources: list | None = None):
    """Per held-out source: (its name, the fold fusion (thresholded on the others), the others' and its own
    calibration logits, its held-out fakes' logits or None)."""
    for held in dict.fromkeys(calib_sources):
        keep_fit = torch.tensor([s != held for s in fit_sources])
        keep_fake = torch.tensor([s != held for s in fake_sources]) if fake else None
        fold = Fusion.fit(_pick(fit, keep_fit), _pick(fake, keep_fake) if fake else None, names=names,
                          sources=[s for s in fit_sources if s != held])
        others = torch.tensor([s != held for s in calib_sources])
        other_logits = fold.logit(_pick(calib, others))
        fold.calibrate(_pick(calib, others), fpr)
        own_fakes = None
        if fake_calib:
            mine = torch.tensor([s == held for s in fake_calib_sources])
            own_fakes = fold.logit(_pick(fake_calib, mine)) if mine.any() else None
        yield held, fold, other_logits, fold.logit(_pick(calib, ~others)), own_fakes


def choose_signals(names: list[str], fit: dict, fit_sources: list[str], fake: dict, fake_sources: list, calib: dict,
                   calib_sources: list[str], fake_calib: dict, fake_calib_sources: list, fpr: float) -> tuple[list[str], dict]:
    """The candidate signal set (SIGNAL_SETS, within `names`) that held up best on held-out sources
    (see module docs); returns it and each candidate's score. `fake_calib`: fakes made from the
    calibration reals, labelled by their source. Fewer than MIN_SOURCES sources: all of `names`."""
    if len(set(calib_sources)) < MIN_SOURCES or not fake:
        return list(names), {}
    scores, best = {}, None
    for label, wanted in SIGNAL_SETS.items():
        chosen = [n for n in names if wanted is None or n in wanted]
        if not chosen or any(chosen == s for s, _ in scores.values()):
            continue
        gaps = []
        for _, fold, _, own, own_fakes in _folds(fit, fit_sources, fake, fake_sources, calib, calib_sources, chosen, fpr,
                                                  fake_calib, fake_calib_sources):
            if own_fakes is not None:
                gaps.append(float((own_fakes > fold.threshold).float().mean() - (own > fold.threshold).float().mean()))
        scores[label] = (chosen, sum(gaps) / max(len(gaps), 1))
        if best is None or scores[label][1] > scores[best][1]:
            best = label
    return scores[best][0], {k: round(v, 4) for k, (_, v) in scores.items()} | {"chosen": best}


def held_out_calibration(final: Fusion, fit: dict, fit_sources: list[str], fake: dict | None, fake_sources: list[str | None],
                         calib: dict, calib_sources: list[str], fpr: float) -> dict | None:
    """Recalibrate `final` on person-held-out logits (see module docs); returns the report
    (per source: faces, the FPR an in-sample threshold had on it) or None with fewer than
    MIN_SOURCES calibration sources (`final` is then left as it is).

    fit / fake / calib: `{signal: (n,)}`; *_sources: one label per face (a fake's None: kept in every fold)."""
    names = list(dict.fromkeys(calib_sources))
    if len(names) < MIN_SOURCES:
        return None
    m_final, s_final = _scale(final.logit(calib))
    mapped, report = [], {}
    for held, fold, others, own, _ in _folds(fit, list(fit_sources), fake, fake_sources, calib, list(calib_sources),
                                             final.names, fpr):
        m, s = _scale(others)
        report[held] = {"faces": len(own), "fpr_in_sample_threshold": float((own > fold.threshold).float().mean())}
        mapped.append(m_final + (own - m) / s * s_final)
    largest = max(len(x) for x in mapped)
    pooled = torch.cat([x.repeat((largest + len(x) - 1) // len(x))[:largest] for x in mapped])
    final.calibration = sorted(pooled.tolist())
    final.fpr = fpr
    final.threshold = final.threshold_for(fpr)
    for held, x in zip(names, mapped):
        report[held]["fpr_held_out_threshold"] = float((x > final.threshold).float().mean())
    return report

"""S4 (issue #16): pasted fakes made from real faces alone, the blend net, and person-held-out calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceswap.detect import metrics
from faceswap.detect.blend import BlendConfig, blend_signals, partner_indices, train_blend
from faceswap.detect.fusion import Fusion
from faceswap.detect.holdout import held_out_calibration
from faceswap.detect.selfblend import blend_fakes, blend_mask, paste
from faceswap.faces.align import template_face_mask
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch

SIZE = 64


@pytest.fixture(scope="module")
def faces():
    """Two synthetic people, 48 aligned faces each, `(96, 3, 64, 64)` float."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is faster, and kinder to a shared CI machine
    x = torch.cat([face_batch(IDENTITY_A, 48, SIZE, seed=1), face_batch(IDENTITY_B, 48, SIZE, seed=2)]).float() / 255
    yield x
    torch.set_num_threads(threads)


def test_masks_cover_the_face_and_leave_the_crop_border():
    gen = torch.Generator().manual_seed(0)
    m = blend_mask(64, SIZE, "face", gen)
    assert m.shape == (64, 1, SIZE, SIZE) and m.min() >= 0 and m.max() <= 1
    core = template_face_mask(SIZE, "face", feather=0.0, radius=0.4)[None] > 0.5  # the middle of the face
    assert (m[core.expand_as(m)] > 0.9).float().mean() > 0.97
    assert m[..., :2, :].max() < 0.15 and m[..., :, :2].max() < 0.15 and m[..., :, -2:].max() < 0.15
    assert m[..., -2:, :].mean() < 0.02  # a large mask may reach down to the chin at the crop's bottom
    # Random: the masks differ from each other in shape and edge.
    assert (m[0] - m[1]).abs().max() > 0.3


def test_paste_changes_only_inside_the_mask_and_marks_its_seam(faces):
    gen = torch.Generator().manual_seed(1)
    target, source = faces[:8], faces[48:56]
    mask = (template_face_mask(SIZE, "face", feather=0.2)[None]).expand(8, 1, SIZE, SIZE)
    fake, seam = paste(target, source, mask, gen)
    outside, inside = mask == 0, mask == 1
    assert torch.equal(fake * outside, target * outside)  # untouched where the mask is 0
    assert (seam[outside | inside] == 0).all() and seam.max() == pytest.approx(1.0, abs=0.02)
    # The blend ratio is one of SBI's: inside the mask the fake is target + r (source - target).
    d = (fake - target)[inside.expand_as(fake)].view(8, -1)
    s = (source - target)[inside.expand_as(source)].view(8, -1)
    r = (d * s).sum(1) / s.square().sum(1)
    assert all(min(abs(v - q) for q in (0.25, 0.5, 0.75, 1.0)) < 1e-4 for v in r.tolist())


def test_cross_blends_paste_the_partner_and_self_blends_the_face_itself(faces):
    a, b = faces[:16], faces[48:64]
    crosses = blend_fakes(a, "face", torch.Generator().manual_seed(2), partners=b, cross_fraction=1.0)[0]
    selves = blend_fakes(a, "face", torch.Generator().manual_seed(2), partners=b, cross_fraction=0.0)[0]
    centre = (slice(None), slice(None), slice(24, 40), slice(24, 40))
    # The middle of a cross-blend is nearer the partner than a self-blend's is.
    assert (crosses - b)[centre].abs().mean() < 0.6 * (selves - b)[centre].abs().mean()
    assert (selves - a)[centre].abs().mean() < (crosses - a)[centre].abs().mean()
    # Partners come from another source when there is one.
    sources = torch.tensor([0] * 48 + [1] * 48)
    idx = torch.arange(96)
    other = partner_indices(96, sources, idx, torch.Generator().manual_seed(3))
    assert (sources[other] != sources[idx]).all() and len(set(other.tolist())) > 30


def test_blend_net_learns_pastes_it_never_saw(faces):
    """Trained on self/cross blends of the first 32 faces of each person; tested on fresh blends of the other 16."""
    train = torch.cat([faces[:32], faces[48:80]])
    test = torch.cat([faces[32:48], faces[80:]])
    sources = torch.tensor([0] * 32 + [1] * 32)
    net = train_blend((train * 255).round().byte(), "face", BlendConfig(width=8, iterations=150, batch_size=16), sources)
    partners = torch.cat([faces[80:], faces[32:48]])
    fakes, seams = blend_fakes(test, "face", torch.Generator().manual_seed(9), partners)
    real_sig, fake_sig = blend_signals(net, test), blend_signals(net, fakes)
    labels = np.r_[np.zeros(len(test)), np.ones(len(fakes))]
    assert metrics.roc_auc(np.r_[real_sig["s4_blend"], fake_sig["s4_blend"]], labels) > 0.8
    # The seam head points at the seam: higher on it than elsewhere in the same fakes.
    with torch.no_grad():
        seam_logits = net(fakes)[1]
    on = torch.nn.functional.adaptive_max_pool2d(seams, seam_logits.shape[-2:]) > 0.5
    assert seam_logits[on].mean() > seam_logits[~on].mean() + 0.5


def test_held_out_calibration_measures_a_new_person_and_raises_the_threshold():
    """Signal `u` separates fakes but also puts real person 'c' higher than the others: the in-sample
    threshold flags much of c when c is held out, and the held-out calibration moves the threshold up."""
    gen = torch.Generator().manual_seed(0)
    people = ["a", "b", "c", "d"]
    shift = {"a": 0.0, "b": 0.2, "c": 2.0, "d": -0.2}

    def reals(n):
        src = [p for p in people for _ in range(n)]
        u = torch.cat([torch.randn(n, generator=gen) + shift[p] for p in people])
        return {"u": u, "v": torch.randn(len(src), generator=gen)}, src

    fit, fit_src = reals(100)
    calib, calib_src = reals(100)
    fake = {"u": torch.randn(400, generator=gen) + 5.0, "v": torch.randn(400, generator=gen)}
    fake_src = list(fit_src)
    final = Fusion.fit(fit, fake, names=["u", "v"], sources=fit_src, balance=0.0)
    in_sample = final.calibrate(calib, 0.01)
    report = held_out_calibration(final, fit, fit_src, fake, fake_src, calib, calib_src, 0.01)
    assert set(report) == set(people) and all(r["faces"] == 100 for r in report.values())
    assert report["c"]["fpr_in_sample_threshold"] > 0.2 > max(report[p]["fpr_in_sample_threshold"] for p in "abd")
    assert final.threshold > in_sample and final.fpr == 0.01
    assert len(final.calibration) == 400  # each held-out person weighs the same
    pooled = np.mean([r["fpr_held_out_threshold"] for r in report.values()])
    assert pooled <= 0.011
    # Fewer than three sources: nothing to hold out, the fusion is left as it was.
    two = [s for s in calib_src if s in "ab"]
    keep = torch.tensor([s in "ab" for s in calib_src])
    before = final.threshold
    assert held_out_calibration(final, fit, fit_src, fake, fake_src, {k: v[keep] for k, v in calib.items()}, two, 0.01) is None
    assert final.threshold == before


def test_signal_choice_drops_a_signal_that_tells_people_apart():
    """`s3_spec` separates fakes perfectly among people a, b, c, but person d's real faces sit where
    their fakes do; `s4_blend` separates them less well but the same for everyone. With d held
    out, a fusion that uses `s3_spec` flags all of d: the blend-only fusion is chosen. With two
    people there is nothing to hold out."""
    from faceswap.detect.holdout import choose_signals

    gen = torch.Generator().manual_seed(1)
    people, shift = ["a", "b", "c", "d"], {"a": 0.0, "b": 0.0, "c": 0.0, "d": 3.0}  # d is unlike the others

    def faces(n, fake):
        src = [p for p in people for _ in range(n)]
        spec = torch.cat([torch.randn(n, generator=gen) * 0.3 + shift[p] + 2.0 * fake for p in people])
        blend = torch.randn(len(src), generator=gen) + 4.0 * fake
        return {"s3_spec": spec, "s4_blend": blend}, src

    fit, fit_src = faces(60, False)
    fake, fake_src = faces(60, True)
    calib, calib_src = faces(60, False)
    fake_cal, fake_cal_src = faces(60, True)
    names, scores = choose_signals(["s3_spec", "s4_blend"], fit, fit_src, fake, fake_src, calib, calib_src, fake_cal,
                                   fake_cal_src, 0.01)
    assert names == ["s4_blend"] and scores[scores["chosen"]] > scores["all"] + 0.1
    two = [s in "ab" for s in calib_src]
    pick = lambda sig, keep: {k: v[torch.tensor(keep)] for k, v in sig.items()}  # noqa: E731
    names, scores = choose_signals(["s3_spec", "s4_blend"], fit, fit_src, fake, fake_src, pick(calib, two),
                                   [s for s in calib_src if s in "ab"], fake_cal, fake_cal_src, 0.01)
    assert names == ["s3_spec", "s4_blend"] and scores == {}


def test_detect_train_help_states_the_blend_nets_real_default():
    from click.testing import CliRunner

    from faceswap.cli import main

    out = CliRunner().invoke(main, ["detect", "train", "--help"], terminal_width=400).output
    assert f"[default: {BlendConfig.iterations}]" in " ".join(out.split())

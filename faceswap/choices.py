"""Choices the CLI lists and the stages validate, declared once and torch-free (importing a stage
loads torch and kornia, ~3 s, which `faceswap --help` must not wait for). See also
`faces.coverage` for the crop coverages.
"""

from __future__ import annotations

# convert --mask: where the swapped face is pasted (`convert.mask`).
MASK_SOURCES = ("auto", "template", "landmarks", "learned", "occlusion")

# extract/convert --person-distance: dlib face-descriptor distance to a reference person's centroid
# within which a face is that person (`faces.people`). dlib's own same-person threshold is 0.6 between
# two faces; a centroid of many faces is nearer its own person's faces (<= 0.40 on the shared clips)
# while a lookalike came as near as 0.44, so 0.5 leaves room on both sides.
PERSON_DISTANCE = 0.5

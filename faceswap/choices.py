"""Choices the CLI lists and the stages validate, declared once and torch-free (importing a stage
loads torch and kornia, ~3 s, which `faceswap --help` must not wait for). See also
`faces.coverage` for the crop coverages.
"""

from __future__ import annotations

# convert --mask: where the swapped face is pasted (`convert.mask`).
MASK_SOURCES = ("auto", "template", "landmarks", "learned", "occlusion")

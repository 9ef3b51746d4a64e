"""Layer 1: container metadata that labels a file as synthetic, and reading it back.

Written tags (MP4 with `-movflags use_metadata_tags`, which `video.VideoWriter` always sets; PNG tEXt):

- `comment`: one human-readable line, `synthetic: face swap made with faceswap <version> (model
  <id>) on <created>`. `comment` is a standard tag, the one ffmpeg keeps on a plain re-encode
  (`ffmpeg -i in.mp4 out.mp4`), so the whole label is also parsed out of it.
- `faceswap_synthetic` ("1"), `faceswap_version`, `faceswap_model_id` (SHA-256 of the weights),
  `faceswap_created` (UTC, ISO 8601): custom keys, kept by remuxes that copy metadata.

`convert.swap.synthetic_metadata` writes the same keys; `read_labels` reads either.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceswap import __version__
from faceswap.faces.store import png_text

TOOL = "faceswap"
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg"}
_COMMENT_RE = re.compile(r"synthetic:.*?faceswap\s+(?P<version>\S+)(?:\s+\(model\s+(?P<model>[0-9a-fA-F]+)\))?(?:\s+on\s+(?P<created>\S+))?")


def container_tags(model_id: str, options: dict[str, Any] | None = None, created: str | None = None) -> dict[str, str]:
    """The tags that label an output as synthetic (pass to `VideoWriter(metadata=...)` or PNG tEXt)."""
    created = created or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    tags = {
        "comment": f"synthetic: face swap made with {TOOL} {__version__} (model {model_id[:16]}) on {created}",
        "faceswap_synthetic": "1",
        "faceswap_version": __version__,
        "faceswap_model_id": model_id,
        "faceswap_created": created,
    }
    if options is not None:
        tags["faceswap_options"] = json.dumps(options, separators=(",", ":"))
    return tags


@dataclass
class MetadataLabel:
    """What the file's own tags say. `source` is "tags" (the custom keys), "comment" (only the
    standard comment survived, e.g. after a re-encode) or None (nothing found)."""

    present: bool = False
    synthetic: bool = False
    tool: str | None = None
    version: str | None = None
    model_id: str | None = None
    created: str | None = None
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_labels(tags: dict[str, str]) -> MetadataLabel:
    """Interpret container/PNG tags (keys compared case-insensitively)."""
    tags = {k.lower(): v for k, v in tags.items()}
    label = MetadataLabel(tags=tags)
    if tags.get("faceswap_synthetic") is not None:
        label.present = True
        label.synthetic = tags["faceswap_synthetic"].strip().lower() in ("1", "true", "yes")
        label.tool, label.source = TOOL, "tags"
        label.version = tags.get("faceswap_version")
        label.model_id = tags.get("faceswap_model_id")
        label.created = tags.get("faceswap_created")
    match = _COMMENT_RE.search(tags.get("comment", ""))
    if match:
        if not label.present:
            label.present, label.synthetic, label.tool, label.source = True, True, TOOL, "comment"
        label.version = label.version or match.group("version")
        label.model_id = label.model_id or match.group("model")
        label.created = label.created or match.group("created")
    return label


def jpeg_comments(data: bytes) -> dict[str, str]:
    """The COM segments of JPEG bytes, joined, as {"comment": ...}."""
    if data[:2] != b"\xff\xd8":
        return {}
    pos, comments = 2, []
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no more headers
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker == 0xFE:
            comments.append(data[pos + 4 : pos + 2 + length].decode("utf-8", "replace"))
        pos += 2 + length
    return {"comment": "\n".join(comments)} if comments else {}


def read_labels(path: str | Path) -> MetadataLabel:
    """Read the synthetic label of a video (container tags via ffmpeg) or a PNG/JPEG image."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        data = path.read_bytes()
        tags = png_text(data) or jpeg_comments(data)
    else:
        from faceswap.video import read_metadata

        tags = read_metadata(path)
    return parse_labels(tags)


__all__ = ["MetadataLabel", "container_tags", "jpeg_comments", "parse_labels", "png_text", "read_labels"]

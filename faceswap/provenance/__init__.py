"""Provenance: every swap is labelled three ways, each strippable alone, and `inspect` reads them.

1. `metadata`: container tags (synthetic flag, tool + version, model id, creation time);
2. `watermark`: a keyed spread-spectrum mark in every swapped face of every frame (no opt-out);
3. `credentials`: a signed C2PA manifest attached to the finished file, offline.

Convert calls, per run / per batch / per output:

    bits = payload_bits(model_id)                                   # once
    tags = container_tags(model_id, options) if credentials else {} # -> VideoWriter(metadata=tags)
    mark_faces(frames, owners, masks, matrices, bits)               # after paste-back, before encoding
    warnings += finish_output(output_path, model_id, credentials)   # after the writer closed
"""

from __future__ import annotations

from pathlib import Path

from faceswap.provenance.credentials import CredentialReport, config_dir, sign_file, signing_identity, verify_file
from faceswap.provenance.metadata import MetadataLabel, container_tags, read_labels
from faceswap.provenance.watermark import (TOOL_TAG, WatermarkDecoder, WatermarkResult, embed, mark_faces,
                                           payload_bits)

NO_CREDENTIALS_WARNING = ("--no-credentials: the output carries no metadata label and no Content Credentials; "
                          "it is still watermarked as synthetic")


def finish_output(path: str | Path, model_id: str, credentials: bool = True, cert: str | Path | None = None,
                  key: str | Path | None = None) -> list[str]:
    """Last step of convert for one finished output file: attach Content Credentials.

    Returns warnings (never raises for a signing failure: the labelled, watermarked file stays).
    With `credentials=False` nothing is signed and the user is told so.
    """
    if not credentials:
        return [NO_CREDENTIALS_WARNING]
    warning = sign_file(path, model_id, cert, key, watermark_tag=f"0x{TOOL_TAG:04X}")
    return [warning] if warning else []


__all__ = ["CredentialReport", "MetadataLabel", "NO_CREDENTIALS_WARNING", "WatermarkDecoder", "WatermarkResult",
           "config_dir", "container_tags", "embed", "finish_output", "mark_faces", "payload_bits", "read_labels",
           "sign_file", "signing_identity", "verify_file"]

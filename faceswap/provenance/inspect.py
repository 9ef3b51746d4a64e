"""`faceswap inspect`: report each provenance layer of videos and images.

For every file: container metadata (present / synthetic / model id), Content Credentials
(valid / tampered / invalid / absent), and the invisible watermark (found, its confidence and the
decoded model id prefix, its first 2 hex digits, or "uncertain"), aggregated over up to `max_frames` frames. A file
counts as labelled synthetic when any layer says so (C2PA only when its manifest is valid or tampered: a tampered
manifest still tells who made the file, the content changed since).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceswap.errors import FaceswapError
from faceswap.provenance.credentials import verify_file
from faceswap.provenance.metadata import IMAGE_EXTENSIONS, read_labels
from faceswap.provenance.watermark import DEFAULT_KEY, WatermarkDecoder

DEFAULT_MAX_FRAMES = 240


@dataclass
class InspectConfig:
    """What to check. `trust`: extra PEM trust anchors for C2PA; `max_frames`: frames of a video
    the watermark decoder reads (from the start); `detect_every`: face detection period."""

    watermark: bool = True
    max_frames: int = DEFAULT_MAX_FRAMES
    detect_every: int = 4
    trust: tuple[Path, ...] = ()
    key: bytes = DEFAULT_KEY


def _read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FaceswapError(f"{path}: not an image OpenCV can read")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _unreadable(path: Path) -> str | None:
    """Why `path` is no image/video we can read (None when it is one): the cheap checks only
    (an image's decode, a video's header and packet count), for runs without the watermark decoder."""
    try:
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            _read_image(path)
        else:
            from faceswap.video import probe

            probe(path)
    except FaceswapError as exc:
        return str(exc)
    return None


def decode_watermark(path: Path, config: InspectConfig, detector=None) -> dict:
    """Run the watermark decoder over a video's first frames or an image."""
    decoder = WatermarkDecoder(key=config.key, detect_every=config.detect_every, detector=detector)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        decoder.update(_read_image(path))
    else:
        from faceswap.video import FrameReader

        for _, frame in FrameReader(path, end=config.max_frames):
            decoder.update(frame)
    return decoder.result().to_dict()


def inspect_file(path: str | Path, config: InspectConfig = InspectConfig(), detector=None) -> dict:
    """One file's provenance report (a JSON-ready dict). Never raises for a bad file: `error` says why."""
    path = Path(path)
    report: dict = {"file": str(path), "kind": "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video",
                    "synthetic": False, "error": None}
    if not path.is_file():
        report["error"] = f"{path}: is a folder, not a video or image file" if path.is_dir() else f"{path}: no such file"
        return report
    try:
        report["metadata"] = read_labels(path).to_dict()
    except (OSError, FaceswapError) as exc:
        report["metadata"] = {"present": False, "error": str(exc)}
    report["c2pa"] = verify_file(path, list(config.trust)).to_dict()
    if config.watermark:
        try:
            report["watermark"] = decode_watermark(path, config, detector)
        except FaceswapError as exc:
            report["watermark"] = {"found": False, "error": str(exc)}
            report["error"] = str(exc)
    else:
        report["error"] = _unreadable(path)  # without the decoder nothing else would notice a corrupt file
    md, cr, wm = report["metadata"], report["c2pa"], report.get("watermark") or {}
    report["synthetic"] = bool(md.get("synthetic") or (cr["status"] in ("valid", "tampered") and cr["synthetic"]) or wm.get("found"))
    if wm.get("found") and wm.get("model_id") and md.get("model_id"):
        wm["matches_metadata"] = str(md["model_id"]).lower().startswith(wm["model_id"])
    return report


def _line(label: str, text: str) -> str:
    return f"  {label:<12}{text}"


def format_report(report: dict) -> str:
    """Human-readable lines for one file's report."""
    lines = [f"{report['file']}: {'SYNTHETIC (labelled)' if report['synthetic'] else 'no synthetic label found'}"]
    md = report.get("metadata")
    if md is not None:
        if md.get("present"):
            how = "custom tags" if md.get("source") == "tags" else "comment only"
            lines.append(_line("metadata", f"synthetic={'yes' if md.get('synthetic') else 'no'} tool={md.get('tool')} "
                                           f"{md.get('version') or ''} model={md.get('model_id') or '?'} created={md.get('created') or '?'} ({how})"))
        else:
            lines.append(_line("metadata", "none" + (f" ({md['error']})" if md.get("error") else "")))
    cr = report.get("c2pa")
    if cr is not None:
        text = cr["status"]
        if cr["status"] in ("valid", "tampered", "invalid") and cr.get("signer"):
            text += f" ({'trusted' if cr.get('trusted') else 'untrusted'} signer: {cr['signer']}, {cr.get('issuer')})"
        if cr.get("digital_source_type"):
            text += f" source={cr['digital_source_type'].rsplit('/', 1)[-1]}"
        if cr.get("model_id"):
            text += f" model={cr['model_id']}"
        if cr.get("failures") and cr["status"] != "valid":
            text += f" [{', '.join(cr['failures'])}]"
        if cr.get("detail"):
            text += f" ({cr['detail']})"
        lines.append(_line("c2pa", text))
    wm = report.get("watermark")
    if wm is not None:
        if wm.get("error"):
            lines.append(_line("watermark", f"error: {wm['error']}"))
        elif wm.get("found"):
            match = {True: ", matches metadata", False: ", differs from metadata"}.get(wm.get("matches_metadata"), "")
            lines.append(_line("watermark", f"found (confidence {wm['confidence']:.6f}, tag {wm['tag_matches']}, z={wm['z']}) "
                                            + (f"model={wm['model_id']}...{match}; " if wm.get("model_id") else
                                               f"model id uncertain (chance wrong {wm.get('id_error')}); ")
                                            + f"{wm['frames_with_faces']}/{wm['frames']} frames with faces"))
        else:
            lines.append(_line("watermark", f"not found (tag {wm['tag_matches']}, z={wm['z']}; "
                                            f"{wm['frames_with_faces']}/{wm['frames']} frames with faces)"))
    if report.get("error"):
        lines.append(_line("error", report["error"]))
    return "\n".join(lines)


__all__ = ["DEFAULT_MAX_FRAMES", "InspectConfig", "decode_watermark", "format_report", "inspect_file"]

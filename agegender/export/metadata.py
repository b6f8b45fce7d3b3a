"""Metadata carried by an exported model: everything inference needs, and where it came from.

The full checkpoint contract is stored as JSON under one key (what `OnnxPredictor` reads);
the most useful fields are repeated as plain keys so `onnx` tools and Netron show them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnx

from agegender.contract import INPUT_TEXT, META_PROP, OUTPUTS_TEXT, VERSION


def file_digest(path: Path) -> str:
    """sha256 of a file, read in chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_meta(meta: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's contract plus provenance: source file, its digest, exporting version."""
    return {
        **meta,
        "source_checkpoint": str(checkpoint.resolve()),
        "source_sha256": file_digest(checkpoint),
        "exported_by": f"agegender {VERSION}",
    }


def metadata_props(meta: dict[str, Any]) -> dict[str, str]:
    """String key/value pairs for an ONNX file's metadata_props."""
    return {
        META_PROP: json.dumps(meta, sort_keys=True),
        "image_size": str(meta["image_size"]),
        "age_range": json.dumps(meta["age_range"]),
        "labels": json.dumps(meta["labels"]),
        "backbone": str(meta["net"].get("backbone", "mobilenet_v2")),
        "version": str(meta.get("version", "")),
        "exported_by": str(meta.get("exported_by", "")),
        "checkpoint": str(meta.get("source_checkpoint", "")),
        "checkpoint_sha256": str(meta.get("source_sha256", "")),
        "input": INPUT_TEXT,
        "outputs": OUTPUTS_TEXT,
    }


def write_onnx_metadata(path: Path, props: dict[str, str]) -> None:
    """Replace the metadata_props of the ONNX file at `path` (in place)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "agegender"
    model.producer_version = VERSION
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file as a dict (weights are not needed, nor loaded)."""
    model = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in model.metadata_props}


def onnx_opset(path: str | Path) -> int:
    """The default-domain opset an ONNX file was written for."""
    model = onnx.load(str(path), load_external_data=False)
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))

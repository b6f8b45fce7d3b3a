"""One export: checkpoint -> ONNX or TorchScript file, proven equal to PyTorch before it lands.

The file is written under a temporary name, checked for parity and only then renamed into
place, so a failed export leaves no model behind (and never replaces a good one).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agegender.checkpoint import check_checkpoint_file, home_folder, load_checkpoint
from agegender.deployed import (
    AGE_TOLERANCE,
    MIN_OPSET,
    P_FEMALE_TOLERANCE,
    Parity,
    Runner,
    measure,
    torch_runner,
    write_onnx,
)
from agegender.errors import UserError
from agegender.export.graph import write_torchscript
from agegender.export.metadata import export_meta, metadata_props, write_onnx_metadata
from agegender.export.parity import check, generated_images, parity_batch
from agegender.export.quantize import METHODS, int8_report, quantize_int8
from agegender.inference.onnx_backend import OnnxPredictor
from agegender.io import atomic_target, check_outputs, remove_stale_temps

if TYPE_CHECKING:
    from agegender.evaluation.data import EvalSet

FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}  # what live.py and eval.py dispatch on
KINDS = {"onnx": "an ONNX", "torchscript": "a TorchScript"}
TORCHSCRIPT_META = "agegender.json"  # extra file inside the TorchScript archive
CALIBRATION_IMAGES = 128


@dataclass
class ExportResult:
    path: Path
    format: str
    parity: Parity
    int8_path: Path | None = None
    int8: dict[str, Any] | None = None


def output_path(checkpoint: Path, out: str | Path | None, fmt: str) -> Path:
    """`out` (a file, or a folder to put the default name in), else the run folder of a
    checkpoint in `<run>/checkpoints/` (where make demo puts it too), or beside it.

    A file name must carry the format's suffix: live.py and eval.py pick the backend from it.
    """
    if not out:
        return home_folder(checkpoint) / FILE_NAMES[fmt]
    folder = str(out).endswith(("/", os.sep))
    out = Path(out).expanduser()
    if folder or out.is_dir():
        return out / FILE_NAMES[fmt]
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise UserError(
            f"out={out}: {KINDS[fmt]} export must be named *{SUFFIXES[fmt]} (e.g. "
            f"out={out.with_suffix(SUFFIXES[fmt])}), or give a folder"
        )
    return out


def int8_path(target: Path) -> Path:
    return target.with_name(f"{target.stem}.int8.onnx")


def torchscript_runner(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        module = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        age, p_female = module(torch.from_numpy(np.ascontiguousarray(batch)))
        return torch.stack([age, p_female], dim=1).double().numpy()

    return run


def _data_for_int8(
    meta: dict[str, Any], data_cfg: dict[str, Any] | None
) -> tuple[np.ndarray, EvalSet | None]:
    """Calibration faces (training split) and validation faces, or generated calibration."""
    from agegender.evaluation.data import load_eval_set  # the data pipeline only for int8

    if data_cfg is not None:
        try:
            # calibration only needs faces like the training ones, seen or not
            train = load_eval_set(meta, data_cfg, "train", limit=CALIBRATION_IMAGES, overlap="keep")
            return train.images, load_eval_set(meta, data_cfg, "val")
        except UserError as error:
            print(f"int8: run's images unavailable ({error}); calibrating on generated images")
    return generated_images(int(meta["image_size"]), CALIBRATION_IMAGES // 2), None


def export(
    checkpoint: str | Path,
    out: str | Path | None = None,
    fmt: str = "onnx",
    opset: int = MIN_OPSET,
    quantize: str | None = None,
    quantize_method: str = "static",
    data_cfg: dict[str, Any] | None = None,
    parity_images: int = 16,
    age_tolerance: float = AGE_TOLERANCE,
    p_tolerance: float = P_FEMALE_TOLERANCE,
    speed_seconds: float = 1.0,
) -> ExportResult:
    """Export a training checkpoint; raises ParityError (and writes nothing) on a mismatch."""
    if fmt not in FILE_NAMES:
        raise UserError(f"format={fmt}: choose format=onnx or format=torchscript")
    if quantize not in (None, "int8") or (quantize and fmt != "onnx"):
        raise UserError(f"quantize={quantize}: only quantize=int8 with format=onnx is supported")
    if quantize_method not in METHODS:
        raise UserError(f"quantize_method={quantize_method}: choose one of {', '.join(METHODS)}")
    if int(opset) < MIN_OPSET:
        raise UserError(f"opset={opset}: use opset {MIN_OPSET} or newer")
    checkpoint = Path(checkpoint)
    target = output_path(checkpoint, out, fmt)
    outputs = {"out": target, "int8": int8_path(target) if quantize == "int8" else None}
    check_checkpoint_file(checkpoint)  # an .onnx passed as ckpt is named as such first
    check_outputs(outputs, {"ckpt": checkpoint})
    loaded = load_checkpoint(checkpoint)
    meta = export_meta(loaded.meta, checkpoint)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, f".{target.name}.tmp-*")  # left by a killed export
    batch, source = parity_batch(loaded.meta, parity_images)
    reference = torch_runner(loaded.net)
    with atomic_target(target, keep_suffix=True) as temporary:
        if fmt == "onnx":
            write_onnx(loaded.net, temporary, loaded.image_size, int(opset))
            write_onnx_metadata(temporary, metadata_props(meta))
            candidate = OnnxPredictor(temporary).predict_batch
        else:
            extra = {TORCHSCRIPT_META: json.dumps(meta, sort_keys=True)}
            write_torchscript(loaded.net, temporary, loaded.image_size, extra)
            candidate = torchscript_runner(temporary)
        parity = measure(reference, candidate, batch, source)
        check(parity, str(target), age_tolerance, p_tolerance)  # raising keeps the old file
    result = ExportResult(path=target, format=fmt, parity=parity)
    if quantize == "int8":
        calibration, val = _data_for_int8(loaded.meta, data_cfg)
        result.int8_path = int8_path(target)
        quantize_int8(target, result.int8_path, calibration, quantize_method)
        result.int8 = int8_report(target, result.int8_path, val, seconds=speed_seconds)
    return result

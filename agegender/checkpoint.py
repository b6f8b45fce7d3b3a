"""The one checkpoint loader: finds, validates and loads agegender checkpoints safely.

A Lightning checkpoint written by training carries, under the key "agegender", everything
inference needs (architecture, image size, age range, label meaning), so `live.py ckpt=X`,
`export.py ckpt=X` and `eval.py ckpt=X` need no other flag. Files are always read with
`weights_only=True`: a checkpoint can never run code on load.
"""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from agegender.calibration import recorded_temperature
from agegender.contract import LABELS, META_FORMAT, META_KEY, VERSION
from agegender.errors import UserError
from agegender.io import atomic_target
from agegender.model import AgeGenderNet, NetConfig
from agegender.resume import METRICS, is_finished
from agegender.validation import validate_meta

# Newest best checkpoint of these phases, in this order, is what `ckpt=latest` means.
LATEST_PHASES = ("finetune", "frozen")


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or not an agegender checkpoint."""


def build_meta(
    net: NetConfig,
    image_size: int,
    age_range: tuple[int, int],
    phase: str,
    split_file: str | None = None,
    crop: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The inference contract stored in each checkpoint (plain types only)."""
    return {
        "format": META_FORMAT,
        "net": net.to_dict(),
        "image_size": int(image_size),
        "age_range": [int(age_range[0]), int(age_range[1])],
        "labels": LABELS,
        "version": VERSION,
        "phase": phase,
        "split_file": split_file,
        # the face framing trained on (faces.photo.PhotoCrop.to_meta); None = centre squares
        "crop": crop,
    }


@dataclass
class LoadedCheckpoint:
    net: AgeGenderNet
    meta: dict[str, Any]
    path: Path

    @property
    def image_size(self) -> int:
        return int(self.meta["image_size"])


def save_checkpoint(path: str | Path, net: AgeGenderNet, meta: dict[str, Any]) -> Path:
    """Write `net` with `meta` as a checkpoint `load_checkpoint` reads (what Lightning's
    checkpoints hold for inference: the net's weights under "net." and the metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"net.{key}": value for key, value in net.state_dict().items()}
    with atomic_target(path) as temporary:
        torch.save({"state_dict": state, META_KEY: meta}, temporary)
    return path


def net_config(meta: dict[str, Any]) -> NetConfig:
    """The architecture stored in validated metadata; keys this version does not know are
    left out (a newer writer may add some)."""
    known = {field.name for field in fields(NetConfig)}
    return NetConfig(**{key: value for key, value in meta["net"].items() if key in known})


def _foreign_file(path: Path) -> str | None:
    """Why a file is plainly not a training checkpoint, from its name and first bytes; None
    when it may be one (torch.load then decides)."""
    if path.suffix.lower() == ".onnx":
        return (
            "an exported ONNX model, not a training checkpoint; pass the .ckpt it was "
            "exported from (live.py, eval.py and serve.py run the .onnx itself)"
        )
    with path.open("rb") as file:
        head = file.read(2)
    if head == b"PK":  # torch's zip format, or a TorchScript archive
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return None
        if any(name.endswith("/constants.pkl") for name in names):
            return (
                "a TorchScript export, which is never loaded here; pass the training "
                "checkpoint (.ckpt) or the ONNX export (.onnx)"
            )
        return None
    if head[:1] == b"\x80":  # a pickle, torch's older format
        return None
    return (
        "not a PyTorch file (neither a zip archive nor a pickle: empty, cut short or another "
        "kind of file); use a .ckpt written by train.py"
    )


def check_checkpoint_file(path: Path) -> None:
    """CheckpointError unless `path` may be a training checkpoint: a file, not a folder, an
    export or something that is no PyTorch file (what it holds is load_checkpoint's check)."""
    if path.is_dir():
        raise CheckpointError(
            f"{path}: a folder; pass the .ckpt file itself (a run keeps it in "
            f"checkpoints/best.ckpt), or ckpt=latest for the newest"
        )
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Train one first (python train.py phase=frozen) "
            f"or pass ckpt=PATH of an existing .ckpt (ckpt=latest picks the newest)"
        )
    foreign = _foreign_file(path)
    if foreign:
        raise CheckpointError(f"{path}: {foreign}")


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load a training checkpoint into an AgeGenderNet in eval mode, on the CPU."""
    path = Path(path)
    check_checkpoint_file(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's own message advises weights_only=False, which would run the file's code.
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (it holds objects other than tensors "
            f"and plain values, which are never loaded); use a .ckpt written by train.py"
        ) from error
    except Exception as error:  # torch raises several types for corrupt or foreign files
        first = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{first[:200]}). Is the file complete?"
        ) from error
    if not isinstance(raw, dict) or META_KEY not in raw or "state_dict" not in raw:
        raise CheckpointError(
            f"{path}: not an agegender checkpoint (no '{META_KEY}' metadata); "
            f"use a .ckpt written by train.py"
        )
    meta = validate_meta(raw[META_KEY], str(path))
    try:
        net = AgeGenderNet(net_config(meta))
    except ValueError as error:  # an unknown backbone
        raise CheckpointError(f"{path}: {error}") from error
    state = {k[len("net.") :]: v for k, v in raw["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except (RuntimeError, AttributeError) as error:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture") from error
    net.set_outputs(meta.get("age_range"), recorded_temperature(meta))
    net.eval()
    return LoadedCheckpoint(net=net, meta=meta, path=path)


def _run_phase(run_dir: Path) -> str | None:
    """The phase a finished run trained (from its metrics.json)."""
    try:
        phase = json.loads((run_dir / METRICS).read_text()).get("phase")
    except (OSError, ValueError, AttributeError):
        return None
    return phase if isinstance(phase, str) else None


def find_latest_best(
    outputs_dir: str | Path, phase: str, warn: bool = True, anywhere: bool = True
) -> Path | None:
    """Newest `best.ckpt` of a finished run of `phase` anywhere under outputs_dir (or, with
    `anywhere=False`, only in outputs_dir/<phase>/<run>/checkpoints/).

    Runs without metrics.json, or still holding their RUNNING marker, were killed or are
    still training: they are skipped, with one warning line naming them.
    """
    found: list[Path] = []
    unfinished: list[Path] = []
    root = Path(outputs_dir).expanduser()
    candidates = (
        root.rglob("best.ckpt") if anywhere else root.glob(f"{phase}/*/checkpoints/best.ckpt")
    )
    for best in candidates:
        if best.parent.name != "checkpoints" or not best.is_file():
            continue
        run_dir = best.parent.parent
        if not is_finished(run_dir):
            unfinished.append(run_dir)
        elif _run_phase(run_dir) == phase:
            found.append(best)
    if warn and unfinished:
        names = ", ".join(str(p) for p in sorted(unfinished)[:3])
        more = f" and {len(unfinished) - 3} more" if len(unfinished) > 3 else ""
        print(
            f"warning: skipping {len(unfinished)} unfinished run(s) (killed or still training): "
            f"{names}{more}; continue one with python train.py resume=RUN_DIR",
            file=sys.stderr,
        )
    found.sort(key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def find_latest(outputs_dir: str | Path) -> Path | None:
    """What ckpt=latest means: the newest finished best checkpoint, finetune before frozen."""
    warn = True
    for phase in LATEST_PHASES:
        found = find_latest_best(outputs_dir, phase, warn=warn)
        warn = False  # the unfinished runs are the same for every phase
        if found is not None:
            return found
    return None


def home_folder(model_path: Path) -> Path:
    """Where a model's outputs go by default: the run folder for a model inside
    `<run>/checkpoints/`, else the model's own folder (eval's report, export's file)."""
    folder = model_path.parent
    return folder.parent if folder.name == "checkpoints" else folder


def resolve_checkpoint(spec: str | Path | None, outputs_dir: str | Path = "outputs") -> Path:
    """`latest` -> newest finished best checkpoint (finetune before frozen), said on stdout;
    otherwise the path itself."""
    if spec is None or str(spec) == "":
        raise CheckpointError("no checkpoint given: pass ckpt=PATH (or ckpt=latest)")
    if str(spec) != "latest":
        return Path(spec)
    found = find_latest(outputs_dir)
    if found is not None:
        print(f"ckpt=latest: {found}")
        return found
    raise CheckpointError(
        f"ckpt=latest: no best.ckpt of a finished run under {outputs_dir}/ (searched "
        f"recursively). Train first (python train.py phase=frozen) or pass ckpt=PATH"
    )

"""The one checkpoint loader: finds, validates and loads agegender checkpoints safely.

A Lightning checkpoint written by training carries, under the key "agegender", everything
inference needs (architecture, image size, age range, label meaning), so `live.py ckpt=X`,
`export.py ckpt=X` and `eval.py ckpt=X` need no other flag. Files are always read with
`weights_only=True`: a checkpoint can never run code on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agegender import __version__
from agegender.data.utkface import RACES
from agegender.errors import UserError
from agegender.model import AgeGenderNet, NetConfig

META_KEY = "agegender"
META_FORMAT = 1
LABELS = {
    "age": "years",
    "gender": "p_female = P(female); UTKFace gender 0 = male, 1 = female",
    "race": list(RACES),
    "pixels": "RGB, 0..255, NCHW; normalisation is inside the network",
}
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
        "version": __version__,
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


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load a training checkpoint into an AgeGenderNet in eval mode, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint not found: {path}. Train one first (python train.py phase=frozen) "
            f"or pass ckpt=PATH of an existing .ckpt (ckpt=latest picks the newest)"
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Is the file complete?"
        ) from error
    if not isinstance(raw, dict) or META_KEY not in raw or "state_dict" not in raw:
        raise CheckpointError(
            f"{path}: not an agegender checkpoint (no '{META_KEY}' metadata); "
            f"use a .ckpt written by train.py"
        )
    meta = raw[META_KEY]
    net = AgeGenderNet(NetConfig(**meta["net"]))
    state = {k[len("net.") :]: v for k, v in raw["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture") from error
    net.eval()
    return LoadedCheckpoint(net=net, meta=meta, path=path)


def find_latest_best(outputs_dir: str | Path, phase: str) -> Path | None:
    """Newest `best.ckpt` of a phase under outputs/<phase>/<run>/checkpoints/, if any."""
    candidates = Path(outputs_dir).glob(f"{phase}/*/checkpoints/best.ckpt")
    found = sorted(candidates, key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_checkpoint(spec: str | Path | None, outputs_dir: str | Path = "outputs") -> Path:
    """`latest` -> newest best checkpoint (finetune before frozen); otherwise the path itself."""
    if spec is None or str(spec) == "":
        raise CheckpointError("no checkpoint given: pass ckpt=PATH (or ckpt=latest)")
    if str(spec) != "latest":
        return Path(spec)
    for phase in LATEST_PHASES:
        found = find_latest_best(outputs_dir, phase)
        if found is not None:
            return found
    raise CheckpointError(
        f"ckpt=latest: no best.ckpt under {outputs_dir}/{{finetune,frozen}}/*/checkpoints/. "
        f"Train first (python train.py phase=frozen) or pass ckpt=PATH"
    )

"""The checkpoint loader: safe loading, clear errors, `latest`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from agegender.checkpoint import CheckpointError, load_checkpoint


class Payload:
    """An arbitrary object: unpickling it would mean running code from the file."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /dev/null",))


def test_roundtrip_keeps_weights_and_metadata(untrained_checkpoint: Path) -> None:
    loaded = load_checkpoint(untrained_checkpoint)
    assert loaded.image_size == 64
    assert loaded.meta["labels"]["gender"].startswith("p_female")
    assert loaded.meta["net"]["backbone"] == "mobilenet_v2"
    assert not loaded.net.training
    raw = torch.load(untrained_checkpoint, weights_only=True)
    assert torch.equal(raw["state_dict"]["net.age_head.bias"], loaded.net.age_head.bias)


def test_missing_checkpoint_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(tmp_path / "nope.ckpt")
    assert "nope.ckpt" in str(error.value) and "train.py" in str(error.value)


def test_garbage_and_foreign_files_are_rejected(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" + os.urandom(255))
    with pytest.raises(CheckpointError, match="not a PyTorch file"):
        load_checkpoint(garbage)
    cut = tmp_path / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint.*complete"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an agegender checkpoint"):
        load_checkpoint(foreign)


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "agegender": Payload()}, evil)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(evil)


def test_exports_and_folders_passed_as_checkpoints_are_named_for_what_they_are(
    tmp_path: Path,
) -> None:
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    with pytest.raises(CheckpointError, match="exported ONNX model.*the .ckpt it was exported"):
        load_checkpoint(onnx_file)
    scripted = tmp_path / "model.torchscript.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 1)), scripted)
    with pytest.raises(CheckpointError, match="TorchScript export, which is never loaded"):
        load_checkpoint(scripted)
    with pytest.raises(CheckpointError, match="a folder; pass the .ckpt file itself"):
        load_checkpoint(tmp_path)

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
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an agegender checkpoint"):
        load_checkpoint(foreign)


def test_pickled_code_is_never_run(tmp_path: Path) -> None:
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "agegender": Payload()}, evil)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(evil)

"""Shared fixtures: small checkpoints and generated data, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agegender.checkpoint import build_meta
from agegender.model import NetConfig
from agegender.module import AgeGenderModule


def write_untrained_checkpoint(path: Path, image_size: int = 64, seed: int = 0) -> Path:
    """A valid agegender checkpoint with random weights (fast; for plumbing tests)."""
    torch.manual_seed(seed)
    net = NetConfig()
    module = AgeGenderModule(
        net=net.to_dict(), meta=build_meta(net, image_size, (1, 80), "frozen")
    )
    module.net.init_age_bias(30.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "agegender": module.meta}, path)
    return path


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "untrained.ckpt")

"""`python <entry>.py --help`: what the command does, examples that run, and its own options."""

from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from agegender.configs import compose_config, group_options
from tests.conftest import run_entry

ENTRIES = ("train", "live", "eval", "export", "serve")
MISSING = object()


def _example_keys(text: str, entry: str) -> list[str]:
    """The key of every key=value in the help's `python <entry>.py ...` example lines."""
    lines = [line for line in text.splitlines() if line.strip().startswith(f"python {entry}.py")]
    assert lines, text
    return [token.split("=", 1)[0] for line in lines for token in line.split() if "=" in token]


@pytest.mark.parametrize("entry", ENTRIES)
def test_help_shows_examples_whose_options_exist_and_the_entry_s_own_options(entry: str) -> None:
    result = run_entry(f"{entry}.py", "--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    assert "is powered by Hydra" not in text  # the project's own help, not Hydra's default
    assert f"explained in conf/{entry}.yaml" in text
    config = compose_config(entry)
    for key in _example_keys(text, entry):
        known = OmegaConf.select(config, key, default=MISSING) is not MISSING
        assert known or group_options(key), f"{entry}.py --help shows {key}=, which is no option"
    # Training's config groups are listed for train.py only: live and serve take a detector.
    listed = re.search(r"^trainer: .*cpu", text, re.MULTILINE) is not None
    assert listed == (entry == "train"), text[:2000]

"""Where the Hydra configs are: agegender/conf in an installed package, else the checkout's
conf/ (setuptools maps the one onto the other, see pyproject.toml)."""

from __future__ import annotations

import functools
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def config_dir() -> Path:
    """The config folder: agegender/conf in an installed package, else the checkout's conf/."""
    package = Path(__file__).resolve().parent
    installed = package / "conf"
    if (installed / "train.yaml").is_file():
        return installed
    return package.parent / "conf"


def compose_config(name: str, *overrides: str) -> DictConfig:
    """conf/<name>.yaml composed as `python <name>.py OVERRIDES` composes it (no run folder)."""
    # imported here: the inference modules read this file's defaults without needing Hydra
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def group_options(group: str) -> list[str]:
    """The options of a config group: the YAML files of conf/<group>/, by name."""
    return sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))


@functools.cache
def live_defaults() -> DictConfig:
    """conf/live.yaml, the one home of the live pipeline's defaults (`LiveSettings` and
    `IouTracker` take theirs from here)."""
    loaded = OmegaConf.load(config_dir() / "live.yaml")
    assert isinstance(loaded, DictConfig)
    return loaded


def load_option(group: str, name: str) -> DictConfig | None:
    """conf/<group>/<name>.yaml as a config, or None when there is no such option."""
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        return None
    loaded = OmegaConf.load(path)
    assert isinstance(loaded, DictConfig), f"{path} is not a mapping"
    return loaded

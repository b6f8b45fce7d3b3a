"""Deterministic train/val/test split, stratified by age band and gender, saved as JSON.

The split is saved with each run so that evaluation later uses exactly the same test set;
loading it checks that the files it names are still there with the same content.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agegender.data.utkface import Sample, age_band
from agegender.errors import UserError
from agegender.io import write_atomic

SPLITS = ("train", "val", "test")


class SplitMismatchError(UserError):
    """A saved split names files that are missing or changed in the data folder."""


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]

    def indices(self, name: str) -> list[int]:
        return getattr(self, name)


def make_split(
    samples: Sequence[Sample], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Shuffle within each (age band, gender) stratum, then deal the strata out in turn.

    Dealing the concatenated strata with evenly spaced picks keeps every stratum's share
    in each split within one sample of the target fractions, and the totals exact.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise ValueError("data.split fractions must be >= 0 and leave room for training")
    rng = np.random.default_rng(seed)
    strata: dict[tuple[str, int], list[int]] = {}
    for index, sample in enumerate(samples):
        strata.setdefault((age_band(sample.age), sample.gender), []).append(index)
    ordered: list[int] = []
    for key in sorted(strata):
        members = strata[key]
        ordered += [members[i] for i in rng.permutation(len(members))]
    split = Split([], [], [])
    held_out = val_fraction + test_fraction
    test_share = test_fraction / held_out if held_out else 0.0
    taken = 0
    for rank, index in enumerate(ordered):
        if math.floor((rank + 1) * held_out) > math.floor(rank * held_out):
            # Held-out picks alternate between test and val in proportion.
            is_test = math.floor((taken + 1) * test_share) > math.floor(taken * test_share)
            (split.test if is_test else split.val).append(index)
            taken += 1
        else:
            split.train.append(index)
    return split


def save_split(path: Path, samples: Sequence[Sample], split: Split, info: dict) -> None:
    """Write the split as file lists (relative path and content digest) beside the run."""
    payload = dict(info)
    for name in SPLITS:
        payload[name] = [[samples[i].relpath, samples[i].digest] for i in split.indices(name)]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=1))


@dataclass
class SavedSplit:
    """A split.json as written by `save_split`: the data folder and each part's files."""

    root: Path
    parts: dict[str, list[tuple[str, str]]]  # part -> (relative path, content digest) pairs
    above_range: str = "skip"  # data.above_range the split was made with

    def relpaths(self, *names: str) -> list[str]:
        return [relpath for name in names for relpath, _ in self.parts[name]]


def read_split(path: str | Path) -> SavedSplit:
    """The one reader of split.json files; a missing or damaged file is a SplitMismatchError."""
    path = Path(path)
    if not path.is_file():
        raise SplitMismatchError(
            f"split file {path} not found; pass data.split_file=PATH of a split.json written "
            f"by train.py, or data.root=PATH to use every image of a folder"
        )
    try:
        payload = json.loads(path.read_text())
        parts = {
            name: [(str(relpath), str(digest)) for relpath, digest in payload.get(name, [])]
            for name in SPLITS
        }
        return SavedSplit(Path(payload["root"]), parts, str(payload.get("above_range", "skip")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SplitMismatchError(
            f"split file {path} is damaged ({type(error).__name__}: {error}); pass "
            f"data.split_file=PATH of a split.json written by train.py, or data.root=PATH to "
            f"use every image of a folder"
        ) from error


def read_split_if_present(path: str | Path | None) -> SavedSplit | None:
    """The saved split at `path`, or None when there is none (no path, the file missing or
    damaged): for optional uses, such as checks a model's split enables where it travelled."""
    if not path:
        return None
    try:
        return read_split(path)
    except SplitMismatchError:
        return None


def load_split(path: Path, samples: Sequence[Sample], saved: SavedSplit | None = None) -> Split:
    """Map a saved split (`saved`, if already read from `path`) back onto the discovered
    samples, checking nothing moved."""
    saved = saved or read_split(path)
    by_path = {sample.relpath: index for index, sample in enumerate(samples)}
    lists: dict[str, list[int]] = {}
    for name in SPLITS:
        lists[name] = []
        for relpath, digest in saved.parts[name]:
            index = by_path.get(relpath)
            if index is None or samples[index].digest != digest:
                state = "missing" if index is None else "changed"
                raise SplitMismatchError(
                    f"split file {path} does not match the data folder: '{relpath}' is "
                    f"{state}. Use the data.root the split was made on, or drop "
                    f"data.split_file to make a new split"
                )
            lists[name].append(index)
    return Split(**lists)

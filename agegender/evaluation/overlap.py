"""Which photographs of a folder the model has already seen.

UTKFace ships the same photographs framed several ways (the aligned `UTKFace/` set, the
in-the-wild `crop_part*` sets) under the same file names. Scoring a model on another framing
of its own training photographs measures memory, not accuracy, so an evaluation of a whole
folder leaves out every photograph whose file name or content matches one the checkpoint
trained on or was chosen on (its saved split's train and validation parts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agegender.data.split import read_split_if_present
from agegender.data.utkface import Sample

OVERLAP_CHOICES = ("skip", "keep")
SEEN_PARTS = ("train", "val")


@dataclass(frozen=True)
class SeenPhotographs:
    """File names and content digests of the photographs a checkpoint learned from."""

    split_file: Path
    names: frozenset[str]
    digests: frozenset[str]

    def has_seen(self, sample: Sample) -> bool:
        return PurePosixPath(sample.relpath).name in self.names or sample.digest in self.digests


def seen_photographs(meta: dict[str, Any]) -> SeenPhotographs | None:
    """What the checkpoint's saved split says it trained and was validated on; None when it
    names no split or the split file is not on this machine (nothing can be checked)."""
    split_file = meta.get("split_file")
    saved = read_split_if_present(split_file)
    if saved is None:
        return None
    pairs = [pair for part in SEEN_PARTS for pair in saved.parts[part]]
    return SeenPhotographs(
        split_file=Path(split_file),
        names=frozenset(PurePosixPath(relpath).name for relpath, _ in pairs),
        digests=frozenset(digest for _, digest in pairs),
    )


@dataclass
class OverlapCheck:
    """The outcome in words, for the report, and the indices left to score."""

    kept: list[int]
    note: str


def leave_out_seen(samples: Sequence[Sample], meta: dict[str, Any], keep: bool) -> OverlapCheck:
    """Indices of `samples` to score: all of them with `keep`; otherwise those the
    checkpoint has not seen (see the module's docstring)."""
    everything = list(range(len(samples)))
    seen = seen_photographs(meta)
    if seen is None:
        return OverlapCheck(everything, "not checked against training photographs (no split file)")
    unseen = [i for i in everything if not seen.has_seen(samples[i])]
    hits = len(samples) - len(unseen)
    if not hits:
        return OverlapCheck(everything, "none of these photographs was trained on")
    if keep:
        return OverlapCheck(
            everything, f"{hits} of these photographs were trained on (kept: overlap=keep)"
        )
    return OverlapCheck(
        unseen,
        f"{hits} photographs left out: the model trained or was validated on them "
        f"({seen.split_file}; overlap=keep scores them too)",
    )

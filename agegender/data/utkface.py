"""UTKFace file names and folder discovery.

UTKFace labels live in the file name: `{age}_{gender}_{race}_{datetime}.jpg`, also shipped as
`....jpg.chip.jpg` (aligned crops) and sometimes as PNG. Discovery walks the folder
recursively (the Kaggle archives nest folders), skips and counts what it cannot use, and
drops byte-identical copies (some archives ship the same images twice), so that no image can
sit on both sides of the split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from agegender.errors import UserError
from agegender.io import write_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ABOVE_RANGE = ("skip", "train")  # data.above_range: faces older than the age range
NAME_PATTERN = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<stamp>\d{1,20})"
    r"\.(?:jpe?g|png)(?:\.chip\.(?:jpe?g|png))?$",
    re.IGNORECASE,
)
DOWNLOAD_HELP = (
    "Download UTKFace (e.g. Kaggle 'jangedoo/utkface-new', or the 'Aligned&Cropped Faces' "
    "archive UTKFace.tar.gz), unpack it and pass data.root=PATH to the folder holding files "
    "like 'PATH/UTKFace/26_0_2_20170104023102422.jpg.chip.jpg' (sub-folders are fine). "
    "Or try the built-in synthetic data: data=synthetic"
)


class DatasetError(UserError):
    """The data folder is missing or holds no usable image."""


class MalformedNameError(ValueError):
    """A file name that does not follow the UTKFace naming scheme."""


@dataclass(frozen=True)
class FaceLabel:
    age: int
    gender: int  # 0 = male, 1 = female
    race: int  # 0..4 = White, Black, Asian, Indian, Others


def parse_name(name: str) -> FaceLabel:
    """Labels from a UTKFace file name; raises MalformedNameError when it does not fit."""
    match = NAME_PATTERN.match(name)
    if match is None:
        raise MalformedNameError(f"'{name}' is not '{{age}}_{{gender}}_{{race}}_{{date}}.jpg'")
    return FaceLabel(int(match["age"]), int(match["gender"]), int(match["race"]))


@dataclass(frozen=True)
class Sample:
    """One usable image: its path relative to the data root, labels and content digest."""

    relpath: str
    age: int
    gender: int
    race: int
    digest: str


@dataclass
class Discovery:
    root: Path
    samples: list[Sample]
    skipped: Counter = field(default_factory=Counter)
    # faces older than the age range, kept for training only (above_range="train"), each
    # labelled with the range's top age
    above: list[Sample] = field(default_factory=list)


def summary_lines(root: Path, usable: int, skipped: dict[str, int]) -> list[str]:
    """One line for the usable count, then one per skip reason."""
    lines = [f"{root}: {usable} usable images"]
    return lines + [f"skipped {count} ({reason})" for reason, count in sorted(skipped.items())]


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


class DigestIndex:
    """Content digests remembered by (size, mtime), so later runs need not re-read images."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        self.changed = False
        if path is not None and path.is_file():
            try:
                self.entries = json.loads(path.read_text())
            except (OSError, ValueError):
                self.entries = {}  # a damaged index only costs a re-hash

    def digest(self, file: Path, relpath: str, stat: os.stat_result) -> str:
        key = [stat.st_size, stat.st_mtime_ns]
        known = self.entries.get(relpath)
        if known is not None and known[:2] == key:
            return known[2]
        value = hashlib.blake2b(file.read_bytes(), digest_size=16).hexdigest()
        self.entries[relpath] = [*key, value]
        self.changed = True
        return value

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of its own: concurrent first runs on one folder each save whole.
        write_atomic(self.path, json.dumps(self.entries))


def walk_files(root: Path, skipped: Counter) -> list[Path]:
    """Every file under root (following folder links), sorted; unreadable folders and
    links that loop back to a folder already walked are skipped and counted."""
    files: list[Path] = []
    visited: set[str] = set()

    def unreadable(error: OSError) -> None:
        skipped["unreadable folder"] += 1

    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            skipped["folder link to a folder already walked"] += 1
            subfolders[:] = []  # do not descend a second time
            continue
        visited.add(real)
        files.extend(Path(folder) / name for name in names)
    return sorted(files)


def root_folder(root: str | Path) -> Path:
    """data.root as a folder path; DatasetError (with where to get UTKFace) when it is not one."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data.root={root} does not exist or is not a folder. {DOWNLOAD_HELP}")
    return root


def discover(
    root: str | Path,
    age_range: tuple[int, int] = (1, 80),
    digest_index: Path | None = None,
    above_range: str = "skip",
) -> Discovery:
    """All usable UTKFace images under root (recursive), deduplicated by content.

    Skips and counts: non-image files, malformed names, ages outside age_range, empty and
    unreadable files, unreadable folders, folder links that loop, and duplicates. Decoding
    (and so corrupt images) is checked later, by the image cache. With above_range="train",
    faces older than the range are kept apart (`Discovery.above`), labelled with its top age.
    """
    if above_range not in ABOVE_RANGE:
        raise DatasetError(f"data.above_range={above_range}: choose skip or train")
    root = root_folder(root)
    index = DigestIndex(digest_index)
    skipped: Counter = Counter()
    samples: list[Sample] = []
    above: list[Sample] = []
    seen: set[str] = set()
    low, high = age_range
    for path in walk_files(root, skipped):
        name = path.name
        if name.startswith("."):
            continue  # our own markers and OS litter, not data
        if not _is_image_name(name):
            skipped["not an image file"] += 1
            continue
        try:
            label = parse_name(name)
        except MalformedNameError:
            skipped["malformed file name"] += 1
            continue
        older = label.age > high and above_range == "train"
        if not low <= label.age <= high and not older:
            skipped[f"age outside {low}-{high}"] += 1
            continue
        relpath = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
            if stat.st_size == 0:
                skipped["empty file"] += 1
                continue
            digest = index.digest(path, relpath, stat)
        except OSError:  # no permission, a dangling link, a file that vanished
            skipped["unreadable file"] += 1
            continue
        if older:  # checked for duplicates after the walk
            above.append(Sample(relpath, high, label.gender, label.race, digest))
            continue
        if digest in seen:
            skipped["duplicate image"] += 1
            continue
        seen.add(digest)
        samples.append(Sample(relpath, label.age, label.gender, label.race, digest))
    index.save()
    # a face within the range wins over its copy above it, so the faces within the range
    # (and their split) are those that above_range="skip" finds
    kept: list[Sample] = []
    for sample in above:
        if sample.digest in seen:
            skipped["duplicate image"] += 1
            continue
        seen.add(sample.digest)
        kept.append(sample)
    above = kept
    if not samples:
        raise DatasetError(
            f"data.root={root} holds no usable UTKFace image "
            f"({', '.join(f'{n} {r}' for r, n in skipped.items()) or 'no files'}). {DOWNLOAD_HELP}"
        )
    return Discovery(root=root, samples=samples, skipped=skipped, above=above)


def check_root(root: str | Path) -> None:
    """Stop at once on a data.root that is not a folder or holds no UTKFace-named image, before
    a training run loads its weights; discover() does the full scan later."""
    root = root_folder(root)
    for path in walk_files(root, Counter()):
        if not path.name.startswith(".") and _is_image_name(path.name):
            try:
                parse_name(path.name)
                return
            except MalformedNameError:
                continue
    raise DatasetError(
        f"data.root={root} holds no image named the UTKFace way "
        f"(AGE_GENDER_RACE_DATE.jpg). {DOWNLOAD_HELP}"
    )


# Age bands for stratified splitting and for the evaluation breakdowns.
AGE_BANDS = ((0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 80))


def age_band(age: int) -> str:
    """Name of the band holding `age`, e.g. '20-29'; ages above the last band give '81+'."""
    for low, high in AGE_BANDS:
        if low <= age <= high:
            return f"{low}-{high}"
    return f"{AGE_BANDS[-1][1] + 1}+"

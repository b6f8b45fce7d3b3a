"""The images an evaluation runs on: a run's saved split, or a whole UTKFace-format folder.

Both go through the data pipeline's discovery and decode-once store at the model's image
size, so evaluation sees the pixels training saw, and a saved split that no longer matches
its folder fails with SplitMismatchError instead of silently scoring other images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agegender.data.datamodule import PreparedData, UTKFaceDataModule, prepare
from agegender.data.split import SPLITS, read_split
from agegender.data.utkface import Sample
from agegender.errors import UserError
from agegender.evaluation.overlap import OVERLAP_CHOICES, leave_out_seen
from agegender.faces.crop import LEGACY_FRAMING


class EvalDataError(UserError):
    """No images to evaluate on: no split to use, or an empty selection."""


@dataclass
class EvalSet:
    images: np.ndarray  # uint8 [N, 3, S, S] RGB
    ages: np.ndarray  # int [N]
    genders: np.ndarray  # int [N], 1 = female
    races: np.ndarray  # int [N], 0..4
    relpaths: list[str]
    root: Path
    source: str  # what was evaluated, in words
    framing: str  # how the faces were framed, counted
    overlap: str = ""  # photographs of a whole folder the model had seen, in words

    def __len__(self) -> int:
        return len(self.ages)


def _pick(
    data: PreparedData, indices: list[int], limit: int | None
) -> tuple[list[Sample], Any, str]:
    """The chosen samples, their stored images, and how those faces were framed."""
    chosen = indices[:limit] if limit else indices
    return (
        [data.samples[i] for i in chosen],
        data.store.images[data.rows[chosen]],
        data.framing_of(chosen),
    )


CROP_MODES = ("face", "dataset")


def eval_crop(meta: dict[str, Any], mode: str, match_source: bool = True) -> dict[str, Any] | None:
    """data.crop for evaluation: `face` runs the face path as live does on a photograph (the
    model's own framing, without source matching when `match_source` is False, as live's
    option; square box crops for a model trained without one), `dataset` scores the
    photographs as stored, centre-cropped."""
    if mode not in CROP_MODES:
        raise EvalDataError(f"crop={mode}: choose one of {', '.join(CROP_MODES)}")
    if mode == "dataset":
        return None
    crop = dict(meta.get("crop") or LEGACY_FRAMING.to_dict())
    if not match_source:
        crop.pop("source_eye_px", None)
    return {**crop, "on_miss": "keep"}  # every photograph is scored, misses counted


def load_eval_set(
    meta: dict[str, Any],
    data_cfg: dict[str, Any],
    part: str = "test",
    limit: int | None = None,
    crop: str = "face",
    overlap: str = "skip",
    match_source: bool = True,
) -> EvalSet:
    """Images and labels to evaluate, at the model's image size and age range, framed as
    `crop` says (see eval_crop).

    `data.root` alone: every usable image in that folder, less (`overlap=skip`) those the
    checkpoint trained or was validated on (agegender.evaluation.overlap). Otherwise `part`
    of the saved split (`data.split_file`, else the one the checkpoint was trained with) on
    its own folder.
    """
    if part not in SPLITS:
        raise EvalDataError(f"split={part}: choose one of {', '.join(SPLITS)}")
    if overlap not in OVERLAP_CHOICES:
        raise EvalDataError(f"overlap={overlap}: choose one of {', '.join(OVERLAP_CHOICES)}")
    config = dict(data_cfg)
    config.update(
        image_size=int(meta["image_size"]),
        age_range=list(meta["age_range"]),
        synthetic=None,
        crop=eval_crop(meta, crop, match_source),
    )
    if config.get("root") and not config.get("split_file"):
        data = prepare(config, progress=False)
        check = leave_out_seen(data.samples, meta, keep=overlap == "keep")
        samples, images, framing = _pick(data, check.kept, limit)
        source = f"{len(samples)} usable images in {data.root} ({check.note})"
        overlap_note = check.note
    else:
        split_file = config.get("split_file") or meta.get("split_file")
        if not split_file:
            raise EvalDataError(
                "the checkpoint names no saved split (it was not written by train.py); "
                "pass data.root=PATH to evaluate a UTKFace-format folder"
            )
        config["split_file"] = str(split_file)
        config["root"] = config.get("root") or str(read_split(split_file).root)
        module = UTKFaceDataModule.from_config(config)
        module.setup()
        assert module.data is not None and module.split is not None
        samples, images, framing = _pick(module.data, module.split.indices(part), limit)
        data = module.data
        source = f"{part} split of {split_file} ({len(samples)} images in {data.root})"
        overlap_note = ""
    if not samples:
        raise EvalDataError(f"nothing to evaluate: {source}")
    return EvalSet(
        images=np.ascontiguousarray(images),
        ages=np.array([s.age for s in samples], dtype=np.int64),
        genders=np.array([s.gender for s in samples], dtype=np.int64),
        races=np.array([s.race for s in samples], dtype=np.int64),
        relpaths=[s.relpath for s in samples],
        root=data.root,
        source=source,
        framing=framing,
        overlap=overlap_note,
    )

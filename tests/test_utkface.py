"""UTKFace names and folder discovery: what is kept, what is skipped and why."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.data import utkface
from agegender.data.utkface import (
    DatasetError,
    FaceLabel,
    MalformedNameError,
    age_band,
    discover,
    parse_name,
)


def write_face(path: Path, seed: int = 0, size: int = 48) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("26_0_2_20170104023102422.jpg", FaceLabel(26, 0, 2)),
        ("1_1_4_20161221193016140.jpg.chip.jpg", FaceLabel(1, 1, 4)),
        ("80_1_0_20170110182418835.png", FaceLabel(80, 1, 0)),
        ("116_0_3_20170120134744096.JPG", FaceLabel(116, 0, 3)),
    ],
)
def test_parse_valid_names(name: str, label: FaceLabel) -> None:
    assert parse_name(name) == label


@pytest.mark.parametrize(
    "name",
    [
        "61_1_20170109142408075.jpg.chip.jpg",  # race missing: three such files in UTKFace
        "39_1_20170116174525125.jpg.chip.jpg",
        "abc_0_1_20170101.jpg",
        "26_2_1_20170104023102422.jpg",  # gender must be 0 or 1
        "26_0_5_20170104023102422.jpg",  # race must be 0..4
        "26_0_2_20170104023102422.txt",
        "26_0_2.jpg",
    ],
)
def test_parse_malformed_names(name: str) -> None:
    with pytest.raises(MalformedNameError):
        parse_name(name)


def test_discover_counts_every_skip_reason(tmp_path: Path) -> None:
    write_face(tmp_path / "a" / "26_0_2_20170104023102422.jpg.chip.jpg", seed=1)
    write_face(tmp_path / "b" / "30_1_1_20170104023102423.jpg", seed=2)
    write_face(tmp_path / "61_1_20170109142408075.jpg.chip.jpg", seed=3)  # malformed
    write_face(tmp_path / "85_0_0_20170104023102424.jpg", seed=4)  # above 80
    write_face(tmp_path / "0_0_0_20170104023102425.jpg", seed=5)  # below 1
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "40_0_0_20170104023102426.jpg").write_bytes(b"")  # zero bytes

    found = discover(tmp_path, age_range=(1, 80))

    assert [s.relpath for s in found.samples] == [
        "a/26_0_2_20170104023102422.jpg.chip.jpg",
        "b/30_1_1_20170104023102423.jpg",
    ]
    assert dict(found.skipped) == {
        "malformed file name": 1,
        "age outside 1-80": 2,
        "not an image file": 1,
        "empty file": 1,
    }


def test_duplicate_images_in_two_folders_count_once(tmp_path: Path) -> None:
    original = write_face(tmp_path / "UTKFace" / "26_0_2_20170104023102422.jpg.chip.jpg")
    (tmp_path / "crop_part1").mkdir()
    shutil.copy(original, tmp_path / "crop_part1" / original.name)
    write_face(tmp_path / "UTKFace" / "27_0_2_20170104023102499.jpg.chip.jpg", seed=9)

    found = discover(tmp_path)

    assert len(found.samples) == 2
    assert found.skipped["duplicate image"] == 1
    assert len({s.digest for s in found.samples}) == 2


def test_digest_index_spares_rereading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    face = write_face(data / "26_0_2_20170104023102422.jpg")
    index = tmp_path / "digests.json"
    first = discover(data, digest_index=index).samples[0].digest
    assert index.is_file()

    def no_hashing(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unchanged file was hashed again")

    # Same size and mtime: the remembered digest is used without hashing the file.
    monkeypatch.setattr(utkface.hashlib, "blake2b", no_hashing)
    assert discover(data, digest_index=index).samples[0].digest == first
    # A changed file is hashed again.
    write_face(face, seed=5)
    with pytest.raises(AssertionError, match="hashed again"):
        discover(data, digest_index=index)


def test_missing_root_explains_layout_and_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as error:
        discover(tmp_path / "nowhere")
    message = str(error.value)
    assert "nowhere" in message and "data.root=PATH" in message
    assert "Kaggle" in message and "data=synthetic" in message


def test_folder_without_usable_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    write_face(tmp_path / "not_a_utkface_name.jpg")
    with pytest.raises(DatasetError, match="no usable UTKFace image"):
        discover(tmp_path)


def test_training_checks_the_folder_before_loading_the_model(tmp_path: Path) -> None:
    from agegender.configs import compose_config
    from agegender.training import run_phase

    (tmp_path / "data").mkdir()
    write_face(tmp_path / "data" / "not_a_utkface_name.jpg")
    # weights the run could never load: the folder is named first
    cfg = compose_config(
        "train",
        "phase=frozen",
        f"data.root={tmp_path / 'data'}",
        f"model.weights={tmp_path / 'missing.pth'}",
        f"outputs_dir={tmp_path / 'out'}",
    )
    with pytest.raises(DatasetError, match="no image named the UTKFace way"):
        run_phase(cfg, tmp_path / "out" / "frozen" / "run")
    write_face(tmp_path / "data" / "deep" / "26_0_2_20170104023102422.jpg.chip.jpg")
    utkface.check_root(tmp_path / "data")  # one usable name anywhere below is enough


@pytest.mark.parametrize(
    ("age", "band"), [(1, "0-2"), (2, "0-2"), (3, "3-9"), (29, "20-29"), (80, "70-80"), (95, "81+")]
)
def test_age_bands(age: int, band: str) -> None:
    assert age_band(age) == band

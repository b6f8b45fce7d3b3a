"""Tests for the synthetic UTKFace-format face generator."""

from __future__ import annotations

import json
import re
import socket
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

import agegender.data.synthetic as synthetic
from agegender.data.synthetic import (
    generate_dataset,
    render_face,
    sample_labels,
    synthetic_file_name,
)

UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d{17})\.jpg\.chip\.jpg$")


def _images(root: Path) -> list[Path]:
    return sorted(root.glob("*.jpg.chip.jpg"))


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "faces"
    return generate_dataset(root, 30, seed=3, image_size=64, progress=False)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", 10, seed=5, image_size=48, progress=False)
    b = generate_dataset(tmp_path / "b", 10, seed=5, image_size=48, progress=False)
    c = generate_dataset(tmp_path / "c", 10, seed=6, image_size=48, progress=False)
    names_a = [p.name for p in _images(a)]
    assert len(names_a) == 10
    assert names_a == [p.name for p in _images(b)]
    assert [p.read_bytes() for p in _images(a)] == [p.read_bytes() for p in _images(b)]
    assert names_a != [p.name for p in _images(c)]
    assert {p.read_bytes() for p in _images(a)}.isdisjoint(p.read_bytes() for p in _images(c))


def test_render_face_is_deterministic_by_rng() -> None:
    one = render_face(40, 1, 2, np.random.default_rng(7), size=64)
    two = render_face(40, 1, 2, np.random.default_rng(7), size=64)
    other = render_face(40, 1, 2, np.random.default_rng(8), size=64)
    assert one.shape == (64, 64, 3) and one.dtype == np.uint8
    np.testing.assert_array_equal(one, two)
    assert not np.array_equal(one, other)


def test_names_parse_as_utkface(small_dataset: Path) -> None:
    files = _images(small_dataset)
    assert len(files) == 30
    assert len({p.name for p in files}) == 30
    for p in files:
        m = UTK_NAME.match(p.name)
        assert m, p.name
        age, gender, race, stamp = int(m[1]), int(m[2]), int(m[3]), m[4]
        assert 1 <= age <= 116 and gender in (0, 1) and 0 <= race <= 4
        datetime.strptime(stamp[:14], "%Y%m%d%H%M%S")  # a real date, UTKFace style
    meta = json.loads((small_dataset / ".complete").read_text())
    assert meta["count"] == 30 and meta["seed"] == 3 and meta["image_size"] == 64


def test_file_names_unique_per_index() -> None:
    names = {synthetic_file_name(27, 1, 2, i, seed=0) for i in range(5000)}
    assert len(names) == 5000
    assert UTK_NAME.match(synthetic_file_name(27, 1, 2, 0, seed=123456))
    assert synthetic_file_name(27, 1, 2, 3, 0) != synthetic_file_name(27, 1, 2, 3, 1)


def test_age_gender_race_distribution() -> None:
    labels = np.array(sample_labels(4000, np.random.default_rng(0)))
    ages, genders, races = labels[:, 0], labels[:, 1], labels[:, 2]
    assert ages.min() >= 1 and ages.max() <= 116
    assert 0.07 < np.mean(ages < 5) < 0.13  # bump of babies and toddlers
    assert 0.34 < np.mean((ages >= 20) & (ages <= 35)) < 0.46  # main peak
    assert 0.004 < np.mean(ages > 80) < 0.02  # a few for the age-range filter
    assert np.mean(ages <= 80) > 0.97
    assert 0.42 < genders.mean() < 0.56
    shares = np.bincount(races, minlength=5) / len(races)
    np.testing.assert_allclose(shares, [0.42, 0.19, 0.14, 0.17, 0.08], atol=0.03)


def test_images_decode_with_requested_size(small_dataset: Path) -> None:
    for p in _images(small_dataset)[:10]:
        img = cv2.imread(str(p))
        assert img is not None and img.shape == (64, 64, 3)
        assert img.std() > 10  # not a constant image


def _gender_cues(gender: int, age: int, n: int = 40, size: int = 96) -> tuple[float, float]:
    """Mean darkness beside the neck (where long hair falls) and chin/nose luminance ratio."""
    side, chin = [], []
    r0, r1 = int(0.68 * size), int(0.95 * size)
    for i in range(n):
        rgb = render_face(age, gender, i % 5, np.random.default_rng([gender, age, i]), size)
        lum = rgb.astype(np.float32).mean(axis=2)
        left, right = (
            slice(int(0.1 * size), int(0.3 * size)),
            slice(int(0.7 * size), int(0.9 * size)),
        )
        beside = np.concatenate([lum[r0:r1, left], lum[r0:r1, right]], 1)
        side.append(255.0 - beside.mean())
        lower = lum[int(0.78 * size) : int(0.86 * size), int(0.42 * size) : int(0.58 * size)]
        nose = lum[int(0.52 * size) : int(0.6 * size), int(0.42 * size) : int(0.58 * size)]
        chin.append(lower.mean() / nose.mean())
    return float(np.mean(side)), float(np.mean(chin))


def test_gender_cues_differ_on_average() -> None:
    male_side, male_chin = _gender_cues(0, 30)
    female_side, female_chin = _gender_cues(1, 30)
    assert female_side > male_side + 20  # long hair falls beside the neck
    assert male_chin < female_chin - 0.2  # beard/stubble shades the lower face
    boy_side, _ = _gender_cues(0, 8, n=30)
    girl_side, _ = _gender_cues(1, 8, n=30)
    assert girl_side > boy_side + 20  # children: mostly via hair length


def test_age_cues_grey_hair() -> None:
    """Hair in the top band of the image turns grey/white with age (low saturation, bright)."""

    def top_band_saturation(age: int) -> float:
        sats = []
        for i in range(30):
            rgb = render_face(age, i % 2, i % 5, np.random.default_rng([age, i]), 64)
            hsv = cv2.cvtColor(rgb[4:14, 22:42], cv2.COLOR_RGB2HSV).astype(np.float32)
            sats.append(hsv[..., 2].mean() - hsv[..., 1].mean())  # bright minus saturation
        return float(np.mean(sats))

    assert top_band_saturation(75) > top_band_saturation(25) + 30


def test_second_call_is_a_noop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = generate_dataset(tmp_path / "d", 6, seed=1, image_size=32, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    dir_mtime = root.stat().st_mtime_ns

    def boom(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("must not render again")

    monkeypatch.setattr(synthetic, "render_face", boom)
    assert generate_dataset(root, 6, seed=1, image_size=32, progress=False) == root
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before
    assert root.stat().st_mtime_ns == dir_mtime


def test_changed_arguments_regenerate(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", 4, seed=1, image_size=32, progress=False)
    generate_dataset(root, 7, seed=1, image_size=32, progress=False)
    assert len(_images(root)) == 7
    assert json.loads((root / ".complete").read_text())["count"] == 7


def test_interrupted_build_is_not_taken_as_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "faces"
    real = synthetic.render_face
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_face", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(root, 8, seed=2, image_size=32, progress=False)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder was cleaned up
    monkeypatch.setattr(synthetic, "render_face", real)

    # A hard kill leaves the temp folder (even with a marker inside): it must not count.
    stale = tmp_path / f".faces.partial-{socket.gethostname()}-999999999-deadbeef"
    stale.mkdir()
    (stale / "1_0_0_20170101000000000.jpg.chip.jpg").write_bytes(b"half")
    meta = {"count": 8, "seed": 2, "image_size": 32, "jpeg_quality": 90}
    meta["version"] = synthetic.GENERATOR_VERSION
    (stale / ".complete").write_text(json.dumps(meta))
    generate_dataset(root, 8, seed=2, image_size=32, progress=False)
    files = _images(root)
    assert len(files) == 8 and all(cv2.imread(str(p)) is not None for p in files)
    assert not stale.exists()  # its process is gone, so it was cleaned up


def test_unmarked_folder_is_rebuilt_and_foreign_folder_is_kept(tmp_path: Path) -> None:
    half = tmp_path / "half"
    half.mkdir()
    (half / "5_1_0_20170101000000000.jpg.chip.jpg").write_bytes(b"x")
    generate_dataset(half, 3, seed=0, image_size=32, progress=False)
    assert len(_images(half)) == 3 and (half / ".complete").exists()

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate_dataset(foreign, 3, seed=0, image_size=32, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_progress_bar_runs(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "p", 2, seed=0, image_size=32, progress=True)
    assert len(_images(root)) == 2

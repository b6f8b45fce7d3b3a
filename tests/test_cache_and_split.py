"""Decode-once store and the stratified split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agegender.data.cache import open_or_build, store_key
from agegender.data.datamodule import UTKFaceDataModule, prepare
from agegender.data.split import SplitMismatchError, load_split, make_split, save_split
from agegender.data.utkface import Sample, age_band, discover
from tests.test_utkface import write_face


def data_config(root: Path, cache: Path, **extra) -> dict:
    config = {
        "root": str(root),
        "cache_dir": str(cache),
        "image_size": 32,
        "age_range": [1, 80],
        "split": {"val": 0.1, "test": 0.1, "seed": 0},
        "batch_size": 8,
        "num_workers": 0,
        "augment": {"hflip": True},
    }
    config.update(extra)
    return config


def small_folder(root: Path, count: int = 30) -> Path:
    for index in range(count):
        age = 1 + (index * 7) % 79
        write_face(root / f"{age}_{index % 2}_{index % 5}_2017010402310{index:04d}.jpg", seed=index)
    return root


def test_corrupt_image_is_skipped_and_counted(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 10)
    (root / "33_1_0_20170104023109999.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    prepared = prepare(data_config(root, tmp_path / "cache"), progress=False)
    assert len(prepared.samples) == 10
    assert prepared.skipped == {"unreadable or corrupt image": 1}
    assert all(s.relpath != "33_1_0_20170104023109999.jpg" for s in prepared.samples)


def test_store_is_reused_and_decodes_nothing_the_second_time(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 12)
    samples = discover(root).samples
    first = open_or_build(root, samples, 32, tmp_path / "cache", progress=False)
    second = open_or_build(root, samples, 32, tmp_path / "cache", progress=False)
    assert first.decoded == 12 and second.decoded == 0
    assert np.array_equal(np.asarray(first.images), np.asarray(second.images))
    assert second.images.shape == (12, 3, 32, 32)
    # Another size is another store.
    assert open_or_build(root, samples, 16, tmp_path / "cache", progress=False).decoded == 12


def test_half_written_store_is_never_used(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 6)
    samples = discover(root).samples
    cache = tmp_path / "cache"
    cache.mkdir()
    key = store_key(samples, 32)
    # What an interrupted build leaves: the array, but no metadata marking it complete.
    np.save(cache / f"images-{key}.npy", np.zeros((6, 3, 32, 32), dtype=np.uint8))
    store = open_or_build(root, samples, 32, cache, progress=False)
    assert store.decoded == 6
    assert np.asarray(store.images).any(), "the zero-filled partial array was used"


def samples_for(ages_genders: list[tuple[int, int]]) -> list[Sample]:
    return [
        Sample(f"{age}_{gender}_0_{i:017d}.jpg", age, gender, 0, f"d{i}")
        for i, (age, gender) in enumerate(ages_genders)
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 80), st.integers(0, 1)), min_size=1, max_size=300),
    st.integers(0, 10),
)
def test_split_is_a_deterministic_partition(pairs: list[tuple[int, int]], seed: int) -> None:
    samples = samples_for(pairs)
    split = make_split(samples, 0.1, 0.1, seed)
    assert split == make_split(samples, 0.1, 0.1, seed)
    everything = split.train + split.val + split.test
    assert sorted(everything) == list(range(len(samples)))
    n = len(samples)
    assert abs(len(split.test) - 0.1 * n) <= 1 and abs(len(split.val) - 0.1 * n) <= 1


def test_split_is_stratified_by_age_band_and_gender() -> None:
    rng = np.random.default_rng(0)
    pairs = [
        (int(a), int(g))
        for a, g in zip(rng.integers(1, 81, 2000), rng.integers(0, 2, 2000), strict=True)
    ]
    samples = samples_for(pairs)
    split = make_split(samples, 0.1, 0.1, seed=3)
    strata = {(age_band(s.age), s.gender) for s in samples}
    for stratum in strata:
        members = [i for i, s in enumerate(samples) if (age_band(s.age), s.gender) == stratum]
        in_test = len(set(members) & set(split.test))
        assert abs(in_test - 0.1 * len(members)) <= 2, stratum
    assert make_split(samples, 0.1, 0.1, seed=4).test != split.test


def test_duplicates_never_land_on_both_sides(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 20)
    copy = root / "copy"
    copy.mkdir()
    for file in list(root.glob("*.jpg"))[:10]:
        (copy / file.name).write_bytes(file.read_bytes())
    module = UTKFaceDataModule(**data_config(root, tmp_path / "cache"), split_dir=tmp_path / "run")
    module.setup("fit")
    digests = {
        name: {s.digest for s in module.samples_of(name)} for name in ("train", "val", "test")
    }
    assert sum(len(d) for d in digests.values()) == 20
    assert not digests["train"] & digests["test"] and not digests["train"] & digests["val"]
    assert module.data.skipped["duplicate image"] == 10


def test_saved_split_round_trips_and_detects_changed_folders(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 20)
    module = UTKFaceDataModule(**data_config(root, tmp_path / "cache"), split_dir=tmp_path / "run")
    module.setup("fit")
    split_file = tmp_path / "run" / "split.json"
    saved = json.loads(split_file.read_text())
    assert len(saved["train"]) + len(saved["val"]) + len(saved["test"]) == 20
    assert load_split(split_file, module.data.samples) == module.split

    victim = root / saved["test"][0][0]
    victim.unlink()
    with pytest.raises(SplitMismatchError, match="missing"):
        load_split(split_file, discover(root).samples)


def test_save_split_writes_atomically(tmp_path: Path) -> None:
    samples = samples_for([(20, 0), (30, 1), (40, 0)])
    save_split(tmp_path / "split.json", samples, make_split(samples, 0.0, 0.0), {"root": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"]


def test_batches_are_uint8_images_with_float_targets(tmp_path: Path) -> None:
    root = small_folder(tmp_path / "data", 20)
    module = UTKFaceDataModule(**data_config(root, tmp_path / "cache"))
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].dtype.is_floating_point is False
    assert tuple(batch["image"].shape[1:]) == (3, 32, 32)
    assert batch["age"].dtype.is_floating_point and batch["gender"].dtype.is_floating_point
    assert module.baseline_mae("test") > 0


def test_the_store_is_keyed_by_crop_settings_and_counts_how_faces_were_framed(
    tmp_path: Path,
) -> None:
    """The face path runs while the store is built: real faces are aligned, a photograph with
    no face is centre-cropped (keep) or dropped (skip), and other settings are other stores."""
    import cv2
    from skimage import data

    from agegender.faces.crop import Framing
    from agegender.faces.photo import PhotoCrop

    root = tmp_path / "data"
    root.mkdir()
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    for index, angle in enumerate((0, 8, -8)):
        matrix = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
        photo = cv2.warpAffine(astronaut, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(root / f"35_1_0_2017010402310{index:04d}.jpg"), photo)
    small_folder(root, 2)  # noise: no face to find
    samples = discover(root).samples
    cache = tmp_path / "cache"
    kept = open_or_build(root, samples, 32, cache, progress=False, crop=PhotoCrop())
    assert kept.outcome_counts() == {"aligned": 3, "box": 0, "centre": 2, "unreadable": 0}
    assert kept.valid.all()
    skipped = open_or_build(
        root, samples, 32, cache, progress=False, crop=PhotoCrop(on_miss="skip")
    )
    assert skipped.valid.sum() == 3 and skipped.path != kept.path
    plain = open_or_build(root, samples, 32, cache, progress=False)
    margin = open_or_build(root, samples, 32, cache, False, crop=PhotoCrop(Framing(margin=0.3)))
    assert len({kept.path, skipped.path, plain.path, margin.path}) == 4
    faces = [i for i, s in enumerate(samples) if s.age == 35]
    # the same photograph framed two ways: different pixels
    assert not np.array_equal(kept.images[faces[0]], plain.images[faces[0]])
    again = open_or_build(root, samples, 32, cache, progress=False, crop=PhotoCrop())
    assert again.decoded == 0 and again.outcomes == kept.outcomes
    # prepare() reports the framing in the data summary
    summary = prepare(data_config(root, cache, crop={"on_miss": "keep"}), progress=False)
    assert "3 aligned on landmarks" in summary.framing and "2 with no face found" in summary.framing


def test_faces_older_than_the_range_train_at_its_top_and_stay_out_of_val_and_test(
    tmp_path: Path,
) -> None:
    root = small_folder(tmp_path / "data", 30)
    for index in range(6):
        name = f"{85 + index * 5}_{index % 2}_0_2017010500000{index:04d}.jpg"
        write_face(root / name, seed=100 + index)
    # a copy of a face within the range, named older (and read first): the one within wins
    shutil.copy(root / "8_1_1_20170104023100001.jpg", root / "100_1_1_20170105000009999.jpg")
    skipping = UTKFaceDataModule(**data_config(root, tmp_path / "cache"))
    skipping.setup()
    assert len(skipping.data.samples) == 30 and skipping.data.train_only == 0
    assert skipping.data.skipped == {"age outside 1-80": 7}

    config = data_config(root, tmp_path / "cache", above_range="train")
    training = UTKFaceDataModule(**config, split_dir=tmp_path / "run")
    training.setup()
    assert training.data.train_only == 6 and len(training.data.samples) == 36
    assert training.data.skipped == {"duplicate image": 1}
    older = training.data.samples[30:]
    assert {s.age for s in older} == {80} and all(int(s.relpath.split("_")[0]) > 80 for s in older)

    def names(module: UTKFaceDataModule, part: str) -> list[str]:
        return [module.data.samples[i].relpath for i in module.split.indices(part)]

    # the faces within the range split exactly as they do without the older ones
    assert names(training, "val") == names(skipping, "val")
    assert names(training, "test") == names(skipping, "test")
    assert names(training, "train") == names(skipping, "train") + [s.relpath for s in older]
    assert (training.datasets["train"].ages[-6:] == 80).all()

    # the saved split carries the choice: a module given it (eval's, say) finds the same faces
    split_file = str(tmp_path / "run" / "split.json")
    reloaded = UTKFaceDataModule(**data_config(root, tmp_path / "cache", split_file=split_file))
    reloaded.setup()
    assert reloaded.split == training.split and reloaded.data.train_only == 6

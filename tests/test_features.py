"""Frozen-phase feature cache: same metrics as the full pass, keyed, atomic, built once."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from agegender.bench.workload import torch_threads
from agegender.configs import compose_config
from agegender.data.cache import ImageStore, open_or_build
from agegender.data.features import EmbeddingDataset, FeatureCacheError, open_or_build_features
from agegender.data.synthetic import generate_dataset
from agegender.data.utkface import discover
from agegender.model import AgeGenderNet
from agegender.scenes import calibrate_batchnorm
from agegender.training import run_phase

SIZE = 32  # MobileNetV2 still works (1x1 at the end); a quarter of the compute of 64 px


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Two OpenMP threads on a shared two-core CPU wait on each other at every operator.
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("feature-faces") / "faces"
    return generate_dataset(folder, 80, seed=3, image_size=64, progress=False)


def calibrated_net(images: np.ndarray, seed: int = 0) -> AgeGenderNet:
    """A random backbone whose BatchNorm statistics fit these images.

    With default statistics a random MobileNetV2 gives nearly the same features for every
    image; fitted ones make the features depend on the face, as ImageNet weights do.
    """
    torch.manual_seed(seed)
    net = AgeGenderNet()
    net.freeze_blocks(None)
    calibrate_batchnorm(net, torch.from_numpy(np.array(images)))
    return net.eval()


@pytest.fixture(scope="module")
def store(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> ImageStore:
    folder = tmp_path_factory.mktemp("store")
    return open_or_build(faces, discover(faces).samples, SIZE, folder, progress=False)


@pytest.fixture(scope="module")
def net(store: ImageStore) -> AgeGenderNet:
    return calibrated_net(store.images[:32])


@pytest.fixture(scope="module")
def backbone_file(net: AgeGenderNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The calibrated backbone as a torchvision state dict, for model.weights=PATH."""
    path = tmp_path_factory.mktemp("backbone") / "mobilenet_v2_calibrated.pth"
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, path)
    return path


def tiny_run(faces: Path, weights: Path, out: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "train",
        "phase=frozen",
        f"model.weights={weights}",
        "logger=none",
        "callbacks.plots=false",
        f"data.root={faces}",
        f"data.image_size={SIZE}",
        "data.batch_size=16",
        "data.num_workers=0",
        f"data.cache_dir={out / 'cache'}",
        f"outputs_dir={out}",
        "trainer.max_epochs=2",
        "++trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        *overrides,
    )


def test_cached_frozen_training_gives_the_same_metrics_as_the_full_pass(
    faces: Path, backbone_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No flip: both paths then see identical inputs, shuffles and dropout masks.
    overrides = ("data.augment.hflip=false",)
    with caplog.at_level(logging.INFO, logger="agegender"):
        full = run_phase(
            tiny_run(faces, backbone_file, tmp_path, *overrides, "data.feature_cache=false"),
            tmp_path / "full",
        )
        assert "feature cache on" not in caplog.text
        cached = run_phase(
            tiny_run(faces, backbone_file, tmp_path, *overrides, "data.feature_cache=true"),
            tmp_path / "cached",
        )
        assert "feature cache on" in caplog.text
    assert cached["best_val_age_mae"] == pytest.approx(full["best_val_age_mae"], abs=1e-4)
    assert cached["test"].keys() == full["test"].keys()
    for name, value in full["test"].items():
        assert cached["test"][name] == pytest.approx(value, abs=1e-4), name
    # Same heads after the same steps: the cache changed where features come from, nothing else.
    heads = [
        torch.load(run["last_checkpoint"], weights_only=True)["state_dict"]
        for run in (full, cached)
    ]
    for name in ("net.neck.0.weight", "net.age_head.weight", "net.gender_head.bias"):
        torch.testing.assert_close(heads[1][name], heads[0][name], atol=1e-5, rtol=1e-4)


def test_features_equal_the_network_on_plain_and_flipped_images(
    store: ImageStore, net: AgeGenderNet, tmp_path: Path
) -> None:
    features = open_or_build_features(net, store, tmp_path, flip=True, progress=False)
    plain = np.load(features.paths["plain"])
    flipped = np.load(features.paths["flip"])
    images = torch.from_numpy(np.array(store.images[:8]))
    with torch.no_grad():
        np.testing.assert_allclose(plain[:8], net.embed(images).numpy(), atol=1e-4)
        np.testing.assert_allclose(flipped[:8], net.embed(images.flip(-1)).numpy(), atol=1e-4)
    assert not np.allclose(plain[:8], flipped[:8], atol=1e-3)
    assert not np.allclose(plain[0], plain[1], atol=1e-3)  # features depend on the face


def test_random_flip_draws_each_view_per_sample_and_epoch(
    store: ImageStore, net: AgeGenderNet, tmp_path: Path
) -> None:
    features = open_or_build_features(net, store, tmp_path, flip=True, progress=False)
    rows = np.arange(32)
    dataset = EmbeddingDataset(features, rows, np.ones(32), np.zeros(32), random_flip=True)
    plain = np.load(features.paths["plain"])[rows]
    torch.manual_seed(0)
    first = dataset.__getitems__(list(range(32)))["embedding"].numpy()
    second = dataset.__getitems__(list(range(32)))["embedding"].numpy()
    used_plain = np.isclose(first, plain).all(axis=1)
    assert 4 < used_plain.sum() < 28  # about half of each
    assert (used_plain != np.isclose(second, plain).all(axis=1)).any()  # redrawn next time
    unflipped = EmbeddingDataset(features, rows, np.ones(32), np.zeros(32))
    np.testing.assert_array_equal(unflipped.__getitems__(list(range(32)))["embedding"], plain)


def test_cache_is_rebuilt_when_backbone_weights_or_image_size_change(
    faces: Path, store: ImageStore, net: AgeGenderNet, tmp_path: Path
) -> None:
    count = len(store.images)
    first = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    assert first.built == count
    again = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    assert again.built == 0 and again.paths == first.paths

    changed = copy.deepcopy(net)
    with torch.no_grad():
        changed.features[3].conv[1][1].running_var.mul_(1.5)  # a BatchNorm buffer only
    moved = open_or_build_features(changed, store, tmp_path, flip=False, progress=False)
    assert moved.built == count and moved.paths != first.paths

    smaller = open_or_build(faces, discover(faces).samples, SIZE - 8, tmp_path, progress=False)
    resized = open_or_build_features(net, smaller, tmp_path, flip=False, progress=False)
    assert resized.built == count and resized.paths != first.paths
    assert np.load(resized.paths["plain"]).shape == (count, 1280)


def test_half_written_cache_is_never_used(
    store: ImageStore, net: AgeGenderNet, tmp_path: Path
) -> None:
    count = len(store.images)
    good = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    expected = np.load(good.paths["plain"])
    array_path = good.paths["plain"]
    meta_path = array_path.with_suffix(".json")

    # A crash between writing the array and its metadata: no metadata, so rebuilt.
    meta_path.unlink()
    rebuilt = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    assert rebuilt.built == count

    # A crash mid-write leaves only a temp file: ignored, the real file is built anew.
    array_path.unlink()
    meta_path.unlink()
    garbage = np.full((count, 1280), np.nan, dtype=np.float32)
    np.save(array_path.with_name(array_path.name + ".tmp-999"), garbage)
    rebuilt = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    assert rebuilt.built == count
    np.testing.assert_array_equal(np.load(rebuilt.paths["plain"]), expected)

    # A truncated array with its metadata (disk trouble) does not load: rebuilt.
    array_path.write_bytes(array_path.read_bytes()[:1000])
    rebuilt = open_or_build_features(net, store, tmp_path, flip=False, progress=False)
    assert rebuilt.built == count
    np.testing.assert_array_equal(np.load(rebuilt.paths["plain"]), expected)


def test_concurrent_builders_compute_the_features_once(
    store: ImageStore, net: AgeGenderNet, tmp_path: Path
) -> None:
    results = []

    def build() -> None:
        results.append(open_or_build_features(net, store, tmp_path, flip=False, progress=False))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result.built for result in results) == [0, len(store.images)]


def test_other_augmentations_fall_back_to_the_full_pass_with_one_log_line(
    faces: Path, backbone_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = tiny_run(
        faces,
        backbone_file,
        tmp_path,
        "data.augment.color_jitter={brightness:0.2}",
        "debug=fast",
        "test_after_fit=false",
    )
    with caplog.at_level(logging.INFO, logger="agegender"):
        run_phase(cfg, tmp_path / "run")
    lines = [r.message for r in caplog.records if "feature cache" in r.message]
    assert len(lines) == 1 and "color_jitter" in lines[0] and "off" in lines[0], lines
    assert not list((tmp_path / "cache").glob("features-*.npy"))


def test_feature_cache_true_refuses_a_trainable_backbone(
    faces: Path, backbone_file: Path, tmp_path: Path
) -> None:
    cfg = tiny_run(
        faces, backbone_file, tmp_path, "phase.trainable_from=10", "data.feature_cache=true"
    )
    with pytest.raises(FeatureCacheError, match=r"features\[10\]"):
        run_phase(cfg, tmp_path / "run")

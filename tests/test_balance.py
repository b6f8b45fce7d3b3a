"""Age-balanced sampling: weights against hand computations, the loader draws rare ages more
often, and a bad setting is one clear error before any work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from agegender.configs import compose_config
from agegender.data.balance import (
    AgeBalanceError,
    age_weights,
    balance_options,
    balanced_sampler,
    smoothed_age_counts,
)
from agegender.data.datamodule import UTKFaceDataModule
from agegender.data.synthetic import generate_dataset


def test_weights_are_the_inverse_age_counts_raised_to_the_power() -> None:
    ages = [20, 20, 20, 70]
    # counts 3, 3, 3, 1: power 1 gives 1/3, 1/3, 1/3, 1 (mean 1/2), scaled to mean 1
    np.testing.assert_allclose(age_weights(ages, 1.0, 0.0), [2 / 3, 2 / 3, 2 / 3, 2])
    root = 3**-0.5
    expected = np.array([root, root, root, 1.0]) / np.mean([root, root, root, 1.0])
    np.testing.assert_allclose(age_weights(ages, 0.5, 0.0), expected)


def test_smoothing_shares_counts_with_neighbouring_years() -> None:
    ages = [30] * 10 + [31]
    plain, smooth = smoothed_age_counts(ages, 0.0), smoothed_age_counts(ages, 2.0)
    assert plain[31] == 1 and smooth[31] > 1.5  # a year next to a crowded one is not rare
    assert smooth[30] < plain[30]  # and the crowded year lends it some of its count
    assert age_weights(ages, 1.0, 2.0)[-1] < age_weights(ages, 1.0, 0.0)[-1]


def test_the_sampler_draws_a_rare_age_as_often_as_a_common_one() -> None:
    ages = [25] * 90 + [70] * 10
    torch.manual_seed(0)
    sampler = balanced_sampler(ages, {"power": 1.0, "smooth": 0})
    drawn = Counter(ages[i] for _ in range(20) for i in sampler)
    assert len(sampler) == len(ages)
    assert 0.42 < drawn[70] / sum(drawn.values()) < 0.58  # 0.10 without balancing


def test_the_training_log_says_how_much_more_often_the_old_are_drawn(caplog) -> None:
    ages = [25] * 90 + [70] * 10
    with caplog.at_level("INFO", logger="agegender.data.balance"):
        balanced_sampler(ages, {"power": 1.0, "smooth": 0})
        balanced_sampler([5] * 10 + [25] * 10, {"power": 0.5, "smooth": 2})
    first, second = caplog.messages
    # power 1: weights 1/90 against 1/10, so a face of 70 is drawn nine times as often
    assert first.endswith("a face aged 70 or more is drawn 9.0x as often as one in its twenties")
    assert second == "age-balanced sampling (power 0.5, smooth 2 years)"  # no one aged 70+


@pytest.mark.parametrize(
    "setting", [{"power": 0}, {"power": 2}, {"smooth": -1}, {"powr": 0.5}, {"power": "x"}]
)
def test_bad_settings_name_the_option_and_an_example(setting) -> None:
    with pytest.raises(AgeBalanceError, match=r"data.age_balance=.*e\.g\."):
        balance_options(setting)


def test_the_training_loader_samples_by_age_when_asked(tmp_path: Path) -> None:
    faces = generate_dataset(tmp_path / "faces", 60, seed=5, image_size=48, progress=False)
    common = {"root": str(faces), "cache_dir": str(tmp_path / "cache"), "crop": None}
    common |= {"image_size": 32, "batch_size": 8, "augment": None}
    plain = UTKFaceDataModule(**common)
    plain.setup("fit")
    assert not isinstance(plain.train_dataloader().sampler, WeightedRandomSampler)
    balanced = UTKFaceDataModule(**common, age_balance={"power": 0.5, "smooth": 2})
    balanced.setup("fit")
    sampler = balanced.train_dataloader().sampler
    assert isinstance(sampler, WeightedRandomSampler)
    ages = np.array([s.age for s in balanced.samples_of("train")])
    np.testing.assert_allclose(sampler.weights.numpy(), age_weights(ages, 0.5, 2), rtol=1e-6)
    assert balanced.val_dataloader().sampler.__class__.__name__ == "SequentialSampler"


def test_a_bad_setting_stops_training_before_any_work(tmp_path: Path) -> None:
    from agegender.training import run_phase

    cfg = compose_config(
        "train",
        "phase=frozen",
        "data.age_balance={power:3}",
        f"data.root={tmp_path / 'nowhere'}",
        f"outputs_dir={tmp_path}",
    )
    with pytest.raises(AgeBalanceError, match="data.age_balance"):
        run_phase(cfg, tmp_path / "frozen" / "run")
    assert not (tmp_path / "frozen").exists()

"""Learning-rate schedules the module builds from `optim`: cosine annealing and the plateau."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agegender.checkpoint import build_meta
from agegender.model import NetConfig
from agegender.module import AgeGenderModule


def module(optim: dict) -> AgeGenderModule:
    net = NetConfig()
    model = AgeGenderModule(net.to_dict(), build_meta(net, 64, (1, 80), "frozen"), optim=optim)
    model._trainer = SimpleNamespace(max_epochs=4)  # what configure_optimizers reads
    return model


def test_cosine_anneals_from_lr_to_min_lr_over_the_epochs() -> None:
    config = module({"lr": 1e-3, "cosine": {"min_lr": 1e-5}}).configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert schedule["interval"] == "epoch"
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(4):
        optimizer.step()
        schedule["scheduler"].step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))  # falls each epoch
    # halfway, the cosine's midpoint: the mean of the two ends
    assert rates[2] == pytest.approx((1e-3 + 1e-5) / 2)


def test_plateau_watches_the_configured_metric_and_two_schedules_are_refused() -> None:
    config = module({"plateau": {"monitor": "val/age_mae"}}).configure_optimizers()
    assert config["lr_scheduler"]["monitor"] == "val/age_mae"
    assert isinstance(
        config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau
    )
    with pytest.raises(ValueError, match="two schedules"):
        module(
            {"plateau": {"monitor": "val/loss"}, "cosine": {"min_lr": 0.0}}
        ).configure_optimizers()
    assert isinstance(module({}).configure_optimizers(), torch.optim.Adam)

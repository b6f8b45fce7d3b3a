"""How the age and gender losses are summed: fixed weights and learned uncertainty weights,
against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from agegender.checkpoint import build_meta
from agegender.losses import TaskWeighting
from agegender.model import NetConfig
from agegender.module import AgeGenderModule


def test_fixed_weights_sum_the_losses_and_learn_nothing() -> None:
    weighting = TaskWeighting("fixed", w_age=1.0, w_gender=10.0)
    total = weighting(torch.tensor(6.0), torch.tensor(0.3))
    assert total.item() == pytest.approx(6.0 + 3.0)
    assert list(weighting.parameters()) == []


def test_uncertainty_weighting_and_its_gradient_match_a_hand_computation() -> None:
    weighting = TaskWeighting("uncertainty")
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([math.log(4.0), -1.0]))
    age, gender = torch.tensor(6.0, requires_grad=True), torch.tensor(0.3, requires_grad=True)
    total = weighting(age, gender)
    # exp(-s) * L + s for each task
    assert total.item() == pytest.approx(6.0 / 4.0 + math.log(4.0) + math.e * 0.3 - 1.0, rel=1e-6)
    total.backward()
    # d/ds = 1 - exp(-s) L; d/dL = exp(-s)
    expected = [1 - 6.0 / 4.0, 1 - math.e * 0.3]
    assert weighting.log_vars.grad.tolist() == pytest.approx(expected, rel=1e-5)
    assert age.grad.item() == pytest.approx(0.25) and gender.grad.item() == pytest.approx(math.e)
    assert weighting.weights() == pytest.approx((0.25, math.e))


def test_learned_weights_settle_at_one_over_each_loss() -> None:
    # minimising exp(-s) L + s over s gives s = log L: the weight becomes 1 / L
    weighting = TaskWeighting("uncertainty")
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    for _ in range(2000):
        optimizer.zero_grad()
        weighting(torch.tensor(6.0), torch.tensor(0.25)).backward()
        optimizer.step()
    assert weighting.weights() == pytest.approx((1 / 6.0, 4.0), rel=0.02)


def test_an_unknown_weighting_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="loss.weighting must be one of"):
        TaskWeighting("learned")


def test_the_module_trains_the_task_weights_at_their_own_rate() -> None:
    net = NetConfig()
    model = AgeGenderModule(
        net.to_dict(),
        build_meta(net, 64, (1, 80), "frozen"),
        loss={"weighting": "uncertainty", "weighting_lr": 0.02},
        trainable_from=None,
    )
    optimizer = model.configure_optimizers()
    groups = {len(g["params"]): g["lr"] for g in optimizer.param_groups}
    assert groups[1] == pytest.approx(0.02)  # the two log-variances, one tensor
    batch = {
        "image": torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8),
        "age": torch.tensor([5.0, 20.0, 40.0, 70.0]),
        "gender": torch.tensor([0.0, 1.0, 0.0, 1.0]),
    }
    model._step(batch, "train").backward()
    assert model.task_weighting.log_vars.grad is not None
    assert torch.count_nonzero(model.task_weighting.log_vars.grad) == 2

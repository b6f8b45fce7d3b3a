"""The distribution age head (DLDL-v2) against hand computations, and old checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agegender.checkpoint import build_meta, load_checkpoint, save_checkpoint
from agegender.losses import DistributionAgeLoss, soft_age_labels
from agegender.model import AgeGenderNet, NetConfig
from agegender.module import AgeGenderModule

DIST = NetConfig(age_head="distribution", age_bins=(0, 10))


def test_the_prediction_is_the_expectation_of_the_softmax() -> None:
    net = AgeGenderNet(DIST).eval()
    logits = torch.tensor([[0.0] * 11, [5.0] + [0.0] * 10])
    years = net.age_years(logits)
    assert years[0].item() == pytest.approx(5.0)  # uniform over 0..10
    weights = np.array([math.e**5] + [1.0] * 10)
    assert years[1].item() == pytest.approx(float((weights / weights.sum()) @ np.arange(11)))


def test_soft_labels_are_normalised_gaussians_around_the_age() -> None:
    values = torch.arange(0, 11, dtype=torch.float32)
    labels = soft_age_labels(torch.tensor([5.0, 0.0]), values, sigma=2.0)
    expected = np.exp(-((np.arange(11) - 5.0) ** 2) / 8)
    np.testing.assert_allclose(labels[0].numpy(), expected / expected.sum(), rtol=1e-5)
    assert labels.sum(1).numpy() == pytest.approx([1.0, 1.0])
    assert labels[1].argmax().item() == 0  # an age at the edge keeps its mode there


def test_the_loss_and_its_gradient_match_a_hand_computation() -> None:
    values = torch.arange(0, 11, dtype=torch.float32)
    loss_fn = DistributionAgeLoss(values, sigma=2.0, l1=0.5)
    logits = torch.linspace(-1, 1, 11)[None].repeat(2, 1).requires_grad_(True)
    ages = torch.tensor([3.0, 7.0])
    loss = loss_fn(logits, ages)
    loss.backward()

    def by_hand(z: np.ndarray) -> float:
        total = 0.0
        for row, age in zip(z, (3.0, 7.0), strict=True):
            p = np.exp(row - row.max())
            p /= p.sum()
            q = np.exp(-((np.arange(11) - age) ** 2) / 8)
            q /= q.sum()
            total += float((q * (np.log(q) - np.log(p))).sum()) / 2
            total += 0.5 * abs(float(p @ np.arange(11)) - age) / 2
        return total

    z = logits.detach().double().numpy()
    assert loss.item() == pytest.approx(by_hand(z), rel=1e-5)
    step, numeric = 1e-5, np.zeros_like(z)
    for index in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[index] += step
        down[index] -= step
        numeric[index] = (by_hand(up) - by_hand(down)) / (2 * step)
    np.testing.assert_allclose(logits.grad.numpy(), numeric, atol=1e-5)


def test_the_distribution_head_learns_ages_on_fixed_features() -> None:
    """A few hundred steps on separable features bring the expectation near the labels."""
    torch.manual_seed(0)
    net = AgeGenderNet(NetConfig(age_head="distribution", age_bins=(0, 100), dropout=0.0))
    module = AgeGenderModule(net=net.config.to_dict(), meta={}, loss={"w_gender": 0.0})
    module.net.init_age_bias(40.0)
    ages = torch.tensor([10.0, 30.0, 60.0, 80.0])
    embedding = torch.eye(4).repeat(1, 320)  # one direction per age
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    batch = {"embedding": embedding, "age": ages, "gender": torch.zeros(4)}
    for _ in range(300):
        optimizer.zero_grad()
        output, _ = module(batch)
        module.age_loss(output, ages).backward()
        optimizer.step()
    predicted = module.net.age_years(module(batch)[0]).detach()
    np.testing.assert_allclose(predicted.numpy(), ages.numpy(), atol=1.5)


def test_the_initial_bias_starts_the_expectation_near_the_mean() -> None:
    net = AgeGenderNet(NetConfig(age_head="distribution"))
    net.init_age_bias(33.0)
    with torch.no_grad():
        net.age_head.weight.zero_()
        years, _ = net.heads(torch.zeros(1, net.feature_dim))
    assert years.item() == pytest.approx(33.0, abs=1.0)


def test_checkpoints_keep_the_head_and_old_ones_still_load(tmp_path) -> None:
    for config in (DIST, NetConfig()):
        net = AgeGenderNet(config).eval()
        meta = build_meta(config, 32, (1, 80), "frozen")
        if config.age_head == "regression":  # written before the distribution head existed
            meta["net"] = {k: meta["net"][k] for k in ("backbone", "hidden_units", "dropout")}
        path = tmp_path / f"{config.age_head}.ckpt"
        save_checkpoint(path, net, meta)
        loaded = load_checkpoint(path)
        assert loaded.net.config == config
        image = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
        torch.testing.assert_close(loaded.net(image)[0], net(image)[0])
    with pytest.raises(ValueError, match="age_head"):
        NetConfig(age_head="ordinal")

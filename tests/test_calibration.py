"""P(female) calibration: the fitted temperature, ECE, and the answers a checkpoint gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from agegender.calibration import expected_calibration_error, fit_temperature
from agegender.checkpoint import load_checkpoint
from agegender.inference.predictor import TorchPredictor
from agegender.model import AgeGenderNet, NetConfig


def overconfident(temperature: float, count: int = 20_000, seed: int = 0):
    """Logits whose true probability is sigmoid(logit / temperature), with drawn labels."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(count, generator=generator, dtype=torch.float64) * 4
    truth = torch.sigmoid(logits / temperature)
    labels = (torch.rand(count, generator=generator, dtype=torch.float64) < truth).double()
    return logits, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with(
    true_temperature: float,
) -> None:
    logits, labels = overconfident(true_temperature)
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_the_fitted_temperature_lowers_the_calibration_error() -> None:
    logits, labels = overconfident(2.5)
    before = expected_calibration_error(torch.sigmoid(logits), labels)
    after = expected_calibration_error(
        torch.sigmoid(logits / fit_temperature(logits, labels)), labels
    )
    assert before > 0.05 and after < before / 3


def test_nothing_to_fit_leaves_the_temperature_at_one() -> None:
    assert fit_temperature(torch.tensor([1.0, -2.0, 3.0]), torch.ones(3)) == 1.0
    assert fit_temperature(torch.zeros(0), torch.zeros(0)) == 1.0


def test_ece_by_hand() -> None:
    # two bins used: p 0.05 (4 faces, 1 woman: gap 0.2) and 0.95 (4 faces, 4 women: gap 0.05)
    p = torch.tensor([0.05] * 4 + [0.95] * 4)
    labels = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1])
    assert expected_calibration_error(p, labels) == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)


def test_predict_clamps_ages_and_divides_the_gender_logit_by_the_temperature() -> None:
    torch.manual_seed(0)
    net = AgeGenderNet(NetConfig()).eval()
    with torch.no_grad():
        net.age_head.bias.fill_(500.0)  # far above the range
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        raw_age, logit = net(images)
        net.set_outputs((1, 80), gender_temperature=2.0)
        age, p_female = net.predict(images)
    assert raw_age.min() > 80 and torch.all(age == 80)
    assert torch.allclose(p_female, torch.sigmoid(logit / 2.0))
    with pytest.raises(ValueError, match="gender_temperature"):
        net.set_outputs((1, 80), gender_temperature=0.0)


def test_a_trained_checkpoint_records_its_temperature_and_answers_with_it(brief_run: Path) -> None:
    path = brief_run / "checkpoints" / "best.ckpt"
    loaded = load_checkpoint(path)
    temperature = loaded.meta["calibration"]["gender_temperature"]
    assert temperature > 0 and loaded.net.gender_temperature == temperature
    images = np.random.default_rng(0).integers(0, 256, (6, 3, 64, 64), dtype=np.uint8)
    with torch.no_grad():
        _, logit = loaded.net(torch.from_numpy(images))
    got = TorchPredictor(path).predict_batch(images)
    expected = torch.sigmoid(logit / temperature).numpy()
    np.testing.assert_allclose(got[:, 1], expected, atol=1e-6)


def test_flip_averages_each_face_with_its_mirror_image(varied_checkpoint: Path) -> None:
    predictor = TorchPredictor(varied_checkpoint)
    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    plain = predictor.predict(crops)
    mirrored = predictor.predict([np.ascontiguousarray(c[:, ::-1]) for c in crops])
    flipped = predictor.predict(crops, flip=True)
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(plain - mirrored).max() > 1e-3  # the network is not symmetric: a real test

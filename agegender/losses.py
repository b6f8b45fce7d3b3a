"""The training losses: the age losses (regression or DLDL-v2 distribution) and how the age
and gender losses are weighed against each other (fixed weights or learned uncertainty)."""

from __future__ import annotations

import torch
from torch import nn

AGE_LOSSES = {"l1": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}
TASK_WEIGHTINGS = ("fixed", "uncertainty")


def soft_age_labels(ages: torch.Tensor, values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian label distributions [B, K] over `values` around each true age (normalised
    over the bins, so ages near the ends keep a proper distribution)."""
    logits = -((values[None, :] - ages[:, None]) ** 2) / (2 * sigma**2)
    return torch.softmax(logits, dim=1)


class DistributionAgeLoss(nn.Module):
    """DLDL-v2: KL(Gaussian label distribution || predicted distribution) plus `l1` times
    the L1 error of the predicted distribution's expectation, in years."""

    def __init__(self, values: torch.Tensor, sigma: float = 2.0, l1: float = 1.0) -> None:
        super().__init__()
        if sigma <= 0 or l1 < 0:
            raise ValueError(f"loss.dldl_sigma must be > 0 and loss.dldl_l1 >= 0 ({sigma}, {l1})")
        self.register_buffer("values", values.float(), persistent=False)
        self.sigma = float(sigma)
        self.l1 = float(l1)

    def forward(self, logits: torch.Tensor, ages: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits.float(), dim=1)
        target = soft_age_labels(ages.float(), self.values, self.sigma)
        kl = nn.functional.kl_div(log_p, target, reduction="batchmean")
        expectation = log_p.exp() @ self.values
        return kl + self.l1 * (expectation - ages).abs().mean()


def build_age_loss(name: str, huber_delta: float = 5.0) -> nn.Module:
    if name not in AGE_LOSSES:
        raise ValueError(f"loss.age must be one of {sorted(AGE_LOSSES)}, got '{name}'")
    return nn.HuberLoss(delta=huber_delta) if name == "huber" else AGE_LOSSES[name]()


class TaskWeighting(nn.Module):
    """Sums the age and gender losses. `fixed`: w_age * age + w_gender * gender. `uncertainty`
    (Kendall, Gal and Cipolla 2018): each loss L_i gets a learned log-variance s_i and
    contributes exp(-s_i) * L_i + s_i, so a task's weight settles near 1 / its typical loss
    and neither task's scale has to be chosen by hand (w_age and w_gender are then unused)."""

    def __init__(self, kind: str = "fixed", w_age: float = 1.0, w_gender: float = 1.0) -> None:
        super().__init__()
        if kind not in TASK_WEIGHTINGS:
            raise ValueError(f"loss.weighting must be one of {list(TASK_WEIGHTINGS)}, got '{kind}'")
        self.fixed = (float(w_age), float(w_gender))
        # log-variances of (age, gender); zero = both weights 1 at the start
        self.log_vars = nn.Parameter(torch.zeros(2)) if kind == "uncertainty" else None

    def weights(self) -> tuple[float, float]:
        """The weights the two losses get now (for logging)."""
        if self.log_vars is None:
            return self.fixed
        age, gender = torch.exp(-self.log_vars.detach()).tolist()
        return age, gender

    def forward(self, age_loss: torch.Tensor, gender_loss: torch.Tensor) -> torch.Tensor:
        if self.log_vars is None:
            return self.fixed[0] * age_loss + self.fixed[1] * gender_loss
        s = self.log_vars
        return torch.exp(-s[0]) * age_loss + s[0] + torch.exp(-s[1]) * gender_loss + s[1]

"""The deployed graph: RGB uint8 NCHW in; age (years) and P(female) out.

Export traces exactly this module, and `TorchPredictor`, the parity reference and the
training sample grid run it too, so the step from the network's raw heads to what a user is
shown (`AgeGenderNet.predict`: clamped age, calibrated sigmoid) is taken in one place and
every backend answers the same thing.
"""

from __future__ import annotations

import torch
from torch import nn

from agegender.model import AgeGenderNet


class InferenceGraph(nn.Module):
    """AgeGenderNet's `predict` (ages clamped, calibrated P(female)) as a traceable module:
    what a deployed model returns."""

    def __init__(self, net: AgeGenderNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.predict(image)


@torch.inference_mode()
def predict_tensor(net: AgeGenderNet | InferenceGraph, images: torch.Tensor) -> torch.Tensor:
    """[N, 2] float: columns age (years) and P(female), from uint8 [N, 3, S, S] images."""
    graph = net if isinstance(net, InferenceGraph) else InferenceGraph(net)
    age, p_female = graph(images)
    return torch.stack([age, p_female], dim=1)

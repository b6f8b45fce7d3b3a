"""AgeGenderNet: MobileNetV2 features -> pooled vector -> dense neck -> age and gender heads.

The network takes RGB pixels in 0..255 (uint8 or float) and normalises them itself, so every
caller (training, evaluation, live, ONNX) feeds the same thing and none can get it wrong.
"""

from __future__ import annotations

import urllib.error
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

from agegender.errors import UserError
from agegender.frozen_blocks import RUNTIMES, OnnxFrozenBlocks, usable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What each supported backbone needs: constructor, ImageNet weights, pooled feature size.
BACKBONES = {
    "mobilenet_v2": (mobilenet_v2, MobileNet_V2_Weights.IMAGENET1K_V1, 1280),
}


AGE_HEADS = ("regression", "distribution")


class PretrainedWeightsError(UserError):
    """ImageNet weights could not be loaded (offline, missing or wrong file)."""


@dataclass(frozen=True)
class NetConfig:
    """Architecture of AgeGenderNet; stored in every checkpoint to rebuild the network."""

    backbone: str = "mobilenet_v2"
    hidden_units: int = 128
    dropout: float = 0.3
    # "regression": one output, years (the recipe). "distribution": a softmax over the whole
    # years age_bins[0]..age_bins[1], the prediction its expectation (label distribution
    # learning, DLDL-v2).
    age_head: str = "regression"
    age_bins: tuple[int, int] = (0, 100)

    def __post_init__(self) -> None:
        if self.age_head not in AGE_HEADS:
            raise ValueError(f"age_head must be one of {AGE_HEADS}, got '{self.age_head}'")
        low, high = (int(v) for v in self.age_bins)
        if not 0 <= low < high <= 150:
            raise ValueError(
                f"age_bins must be whole years 0 <= low < high <= 150, got {low, high}"
            )
        object.__setattr__(self, "age_bins", (low, high))

    def to_dict(self) -> dict:
        values = asdict(self)
        values["age_bins"] = list(self.age_bins)  # plain types in checkpoints
        return values


class AgeGenderNet(nn.Module):
    """Backbone + neck + two heads. `forward` returns (age_years [B], gender_logit [B])."""

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        if self.config.backbone not in BACKBONES:
            raise ValueError(
                f"unknown backbone '{self.config.backbone}'; choose one of {sorted(BACKBONES)}"
            )
        build, _, feature_dim = BACKBONES[self.config.backbone]
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)
        self.features = build(weights=None).features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = feature_dim
        self.neck = nn.Sequential(
            nn.Linear(feature_dim, self.config.hidden_units),
            nn.ReLU(inplace=True),
            nn.Dropout(self.config.dropout),
        )
        low, high = self.config.age_bins
        distribution = self.config.age_head == "distribution"
        self.age_head = nn.Linear(self.config.hidden_units, high - low + 1 if distribution else 1)
        # the whole years the distribution head's outputs stand for
        values = torch.arange(low, high + 1, dtype=torch.float32)
        self.register_buffer("age_values", values, persistent=False)
        self.gender_head = nn.Linear(self.config.hidden_units, 1)
        self.frozen_blocks = 0  # features[:frozen_blocks] are frozen
        # runs the frozen blocks' forward on onnxruntime instead of torch (training on a CPU)
        self.frozen_runner: OnnxFrozenBlocks | None = None
        # What `predict` answers with (set from a checkpoint's metadata by the loader): ages
        # clamped to the range trained on, the gender logit divided by the fitted temperature.
        self.age_limits: tuple[float, float] | None = None
        self.gender_temperature = 1.0

    # -- forward pieces -------------------------------------------------------------------
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 (any dtype) -> ImageNet-normalised float."""
        return (images.float() - self.pixel_mean) / self.pixel_std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features [B, feature_dim] for RGB 0..255 images [B, 3, H, W]."""
        stop = self.frozen_blocks
        if self.frozen_runner is not None and usable(self, stop, images):
            hidden = self.features[stop:](self.frozen_runner(self, stop, images))
        else:
            hidden = self.features(self.normalize(images))
        return self.pool(hidden).flatten(1)

    def run_frozen_blocks_on(self, runtime: str) -> None:
        """'onnxruntime': the frozen blocks' forward runs there for CPU batches (same
        function, several times faster); 'torch': in torch, like the rest."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.frozen_runner = OnnxFrozenBlocks() if runtime == "onnxruntime" else None

    def raw_heads(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neck and heads on pooled features: the age head's raw output (years [B], or logits
        over age_values [B, K] for the distribution head) and the gender logit [B]."""
        hidden = self.neck(embedding)
        age = self.age_head(hidden)
        if self.config.age_head == "regression":
            age = age.squeeze(1)
        return age, self.gender_head(hidden).squeeze(1)

    def age_years(self, age_output: torch.Tensor) -> torch.Tensor:
        """The age head's raw output in years: the expectation for the distribution head."""
        if self.config.age_head == "regression":
            return age_output
        return torch.softmax(age_output.float(), dim=1) @ self.age_values

    def heads(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neck and heads on pooled features: (age_years [B], gender_logit [B])."""
        age, gender = self.raw_heads(embedding)
        return self.age_years(age), gender

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.embed(images))

    # -- what a deployed model answers ------------------------------------------------------
    def set_outputs(
        self, age_range: tuple[float, float] | None, gender_temperature: float = 1.0
    ) -> None:
        """Clamp predicted ages to `age_range` and calibrate P(female) with the temperature."""
        if gender_temperature <= 0:
            raise ValueError(f"gender_temperature must be > 0, got {gender_temperature}")
        self.age_limits = None if age_range is None else (float(age_range[0]), float(age_range[1]))
        self.gender_temperature = float(gender_temperature)

    def clamp_age(self, age: torch.Tensor) -> torch.Tensor:
        """Ages in years, clamped to the range trained on (once set)."""
        return age if self.age_limits is None else age.clamp(*self.age_limits)

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB 0..255 images -> (age in years [B], P(female) [B]): what live, eval and the
        exported graph answer."""
        age, logit = self(images)
        return self.clamp_age(age), torch.sigmoid(logit / self.gender_temperature)

    # -- freezing -------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.features)

    def freeze_blocks(self, trainable_from: int | None) -> None:
        """Freeze `features[:trainable_from]`; None freezes the whole backbone, 0 none of it.

        Frozen blocks get requires_grad=False and keep their BatchNorm layers in eval mode
        even while training (what Keras does for non-trainable layers), so their running
        statistics never move.
        """
        n = self.num_blocks if trainable_from is None else int(trainable_from)
        if not 0 <= n <= self.num_blocks:
            raise ValueError(f"trainable_from must be in 0..{self.num_blocks} or null, got {n}")
        self.frozen_blocks = n
        for index, block in enumerate(self.features):
            block.requires_grad_(index >= n)
        self.train(self.training)

    def train(self, mode: bool = True) -> AgeGenderNet:
        super().train(mode)
        for block in self.features[: self.frozen_blocks]:
            block.eval()
        return self

    @property
    def backbone_frozen(self) -> bool:
        return self.frozen_blocks == self.num_blocks

    def init_age_bias(self, mean_age: float) -> None:
        """Start the age head at the training mean, so early epochs learn shape, not offset."""
        with torch.no_grad():
            if self.config.age_head == "regression":
                self.age_head.bias.fill_(float(mean_age))
            else:  # a bump around the mean, narrow enough that the range's ends do not pull
                spread = 10.0  # years
                self.age_head.bias.copy_(-((self.age_values - mean_age) ** 2) / (2 * spread**2))

    # -- ImageNet weights -----------------------------------------------------------------
    def load_pretrained(self, pretrained: str, weights: str | Path | None = None) -> None:
        """Load ImageNet weights into the backbone: pretrained='imagenet' or 'none'.

        `weights` is a local state-dict file of the torchvision backbone (used instead of the
        download). Without it, torchvision's file is taken from the torch hub cache, or
        downloaded there once.
        """
        if pretrained == "none":
            return
        if pretrained != "imagenet":
            raise ValueError(f"model.pretrained must be 'imagenet' or 'none', got '{pretrained}'")
        state = _load_weights_file(Path(weights)) if weights else self._download_imagenet()
        backbone = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not backbone:
            raise PretrainedWeightsError(
                f"{weights}: no 'features.*' entries; expected a torchvision "
                f"{self.config.backbone} state dict"
            )
        try:
            self.features.load_state_dict(backbone)
        except RuntimeError as error:
            raise PretrainedWeightsError(
                f"{weights or 'ImageNet weights'} do not fit {self.config.backbone}: {error}"
            ) from error

    def _download_imagenet(self) -> dict[str, torch.Tensor]:
        _, enum, _ = BACKBONES[self.config.backbone]
        file_name = Path(enum.url).name
        target = Path(torch.hub.get_dir()) / "checkpoints" / file_name
        try:
            return torch.hub.load_state_dict_from_url(enum.url, progress=True, weights_only=True)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise PretrainedWeightsError(
                f"could not get ImageNet weights for {self.config.backbone} ({error}). "
                f"Offline? Download {enum.url} elsewhere and put it at {target}, "
                f"or pass model.weights=PATH to a local copy, or train from scratch with "
                f"model.pretrained=none"
            ) from error


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(
            f"model.weights={path}: no such file; give the path of a torchvision state dict "
            f"or use model.pretrained=none"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad files
        raise PretrainedWeightsError(f"{path}: not a readable state dict ({error})") from error
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def build_net(
    backbone: str = "mobilenet_v2",
    hidden_units: int = 128,
    dropout: float = 0.3,
    age_head: str = "regression",
    age_bins: tuple[int, int] = (0, 100),
    pretrained: str = "imagenet",
    weights: str | Path | None = None,
    channels_last: bool = False,
    compile: bool = False,
    frozen_runtime: str = "torch",
) -> AgeGenderNet:
    """conf/model/*.yaml's `_target_`: a new network with its start weights and speed options."""
    net = AgeGenderNet(NetConfig(backbone, hidden_units, dropout, age_head, tuple(age_bins)))
    net.load_pretrained(pretrained, weights)
    if channels_last:
        net.to(memory_format=torch.channels_last)  # NHWC weights: every convolution follows
    if compile:
        net.compile()  # in place: parameter names (and checkpoints) stay the plain network's
    net.run_frozen_blocks_on(frozen_runtime)
    return net

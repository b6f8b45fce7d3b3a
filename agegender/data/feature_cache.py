"""FeatureCache callback: lets the frozen phase train its heads on cached backbone features.

`data.feature_cache`: auto (the default) uses the cache whenever the whole backbone is frozen
and horizontal flip is the only augmentation, and otherwise says in one log line why every
batch runs the backbone; true insists (an error if it cannot be used); false never uses it.

The features are built in `setup`, after the datamodule has opened the image store and before
the model moves to its device or gets wrapped for DDP. Every rank calls the builder; its file
lock makes the first one build and the others reuse, so the cache is built once, not raced.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from agegender.data.datamodule import UTKFaceDataModule, only_flip
from agegender.data.features import FeatureStore, backbone_digest, open_or_build_features
from agegender.errors import UserError
from agegender.module import AgeGenderModule

log = logging.getLogger(__name__)


class FeatureCacheError(UserError):
    """data.feature_cache=true, but this run cannot use cached features."""


def parse_mode(value: Any) -> str | bool:
    """data.feature_cache as auto, True or False (YAML may give 'true' as a string)."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if value == "auto" or isinstance(value, bool):
        return value
    raise UserError(f"data.feature_cache must be auto, true or false, got {value!r}")


def reason_not_cacheable(module: AgeGenderModule, augment: dict[str, Any] | None) -> str | None:
    """Why backbone features cannot be cached for this run, or None when they can."""
    if not module.net.backbone_frozen:
        return f"the backbone trains from features[{module.net.frozen_blocks}] on"
    if not only_flip(augment):
        parts = [name for name in ("affine", "color_jitter") if (augment or {}).get(name)]
        return f"augmentation other than flip is configured (data.augment: {', '.join(parts)})"
    return None


class FeatureCache(L.Callback):
    """Builds (or reuses) the features in `setup` and switches the datamodule to them."""

    def __init__(
        self,
        mode: str | bool = "auto",
        batch_size: int = 64,
        channels_last: bool = False,
        progress: bool = True,
    ) -> None:
        self.mode = parse_mode(mode)
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.progress = progress
        self.store: FeatureStore | None = None

    @property
    def active(self) -> bool:
        return self.store is not None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.mode is False or self.active:
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, UTKFaceDataModule) or datamodule.data is None:
            return
        assert isinstance(pl_module, AgeGenderModule)
        augment = datamodule.config.get("augment")
        reason = reason_not_cacheable(pl_module, augment)
        if reason is not None:
            if self.mode is True:
                raise FeatureCacheError(
                    f"data.feature_cache=true, but {reason}. Use data.feature_cache=auto to "
                    f"fall back to the full pass, or set data.augment.affine=null "
                    f"data.augment.color_jitter=null"
                )
            log.info("feature cache off: %s, so every batch runs the backbone", reason)
            return
        flip = bool((augment or {}).get("hflip"))
        self.store = open_or_build_features(
            pl_module.net,
            datamodule.data.store,
            datamodule.config["cache_dir"],
            flip=flip,
            device=trainer.strategy.root_device,
            batch_size=self.batch_size,
            channels_last=self.channels_last,
            progress=self.progress and trainer.is_global_zero,
        )
        datamodule.use_features(self.store, random_flip=flip)
        log.info(
            "feature cache on: heads train on cached backbone features (%s; %s)",
            "plain + flipped" if flip else "plain",
            f"computed {self.store.built} now" if self.store.built else "reused",
        )

    def _check_backbone(self, pl_module: L.LightningModule) -> None:
        # A loaded checkpoint with another backbone would silently make the cache wrong.
        if self.store is not None and backbone_digest(pl_module.net) != self.store.digest:
            raise FeatureCacheError(
                "the backbone differs from the one the cached features were computed with; "
                "run with data.feature_cache=false or start a new run"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_backbone(pl_module)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_backbone(pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # fit's own validation is covered
            self._check_backbone(pl_module)

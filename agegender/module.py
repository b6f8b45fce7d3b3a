"""AgeGenderModule: losses, metrics, optimiser and scheduler around AgeGenderNet.

Batches are dicts: {"image": uint8 [B,3,H,W], "age": float [B], "gender": float [B]}; a batch
that carries "embedding" (pooled backbone features, from the frozen-phase feature cache)
instead of "image" goes straight to the heads.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanMetric, MetricCollection
from torchmetrics.aggregation import CatMetric
from torchmetrics.classification import BinaryAccuracy

from agegender.calibration import (
    expected_calibration_error,
    fit_temperature,
    recorded_temperature,
)
from agegender.contract import META_KEY
from agegender.losses import DistributionAgeLoss, TaskWeighting, build_age_loss
from agegender.model import AgeGenderNet, NetConfig

STAGES = ("train", "val", "test")
# Shown on the progress bar during fit (train/ and val/); every metric reaches the loggers.
PROGRESS_BAR_METRICS = ("loss", "age_mae", "gender_acc")
# optim.optimizer when a module is built without one (train.yaml sets it)
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1.0e-3}


class AgeGenderModule(L.LightningModule):
    def __init__(
        self,
        net: dict[str, Any],
        meta: dict[str, Any],
        loss: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        trainable_from: int | None = None,
        init_age_bias: bool = False,
    ) -> None:
        super().__init__()
        # Plain dicts only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters()
        loss = loss or {}
        # {"optimizer": partial config, "scheduler": partial config or None, "monitor": ...}
        self.optim_cfg = optim or {}
        self.meta = meta
        self.net = AgeGenderNet(NetConfig(**net))
        self.net.freeze_blocks(trainable_from)
        # metrics score the ages a deployed model answers: clamped to the range trained on
        self.net.set_outputs(meta.get("age_range"))
        if self.net.config.age_head == "distribution":
            self.age_loss = DistributionAgeLoss(
                self.net.age_values,
                float(loss.get("dldl_sigma", 2.0)),
                float(loss.get("dldl_l1", 1.0)),
            )
        else:
            self.age_loss = build_age_loss(loss.get("age", "l1"), loss.get("huber_delta", 5.0))
        self.gender_loss = nn.BCEWithLogitsLoss()
        self.task_weighting = TaskWeighting(
            loss.get("weighting", "fixed"),
            float(loss.get("w_age", 1.0)),
            float(loss.get("w_gender", 1.0)),
        )
        self.weighting_lr = float(loss.get("weighting_lr", 0.01))
        # ModuleDict keys cannot be "train" (an nn.Module method), hence the "_metrics" suffix.
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_metrics": MetricCollection(
                    {
                        "age_mae": MeanAbsoluteError(),
                        "gender_acc": BinaryAccuracy(),
                        "loss": MeanMetric(),
                        "age_loss": MeanMetric(),
                        "gender_loss": MeanMetric(),
                    },
                    prefix=f"{stage}/",
                    compute_groups=False,
                )
                for stage in STAGES
            }
        )
        # The validation split's gender logits, gathered across processes by torchmetrics,
        # fit the temperature that calibrates P(female); checkpoints record it.
        self.val_gender_logits = CatMetric()
        self.val_gender_labels = CatMetric()
        self.gender_temperature = 1.0

    def setup(self, stage: str) -> None:
        # A fresh model starts its age head at the training mean age.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if stage == "fit" and self.hparams.init_age_bias and datamodule is not None:
            self.net.init_age_bias(datamodule.train_mean_age)
        if stage == "fit" and datamodule is not None:
            self._record_source(getattr(datamodule, "source_eye_px", None))

    def _record_source(self, eye_px: float | None) -> None:
        """The checkpoint records the training faces' eye distance in their photographs, so
        that live, eval and serve shrink sharper faces to it (faces.align.match_source)."""
        crop = self.meta.get("crop")
        if eye_px is not None and crop is not None and crop.get("align", True):
            self.meta = {**self.meta, "crop": {**crop, "source_eye_px": eye_px}}

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The age head's raw output and the gender logit (see AgeGenderNet.raw_heads)."""
        if "embedding" in batch:
            return self.net.raw_heads(batch["embedding"])
        return self.net.raw_heads(self.net.embed(batch["image"]))

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        age_output, gender_logit = self(batch)
        age_pred = self.net.clamp_age(self.net.age_years(age_output))
        age, gender = batch["age"].float(), batch["gender"].float()
        age_loss = self.age_loss(age_output, age)
        gender_loss = self.gender_loss(gender_logit, gender)
        loss = self.task_weighting(age_loss, gender_loss)
        metrics = self.metrics[f"{stage}_metrics"]
        metrics["age_mae"](age_pred.detach(), age)
        metrics["gender_acc"](gender_logit.detach(), gender.long())
        size = age.shape[0]
        metrics["loss"](loss.detach(), weight=size)
        metrics["age_loss"](age_loss.detach(), weight=size)
        metrics["gender_loss"](gender_loss.detach(), weight=size)
        if stage == "val":
            self.val_gender_logits.update(gender_logit.detach().float())
            self.val_gender_labels.update(gender)
        # Metric objects are reduced across processes by torchmetrics itself. The progress
        # bar shows the three numbers worth watching; the rest go to the loggers only.
        for name, metric in metrics.items(keep_base=False, copy_state=False):
            shown = stage != "test" and name.rsplit("/", 1)[-1] in PROGRESS_BAR_METRICS
            self.log(name, metric, on_step=False, on_epoch=True, prog_bar=shown)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def on_train_epoch_end(self) -> None:
        if self.task_weighting.log_vars is not None:  # the learned weights, for the curves
            w_age, w_gender = self.task_weighting.weights()
            self.log_dict({"train/w_age": w_age, "train/w_gender": w_gender})

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.val_gender_logits.update_called:
            return
        logits = self.val_gender_logits.compute()
        labels = self.val_gender_labels.compute()
        self.val_gender_logits.reset()
        self.val_gender_labels.reset()
        self.gender_temperature = fit_temperature(logits, labels)
        calibrated = torch.sigmoid(logits.double() / self.gender_temperature)
        self.log("val/gender_temperature", self.gender_temperature)
        self.log("val/gender_ece", expected_calibration_error(calibrated, labels))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        """The optimiser over the trainable parameters and, when `optim.scheduler` names
        one, its learning-rate schedule (both Hydra partials): stepped once per epoch, or
        once per batch for a one-cycle schedule, which peaks at each group's rate."""
        optimizer = instantiate(self.optim_cfg.get("optimizer") or DEFAULT_OPTIMIZER)(
            self._param_groups()
        )
        for group in optimizer.param_groups:
            group["lr"] *= group.pop("lr_scale", 1.0)
        scheduler_cfg = self.optim_cfg.get("scheduler")
        if not scheduler_cfg:
            return optimizer
        make_scheduler = instantiate(scheduler_cfg)
        if getattr(make_scheduler, "func", None) is torch.optim.lr_scheduler.OneCycleLR:
            peaks = [group["lr"] for group in optimizer.param_groups]
            scheduler = make_scheduler(optimizer, max_lr=peaks, total_steps=self._total_steps())
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        scheduler = make_scheduler(optimizer)
        schedule: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            schedule["monitor"] = self.optim_cfg.get("monitor") or "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def _param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters in groups: the backbone's at optim.lr times
        optim.backbone_lr_scale (discriminative learning rates), the neck's and heads' at
        optim.lr, learned task weights at loss.weighting_lr."""
        backbone_scale = float(self.optim_cfg.get("backbone_lr_scale", 1.0))
        # at scale 1, one group, as before the option: older last.ckpt files resume
        backbone = (
            [p for p in self.net.features.parameters() if p.requires_grad]
            if backbone_scale != 1.0
            else []
        )
        taken = {id(p) for p in backbone}
        weights = [p for p in self.task_weighting.parameters() if p.requires_grad]
        taken |= {id(p) for p in weights}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if backbone:
            groups.append({"params": backbone, "lr_scale": backbone_scale})
        if weights:
            groups.append({"params": weights, "lr": self.weighting_lr})
        return groups

    def _total_steps(self) -> int:
        return int(self.trainer.estimated_stepping_batches)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        calibration = {"gender_temperature": self.gender_temperature}
        checkpoint[META_KEY] = {**self.meta, "calibration": calibration}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed run keeps its temperature until its next validation refits it
        self.gender_temperature = recorded_temperature(checkpoint.get(META_KEY, {}))

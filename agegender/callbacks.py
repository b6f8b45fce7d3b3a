"""Training-time extras: per-epoch curve plots (PNG), sample-prediction grid for TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import matplotlib
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torchvision.utils import make_grid

from agegender.contract import label_text
from agegender.deployed import predict_tensor
from agegender.io import atomic_target, write_atomic

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402

# (file name, metric name without the stage prefix, axis label)
CURVES = (
    ("age_mae.png", "age_mae", "age MAE (years)"),
    ("gender_acc.png", "gender_acc", "gender accuracy"),
    ("loss.png", "loss", "total loss"),
)


class CurvePlotter(L.Callback):
    """Records epoch metrics and redraws train/val curves after every epoch.

    Redrawing each epoch (it takes milliseconds) means an interrupted run still has plots.
    """

    def __init__(self, plot_dir: str | Path, title: str) -> None:
        self.plot_dir = Path(plot_dir)
        self.title = title
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}  # so a resumed run keeps its earlier epochs

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch)}
        for name, value in trainer.callback_metrics.items():
            if name.startswith(("train/", "val/")) and torch.as_tensor(value).numel() == 1:
                row[name] = float(value)
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.history.append(row)
        self.draw()

    @rank_zero_only
    def draw(self) -> None:
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.plot_dir / "history.json", json.dumps(self.history, indent=1))
        epochs = [row["epoch"] + 1 for row in self.history]
        for file_name, metric, label in CURVES:
            figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
            for stage in ("train", "val"):
                values = [row.get(f"{stage}/{metric}", np.nan) for row in self.history]
                axis.plot(epochs, values, marker="o", label=stage)
            axis.set_xlabel("epoch")
            axis.set_ylabel(label)
            axis.set_title(f"{self.title}: {label}")
            axis.grid(alpha=0.3)
            axis.legend()
            figure.tight_layout()
            try:
                with atomic_target(self.plot_dir / file_name, keep_suffix=True) as temporary:
                    figure.savefig(temporary)
            finally:
                plt.close(figure)


def annotate_grid(
    images: np.ndarray, truths: list[str], predictions: list[str], scale: int = 2
) -> np.ndarray:
    """uint8 [N,3,S,S] RGB -> one RGB grid [3,H,W] with 'true' and 'pred' text per face."""
    tiles = []
    for image, truth, prediction in zip(images, truths, predictions, strict=True):
        tile = np.ascontiguousarray(image.transpose(1, 2, 0))
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        for row, (text, colour) in enumerate(
            ((f"true {truth}", (255, 255, 255)), (f"pred {prediction}", (255, 220, 0)))
        ):
            origin = (4, 14 + 16 * row)
            cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3)
            cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
        tiles.append(torch.from_numpy(tile.transpose(2, 0, 1)))
    return make_grid(tiles, nrow=int(np.ceil(np.sqrt(len(tiles)))), padding=2).numpy()


class SampleGrid(L.Callback):
    """Logs validation faces with true and predicted labels to TensorBoard each epoch."""

    def __init__(self, count: int = 16) -> None:
        self.count = count

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = trainer.logger
        datamodule: Any = trainer.datamodule
        if trainer.sanity_checking or not isinstance(logger, TensorBoardLogger):
            return
        dataset = datamodule.datasets.get("val")
        if dataset is None or len(dataset) == 0:
            return
        items = [dataset[i] for i in range(min(self.count, len(dataset)))]
        images = torch.stack([item["image"] for item in items])
        was_training = pl_module.training
        pl_module.eval()
        predicted = predict_tensor(pl_module.net, images.to(pl_module.device)).cpu().numpy()
        pl_module.train(was_training)
        truths = [label_text(float(i["age"]), float(i["gender"])) for i in items]
        predictions = [label_text(age, p_female) for age, p_female in predicted]
        grid = annotate_grid(images.numpy(), truths, predictions)
        logger.experiment.add_image("val/samples", grid, global_step=trainer.current_epoch)

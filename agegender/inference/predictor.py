"""Predictor: face crops in, (age_years, p_female) out, whatever the backend.

`agegender.inference.backends.load_predictor(path)` picks the backend from the file: a training
checkpoint (.ckpt) runs on PyTorch (`TorchPredictor`, here), an exported model (.onnx) on
onnxruntime (`OnnxPredictor`). Both take the same input (RGB uint8 crops) through the one
preprocessing path and return the same thing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agegender.checkpoint import load_checkpoint
from agegender.deployed import InferenceGraph, predict_tensor
from agegender.preprocess import to_batch


def flip_average(run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """Flip test-time augmentation: each face's answer averaged with its mirror image's, both
    computed in one call of `run` (uint8 NCHW -> [N, 2])."""
    both = np.concatenate([batch, batch[..., ::-1]])
    out = run(np.ascontiguousarray(both)).astype(np.float32, copy=False)
    return (out[: len(batch)] + out[len(batch) :]) / 2


class Predictor(ABC):
    """Base class: subclasses implement `predict_batch` on a ready uint8 NCHW batch."""

    image_size: int
    meta: dict[str, Any]
    backend: str

    @abstractmethod
    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """uint8 [N, 3, S, S] RGB -> float32 [N, 2]: columns age_years, p_female."""

    def predict_images(self, batch: np.ndarray, flip: bool = False) -> np.ndarray:
        """`predict_batch`, with `flip` averaging each face with its mirror image."""
        return flip_average(self.predict_batch, batch) if flip else self.predict_batch(batch)

    def predict(self, crops: list[np.ndarray], flip: bool = False) -> np.ndarray:
        """RGB uint8 crops of any size -> float32 [N, 2] (age_years, p_female)."""
        if len(crops) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        return self.predict_images(to_batch(crops, self.image_size), flip)


class TorchPredictor(Predictor):
    backend = "torch"

    def __init__(self, checkpoint_path: str | Path, device: str = "cpu") -> None:
        loaded = load_checkpoint(checkpoint_path)
        self.device = torch.device(device)
        self.net = loaded.net.to(self.device).eval()
        self.graph = InferenceGraph(self.net).eval()  # what export traces
        self.meta = loaded.meta
        self.image_size = loaded.image_size

    @torch.inference_mode()
    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        return predict_tensor(self.graph, images).float().cpu().numpy()

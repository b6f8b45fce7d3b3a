"""The base of the training datasets: memory-mapped arrays answered a batch at a time."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


class BatchedMapDataset(Dataset):
    """A dataset over memory maps that answers whole batches (`__getitems__`, the
    DataLoader's batched fetch: one read of the map per batch instead of per-item Python and
    collate copies) and opens its maps lazily, in each worker process."""

    def __init__(self) -> None:
        self._maps: Any = None

    def _open(self) -> Any:
        """The memory map(s) this dataset reads from."""
        raise NotImplementedError

    @property
    def maps(self) -> Any:
        if self._maps is None:
            self._maps = self._open()
        return self._maps

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}

    @staticmethod
    def collate_fn(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return batch  # __getitems__ already returns a collated batch

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = None  # never pickle a map into worker processes
        return state

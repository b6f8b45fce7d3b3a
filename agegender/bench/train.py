"""Training-throughput benchmark: Lightning vs a plain PyTorch loop, and the lean-loop options.

Fine-tune configuration (features[10:] trainable, phase=finetune defaults), images/s. Both
loops drive the same AgeGenderModule built from the same seed over the same batches, held in
memory so that loading is not measured: the plain loop calls training_step, zero_grad,
backward and step, then computes the epoch's metrics; Lightning runs a Trainer with no
logger, checkpointing or progress bar. Each does a warm-up epoch, then a timed epoch of the
same steps; the rounds alternate and each side keeps its best, since a busy machine only ever
slows a run down. The overhead is Lightning's time over the plain loop's, minus one.

The lean-loop table runs the same Lightning epoch with channels-last on and off and with
bf16 autocast (trainer.precision=bf16-mixed).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from agegender.bench.frozen import EpochTimer
from agegender.bench.workload import (
    THREADS,
    best_of,
    calibrate_batchnorm,
    faces,
    print_result,
    quiet_lightning,
    timed,
    torch_threads,
    train_config,
)
from agegender.data.cache import open_or_build
from agegender.data.utkface import discover
from agegender.module import AgeGenderModule
from agegender.training import apply_speed_options, build_module

SIZE, BATCH, STEPS, ROUNDS = 128, 32, 20, 6
QUICK_SIZE, QUICK_BATCH, QUICK_STEPS, QUICK_ROUNDS = 32, 4, 2, 1
Batch = dict[str, torch.Tensor]


class InMemoryLoader:
    """Batches held in memory, as one iterable (Lightning reads a plain list as many loaders)."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_batches(folder: Path, size: int, batch: int, steps: int) -> list[Batch]:
    root = faces(folder, batch * steps)
    samples = discover(root).samples[: batch * steps]
    store = open_or_build(root, samples, size, folder / "cache", progress=False)
    ages = np.array([s.age for s in samples], dtype=np.float32)
    genders = np.array([s.gender for s in samples], dtype=np.float32)
    return [
        {
            "image": torch.from_numpy(np.array(store.images[i : i + batch])),
            "age": torch.from_numpy(ages[i : i + batch]),
            "gender": torch.from_numpy(genders[i : i + batch]),
        }
        for i in range(0, len(samples) - batch + 1, batch)
    ]


def fresh_module(cfg: DictConfig, folder: Path, images: torch.Tensor) -> AgeGenderModule:
    torch.manual_seed(0)  # the same initial weights for every loop
    module = build_module(cfg, folder, None)
    calibrate_batchnorm(module.net, images)
    apply_speed_options(module, cfg.model)
    return module


def plain_epoch(
    module: AgeGenderModule, optimizer: torch.optim.Optimizer, batches: list[Batch], bf16: bool
) -> None:
    module.train()
    for index, batch in enumerate(batches):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    metrics = module.metrics["train_metrics"]
    metrics.compute()
    metrics.reset()


def plain_seconds(cfg: DictConfig, folder: Path, batches: list[Batch]) -> float:
    module = fresh_module(cfg, folder, batches[0]["image"])
    optimizer = module.configure_optimizers()
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    plain_epoch(module, optimizer, batches, bf16)  # warm-up
    return timed(lambda: plain_epoch(module, optimizer, batches, bf16))


def lightning_seconds(cfg: DictConfig, folder: Path, batches: list[Batch]) -> float:
    module = fresh_module(cfg, folder, batches[0]["image"])
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=cfg.trainer.precision,
        max_epochs=2,  # a warm-up epoch, then the timed one
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=int(cfg.trainer.log_every_n_steps),
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=InMemoryLoader(batches))
    return timer.seconds[-1]


def run(quick: bool = False) -> dict[str, Any]:
    size, batch, steps, rounds = (
        (QUICK_SIZE, QUICK_BATCH, QUICK_STEPS, QUICK_ROUNDS)
        if quick
        else (SIZE, BATCH, STEPS, ROUNDS)
    )
    images = batch * steps
    base = ("phase=finetune", "model.pretrained=none", "optim.plateau=null")
    base += (f"data.image_size={size}", f"data.batch_size={batch}")
    cfg = train_config(*base)
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="agegender-bench-train-") as name,
        quiet_lightning(),
        torch_threads(THREADS),
    ):
        folder = Path(name)
        batches = make_batches(folder, size, batch, steps)
        best = best_of(
            rounds,
            {
                "plain PyTorch loop": lambda: plain_seconds(cfg, folder, batches),
                "Lightning Trainer": lambda: lightning_seconds(cfg, folder, batches),
            },
        )
        for loop, seconds in best.items():
            rows.append({"table": "overhead", "variant": loop, "images_per_s": images / seconds})
        variants = {
            "fp32, NCHW": ("model.channels_last=false", "trainer.precision=32-true"),
            "fp32, channels-last": ("model.channels_last=true", "trainer.precision=32-true"),
            "bf16-mixed, NCHW": ("model.channels_last=false", "trainer.precision=bf16-mixed"),
            "bf16-mixed, channels-last": (
                "model.channels_last=true",
                "trainer.precision=bf16-mixed",
            ),
        }
        configs = {label: train_config(*base, *extra) for label, extra in variants.items()}
        lean = best_of(
            max(1, rounds // 2),
            {
                label: lambda c=c: lightning_seconds(c, folder, batches)
                for label, c in configs.items()
            },
        )
        for label, seconds in lean.items():
            rows.append({"table": "lean loop", "variant": label, "images_per_s": images / seconds})
    overhead = best["Lightning Trainer"] / best["plain PyTorch loop"] - 1
    result = {
        "entry": "train",
        "rows": rows,
        "ratios": {
            "Lightning / plain loop time (overhead = this - 1)": 1 + overhead,
            **{
                f"{label} / fp32, NCHW": lean["fp32, NCHW"] / lean[label]
                for label in variants
                if label != "fp32, NCHW"
            },
        },
        "lightning_overhead": overhead,
        "notes": (
            f"finetune (features[10:] trainable), {size} px, batch {batch}, {steps} steps "
            f"per timed epoch after a warm-up epoch, best of {rounds} alternating rounds "
            f"({max(1, rounds // 2)} for the lean loop); "
            f"overhead pair: model.channels_last={cfg.model.channels_last}, "
            f"{cfg.trainer.precision}; {THREADS} intra-op thread(s)"
        ),
    }
    print_result(
        "train: fine-tune training throughput",
        result,
        [("table", "table"), ("variant", "variant"), ("images_per_s", "images/s")],
    )
    print(f"  Lightning overhead: {100 * overhead:+.1f}%")
    return result


if __name__ == "__main__":
    run()

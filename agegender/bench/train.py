"""Training-throughput benchmark: Lightning vs a plain PyTorch loop, and the lean-loop options.

Fine-tune configuration (phase=finetune defaults: its trainable blocks), images/s. Both
loops drive the same AgeGenderModule built from the same seed over the same batches, held in
memory so that loading is not measured: the plain loop calls training_step, zero_grad,
backward and step, then computes the epoch's metrics; Lightning runs a Trainer with no
logger, checkpointing or progress bar. Each runs a warm-up epoch, then a measured one; the
time from one step's start to the next covers all the work a loop does per step. Runs
alternate, and each side's median step time over all its measured steps is kept: a busy
machine slows some steps down, the median ignores them. The overhead is Lightning's median
step time over the plain loop's, minus one.

The lean-loop table runs the same Lightning steps with channels-last on and off and with
bf16 autocast (trainer.precision=bf16-mixed), the frozen blocks in torch; then the default:
channels-last with the frozen blocks on onnxruntime (model.frozen_runtime).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig

from agegender.bench.workload import (
    THREADS,
    faces,
    print_result,
    quiet_lightning,
    torch_threads,
)
from agegender.configs import compose_config
from agegender.data.cache import open_or_build
from agegender.data.utkface import discover
from agegender.module import AgeGenderModule
from agegender.scenes import calibrate_batchnorm
from agegender.training import apply_speed_options, build_module

SIZE, BATCH, STEPS, ROUNDS = 128, 32, 20, 4
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


class StepTimer(L.Callback):
    """When each training step starts, per epoch."""

    def __init__(self) -> None:
        self.starts: list[list[float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.starts.append([])

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.starts[-1].append(time.perf_counter())


def plain_epoch(
    module: AgeGenderModule, optimizer: torch.optim.Optimizer, batches: list[Batch], bf16: bool
) -> list[float]:
    """One epoch of the plain loop; returns the start time of each step."""
    module.train()
    starts = []
    for index, batch in enumerate(batches):
        starts.append(time.perf_counter())
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    metrics = module.metrics["train_metrics"]
    metrics.compute()
    metrics.reset()
    return starts


def plain_steps(cfg: DictConfig, folder: Path, batches: list[Batch]) -> list[float]:
    """Step-to-step times of the plain loop's second epoch."""
    module = fresh_module(cfg, folder, batches[0]["image"])
    configured = module.configure_optimizers()  # the optimizer, or it with a schedule
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    plain_epoch(module, optimizer, batches, bf16)  # warm-up
    return np.diff(plain_epoch(module, optimizer, batches, bf16)).tolist()


def lightning_steps(cfg: DictConfig, folder: Path, batches: list[Batch]) -> list[float]:
    """Step-to-step times of a Trainer's second epoch: everything Lightning does per step."""
    module = fresh_module(cfg, folder, batches[0]["image"])
    timer = StepTimer()
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
    return np.diff(timer.starts[-1]).tolist()


def median_step(rounds: int, measures: dict[str, Callable[[], list[float]]]) -> dict[str, float]:
    """Median step time of each side over alternating rounds.

    The median of many steps ignores the few that another process slowed down, which a
    whole-epoch time cannot.
    """
    steps: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            steps[name] += measure()
    return {name: float(np.median(values)) for name, values in steps.items()}


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere oneDNN emulates
    it, many times slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def run(quick: bool = False) -> dict[str, Any]:
    size, batch, steps, rounds = (
        (QUICK_SIZE, QUICK_BATCH, QUICK_STEPS, QUICK_ROUNDS)
        if quick
        else (SIZE, BATCH, STEPS, ROUNDS)
    )
    base = ("phase=finetune", "model.pretrained=none", "schedule=none")
    base += (f"data.image_size={size}", f"data.batch_size={batch}")
    cfg = compose_config("train", *base)
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="agegender-bench-train-") as name,
        quiet_lightning(),
        torch_threads(THREADS),
    ):
        folder = Path(name)
        batches = make_batches(folder, size, batch, steps)
        step = median_step(
            rounds,
            {
                "plain PyTorch loop": lambda: plain_steps(cfg, folder, batches),
                "Lightning Trainer": lambda: lightning_steps(cfg, folder, batches),
            },
        )
        for loop, seconds in step.items():
            rows.append({"table": "overhead", "variant": loop, "images_per_s": batch / seconds})
        on_torch = "model.frozen_runtime=torch"
        variants = {
            "fp32, NCHW": ("model.channels_last=false", "trainer.precision=32-true", on_torch),
            "fp32, channels-last": (
                "model.channels_last=true",
                "trainer.precision=32-true",
                on_torch,
            ),
            "bf16-mixed, NCHW": (
                "model.channels_last=false",
                "trainer.precision=bf16-mixed",
                on_torch,
            ),
            "bf16-mixed, channels-last": (
                "model.channels_last=true",
                "trainer.precision=bf16-mixed",
                on_torch,
            ),
            "fp32, channels-last, frozen blocks on onnxruntime": (
                "model.channels_last=true",
                "trainer.precision=32-true",
                "model.frozen_runtime=onnxruntime",
            ),
        }
        # emulated bf16 steps would take most of the run and measure only the emulation; the
        # quick smoke run keeps them so that their configuration stays exercised
        skip_bf16 = not quick and not native_bf16()
        if skip_bf16:
            variants = {k: v for k, v in variants.items() if not k.startswith("bf16")}
        configs = {
            label: compose_config("train", *base, *extra) for label, extra in variants.items()
        }
        lean = median_step(
            max(1, rounds // 2),
            {
                label: lambda c=c: lightning_steps(c, folder, batches)
                for label, c in configs.items()
            },
        )
        for label, seconds in lean.items():
            rows.append({"table": "lean loop", "variant": label, "images_per_s": batch / seconds})
    overhead = step["Lightning Trainer"] / step["plain PyTorch loop"] - 1
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
            f"finetune (features[{cfg.phase.trainable_from}:] trainable), {size} px, "
            f"batch {batch}; median step "
            f"time over the second epoch ({steps} steps) of {rounds} alternating runs each "
            f"({max(1, rounds // 2)} for the lean loop); "
            f"overhead pair: model.channels_last={cfg.model.channels_last}, "
            f"model.frozen_runtime={cfg.model.frozen_runtime}, "
            f"{cfg.trainer.precision}; {THREADS} intra-op thread(s)"
            + ("; bf16 rows skipped: this CPU has no native bf16" if skip_bf16 else "")
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

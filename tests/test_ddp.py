"""trainer=ddp: two CPU processes (gloo) through the real training code, on generated faces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_training

# The entry point of train.py plus a probe callback (added by config) that writes what each
# rank saw. Lightning's DDP launcher re-runs this script for rank 1, with the same Hydra run
# folder.
PROBE = textwrap.dedent(
    """
    import json, os
    from pathlib import Path

    import hydra
    import lightning as L
    import torch.distributed as dist
    from hydra.core.hydra_config import HydraConfig

    import agegender.training as training

    class Probe(L.Callback):
        def __init__(self, run_dir):
            self.run_dir, self.sampler, self.indices = Path(run_dir), None, []

        def on_train_epoch_start(self, trainer, pl_module):
            sampler = trainer.train_dataloader.sampler
            self.sampler, self.indices = type(sampler).__name__, [int(i) for i in sampler]

        def on_fit_end(self, trainer, pl_module):
            rank = dist.get_rank() if dist.is_initialized() else 0
            record = {
                "rank": rank,
                "world_size": trainer.world_size,
                "sampler": self.sampler,
                "indices": self.indices,
                "train_size": len(trainer.datamodule.datasets["train"]),
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
            }
            (self.run_dir / f"probe-rank{rank}.json").write_text(json.dumps(record))

    @hydra.main(config_path=os.environ["AGEGENDER_CONF"], config_name="train", version_base="1.3")
    def main(cfg):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        summary = training.run_phase(cfg, run_dir)
        rank = dist.get_rank() if dist.is_initialized() else 0
        (run_dir / f"summary-rank{rank}.json").write_text(json.dumps(summary))

    main()
    """
)


@pytest.mark.slow  # two training processes; make test-slow runs it
def test_two_process_ddp_run_logs_once_with_identical_metrics_on_both_ranks(
    tmp_path: Path,
) -> None:
    probe = tmp_path / "ddp_probe.py"
    probe.write_text(PROBE)
    outputs = tmp_path / "outputs"
    result = subprocess.run(
        [
            sys.executable,
            str(probe),
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            *tiny_training(tmp_path),
            # the probe joins the callbacks by config alone, as any callback can
            "+callbacks.probe={_target_: __main__.Probe, run_dir: ${run_dir}}",
            f"outputs_dir={outputs}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "AGEGENDER_CONF": str(REPO / "conf")},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    runs = list((outputs / "frozen").iterdir())
    assert len(runs) == 1, runs  # both ranks used the same run folder
    run = runs[0]

    probes = [json.loads((run / f"probe-rank{r}.json").read_text()) for r in (0, 1)]
    assert [p["world_size"] for p in probes] == [2, 2]
    # Distributed sampling: each rank trains on its own half of the training split.
    assert [p["sampler"] for p in probes] == ["DistributedSampler"] * 2
    halves = [set(p["indices"]) for p in probes]
    assert halves[0] | halves[1] == set(range(probes[0]["train_size"]))
    assert len(halves[0] & halves[1]) <= 1  # padding to equal shares repeats at most one
    # Metrics are reduced across ranks: both report the same numbers.
    assert probes[0]["metrics"].keys() >= {"val/age_mae", "train/loss", "val/gender_acc"}
    assert probes[0]["metrics"] == probes[1]["metrics"]
    summaries = [json.loads((run / f"summary-rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["test"] == summaries[1]["test"] and summaries[0]["test"]
    assert summaries[0]["best_val_age_mae"] == summaries[1]["best_val_age_mae"]

    # Written once, by rank 0: metrics.json, plots, checkpoints, one TensorBoard writer.
    assert json.loads((run / "metrics.json").read_text())["test"] == summaries[0]["test"]
    assert len(json.loads((run / "plots" / "history.json").read_text())) == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    writers = {p.name.split(".")[-2] for p in (run / "tensorboard").glob("events.out.tfevents.*")}
    assert len(writers) == 1  # one process id
    # The feature cache was computed by one rank and reused by the other.
    log_files = sorted(run.glob("*.log"))  # <job name>.log and train_ddp_process_1.log
    assert len(log_files) == 2, log_files
    logs = "".join(file.read_text() for file in log_files)
    assert logs.count("feature cache on") == 2
    assert logs.count("reused") == 1, logs
    assert len(list((tmp_path / "cache").glob("features-*-plain.npy"))) == 1

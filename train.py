"""Train one phase: `python train.py phase=frozen`, then `python train.py phase=finetune`.

`python train.py resume=RUN_DIR` continues a killed run from its last.ckpt, with the run's
own config (overrides given with it win).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from agegender.errors import report_user_errors
from agegender.resume import expand_resume_or_exit
from agegender.training import run_phase
from agegender.validation import TRAIN, validate_entry


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    validate_entry(cfg, TRAIN)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    summary = run_phase(cfg, run_dir)
    print(f"\n{summary['phase']} phase done. Run folder: {run_dir}")
    print(f"  best checkpoint: {summary['best_checkpoint']}")
    print(f"  plots:           {run_dir / 'plots'}")
    print(f"  metrics:         {run_dir / 'metrics.json'}")
    print(f"  dashboards:      tensorboard --logdir {cfg.outputs_dir}")
    # The value a sweeper (e.g. hparams_search=optuna) minimises.
    return summary.get("best_val_age_mae")


if __name__ == "__main__":
    sys.argv = expand_resume_or_exit(sys.argv)
    main()

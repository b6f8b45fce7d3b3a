"""Evaluate a model: `python eval.py ckpt=latest` (saved test split) or `data.root=PATH`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from agegender.checkpoint import resolve_checkpoint
from agegender.errors import report_user_errors
from agegender.evaluation.run import evaluate
from agegender.io import write_atomic
from agegender.validation import EVAL, validate_entry


@hydra.main(config_path="conf", config_name="eval", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> float:
    validate_entry(cfg, EVAL)
    model = resolve_checkpoint(cfg.ckpt, cfg.outputs_dir)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    result = evaluate(
        model,
        data_cfg,  # type: ignore[arg-type]
        out_dir=cfg.out,
        part=cfg.split,
        tta=cfg.tta,
        batch_size=int(cfg.batch_size),
        worst=int(cfg.worst),
        tensorboard=bool(cfg.tensorboard),
        crop=str(cfg.crop),
    )
    write_atomic(result.out_dir / "eval_config.yaml", OmegaConf.to_yaml(cfg))
    chosen = "flip" if cfg.tta == "flip" else "plain"
    overall = result.summary["results"][chosen]["overall"]
    print(f"\nEvaluated {model} on {result.summary['data']}")
    print(f"  crop={cfg.crop}: {result.summary['framing']}")
    for name, res in result.summary["results"].items():
        o = res["overall"]
        print(
            f"  {name:5s}  age MAE {o['age_mae']:.2f}  RMSE {o['age_rmse']:.2f}  "
            f"CS@5 {o['age_cs5']:.1%}  bias {o['age_bias']:+.2f}  "
            f"gender acc {o['gender_acc']:.1%}"
        )
    print(f"  report:  {result.out_dir / 'report.md'}")
    print(f"  metrics: {result.out_dir / 'metrics.json'}")
    if cfg.tensorboard:
        print(f"  dashboards: tensorboard --logdir {result.out_dir / 'tensorboard'}")
    return overall["age_mae"]


if __name__ == "__main__":
    main()

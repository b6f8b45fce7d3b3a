"""Export a model: `python export.py ckpt=latest` writes a parity-checked model.onnx."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from agegender.checkpoint import resolve_checkpoint
from agegender.errors import report_user_errors
from agegender.export import export
from agegender.export.quantize import report_lines
from agegender.validation import EXPORT, validate_entry


@hydra.main(config_path="conf", config_name="export", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    validate_entry(cfg, EXPORT)
    checkpoint = resolve_checkpoint(cfg.ckpt, cfg.outputs_dir)
    result = export(
        checkpoint,
        out=cfg.out,
        fmt=cfg.format,
        opset=int(cfg.opset),
        quantize=cfg.quantize,
        quantize_method=cfg.quantize_method,
        data_cfg=OmegaConf.to_container(cfg.data, resolve=True),  # type: ignore[arg-type]
        parity_images=int(cfg.parity.images),
        age_tolerance=float(cfg.parity.age_tolerance),
        p_tolerance=float(cfg.parity.p_female_tolerance),
        speed_seconds=float(cfg.speed_seconds),
    )
    print(f"\nExported {checkpoint}\n  -> {result.path} ({result.format})")
    print(f"  parity with PyTorch: {result.parity.line()}")
    if result.int8_path is not None and result.int8 is not None:
        print(f"  int8: {result.int8_path}")
        for line in report_lines(result.int8):
            print(f"    {line}")
    if result.format == "onnx":
        print(f"  run it: python live.py ckpt={result.path}")


if __name__ == "__main__":
    main()

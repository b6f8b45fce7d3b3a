"""`make demo`: train both phases, export, evaluate and run live, all on synthetic data.

Each step runs the real entry script, exactly as a user would type it, so the demo shows
the commands as much as it tests them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console()


def step(title: str, command: list[str]) -> None:
    console.rule(f"[bold]{title}")
    console.print(f"$ {shlex.join(command)}", style="cyan")
    started = time.perf_counter()
    result = subprocess.run(command)
    if result.returncode != 0:
        console.print(f"[red]demo step failed ({title}), exit status {result.returncode}")
        sys.exit(result.returncode)
    console.print(f"[green]{title}: done in {time.perf_counter() - started:.0f} s")


def newest_run(outputs: Path, phase: str) -> Path:
    return sorted((outputs / phase).iterdir(), key=lambda p: p.stat().st_mtime)[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    args = parser.parse_args(argv)
    outputs: Path = args.out
    python = sys.executable
    common = ["experiment=demo", f"outputs_dir={outputs}", *args.overrides]
    started = time.perf_counter()

    step("1/5 frozen phase", [python, "train.py", "phase=frozen", *common])
    # A random backbone gives the frozen phase little to build on, so the demo's finetune
    # trains every block, at the frozen phase's learning rate (with ImageNet weights, the
    # recipe's features[10:] at 1e-4 is the right choice).
    scratch = [
        "phase.trainable_from=0",
        "optim.lr=1e-3",
        "trainer.max_epochs=16",
        "callbacks.early_stopping.patience=16",
    ]
    if any(o.startswith("model.pretrained=imagenet") for o in args.overrides):
        scratch = []
    step("2/5 finetune phase", [python, "train.py", "phase=finetune", *common, *scratch])
    finetune = newest_run(outputs, "finetune")
    best = finetune / "checkpoints" / "best.ckpt"
    onnx = finetune / "model.onnx"
    step("3/5 export to ONNX", [python, "export.py", f"ckpt={best}", f"out={onnx}"])
    report = finetune / "eval"
    step("4/5 evaluation report", [python, "eval.py", f"ckpt={best}", f"out={report}"])

    from agegender.bench.live import make_face_clip  # astronaut faces moving on a backdrop

    clip = outputs / "live_input.mp4"
    make_face_clip(clip, faces=2, frames=90)
    annotated = outputs / "live_annotated.mp4"
    step(
        "5/5 live on a generated clip",
        [
            python,
            "live.py",
            f"ckpt={onnx}",
            f"source={clip}",
            "display=false",
            f"save={annotated}",
            f"jsonl={outputs / 'live_faces.jsonl'}",
        ],
    )

    frozen = newest_run(outputs, "frozen")
    console.rule("[bold]demo finished")
    for run in (frozen, finetune):
        test = json.loads((run / "metrics.json").read_text()).get("test", {})
        console.print(
            f"{run.parent.name:8s} test age MAE {test.get('test/age_mae', float('nan')):.2f} "
            f"years, gender accuracy {test.get('test/gender_acc', float('nan')):.3f}"
        )
    console.print(f"checkpoints   {frozen / 'checkpoints'}  and  {finetune / 'checkpoints'}")
    console.print(f"plots         {frozen / 'plots'}  and  {finetune / 'plots'}")
    console.print(f"ONNX model    {onnx}")
    console.print(f"eval report   {report / 'report.md'}")
    console.print(f"live video    {annotated}")
    console.print(f"dashboards    tensorboard --logdir {outputs}")
    console.print(f"total time    {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

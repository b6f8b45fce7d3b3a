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

from agegender.checkpoint import find_latest_best
from agegender.scenes import make_face_clip

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
    """The run folder of the newest finished run of `phase` (what training just wrote)."""
    best = find_latest_best(outputs, phase, anywhere=False)
    if best is None:
        console.print(f"[red]no finished {phase} run under {outputs}")
        sys.exit(1)
    return best.parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument(
        "--imagenet",
        action="store_true",
        help="start from ImageNet weights and keep the default finetune (needs the weights)",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for training")
    args = parser.parse_args(argv)
    outputs: Path = args.out
    python = sys.executable
    common = [f"outputs_dir={outputs}", *args.overrides]
    # conf/experiment/demo*.yaml: demo_scratch finetunes every block of a random backbone,
    # demo_imagenet keeps the default finetune.
    frozen_experiment, finetune_experiment = (
        ("demo_imagenet", "demo_imagenet") if args.imagenet else ("demo", "demo_scratch")
    )
    started = time.perf_counter()

    step(
        "1/5 frozen phase",
        [python, "train.py", "phase=frozen", f"experiment={frozen_experiment}", *common],
    )
    step(
        "2/5 finetune phase",
        [python, "train.py", "phase=finetune", f"experiment={finetune_experiment}", *common],
    )
    finetune = newest_run(outputs, "finetune")
    best = finetune / "checkpoints" / "best.ckpt"
    onnx = finetune / "model.onnx"
    step("3/5 export to ONNX", [python, "export.py", f"ckpt={best}", f"out={onnx}"])
    report = finetune / "eval"
    step("4/5 evaluation report", [python, "eval.py", f"ckpt={best}", f"out={report}"])

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

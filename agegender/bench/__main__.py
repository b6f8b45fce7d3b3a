"""`python -m agegender.bench [data|frozen|train|infer|live|serve|all] [--quick] [--json PATH]`."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

import torch

from agegender.io import write_atomic

ENTRIES = ("data", "frozen", "train", "infer", "live", "serve")
# the module of each entry, where its name differs (`live` times the whole live loop)
MODULES = {"live": "live_loop"}


def machine_description() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agegender.bench", description=__doc__)
    parser.add_argument("entry", choices=(*ENTRIES, "all"), help="which benchmark to run")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for smoke tests")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    entries = ENTRIES if args.entry == "all" else (args.entry,)
    results = {"machine": machine_description(), "entries": []}
    for name in entries:
        module = importlib.import_module(f"agegender.bench.{MODULES.get(name, name)}")
        results["entries"].append(module.run(quick=args.quick))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

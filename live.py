"""Live age and gender from faces: `python live.py ckpt=PATH source=0|VIDEO|IMAGE|FOLDER|URL`.

Options are in conf/live.yaml (detector=haar|full_frame|yunet, save=, jsonl=, csv=,
display=auto|true|false, ...). Known problems (a missing checkpoint, a bad source) end with
one line on stderr and exit code 2; Ctrl-C ends with complete outputs and exit code 130.
"""

from __future__ import annotations

import signal
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from agegender.inference.live import EXIT_INTERRUPTED, KNOWN_ERRORS, run_from_config


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # same clean stop as Ctrl-C: outputs are closed and complete


@hydra.main(config_path="conf", config_name="live", version_base="1.3")
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        summary = run_from_config(OmegaConf.to_container(cfg, resolve=True))
    except KNOWN_ERRORS as error:
        print(f"live.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("live.py: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary.stopped == "interrupt":
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()

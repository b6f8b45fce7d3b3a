"""Live age and gender from faces: `python live.py ckpt=PATH source=0|VIDEO|IMAGE|FOLDER|URL`.

Options are in conf/live.yaml (detector=haar|full_frame|yunet, save=, jsonl=, csv=,
display=auto|true|false, ...). Bad input (a missing checkpoint, a bad source) ends with one
line on stderr and exit code 2; Ctrl-C ends with complete outputs and exit code 130; a source
that lost frames (a damaged video, a stalled stream) ends with exit code 3 unless
allow_lost_frames=true.
"""

from __future__ import annotations

import signal
import sys

import hydra
from omegaconf import DictConfig

from agegender.errors import report_user_errors
from agegender.inference.live import EXIT_INTERRUPTED, EXIT_LOST_FRAMES, run_from_config
from agegender.validation import LIVE, validate_entry


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C: outputs are closed and complete


@hydra.main(config_path="conf", config_name="live", version_base="1.3")
@report_user_errors
def main(cfg: DictConfig) -> None:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    config = validate_entry(cfg, LIVE)
    try:
        summary = run_from_config(config)
    except KeyboardInterrupt:  # before the loop started (loading the model, opening a camera)
        print("live.py: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    if summary.stopped == "interrupt":
        sys.exit(EXIT_INTERRUPTED)
    if summary.problem and not config.get("allow_lost_frames", False):
        sys.exit(EXIT_LOST_FRAMES)


if __name__ == "__main__":
    main()

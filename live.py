"""Live age and gender from faces: `python live.py ckpt=PATH source=0|VIDEO|IMAGE|FOLDER|URL`.

Options are in conf/live.yaml (detector=haar|full_frame|yunet, save=, jsonl=, csv=,
display=auto|true|false, ...). Bad input (a missing checkpoint, a bad source) ends with one
line on stderr and exit code 2; Ctrl-C ends with complete outputs and exit code 130; a source
that lost frames (a damaged video, a stalled stream) ends with exit code 3 unless
allow_lost_frames=true.
"""

from agegender.cli import live

if __name__ == "__main__":
    live()

"""Live pipeline benchmark: frames/s and ms per stage on a generated 640x480 clip.

The clip composites the face of `skimage.data.astronaut()` (a public-domain NASA photograph)
at moving positions on a still background, with one or three faces, so the live detector
(YuNet) works as it would on a camera. The whole loop of `live.py` runs on it (decode, detect, crop,
predict, track, draw; no window, no file output), with the tuned defaults and with detection
and prediction on every frame, for a checkpoint on torch and on onnxruntime (live.py's
`runtime=torch` and its CPU default).
Box recall against the known face positions shows that carrying boxes between detections
keeps them on the faces.

`python -m agegender.bench.live_loop --image-size 128 144` times models of several input sizes
side by side in one run (what a larger input costs the live loop);
`python -m agegender.bench.live_loop --clip PATH [--faces N] [--frames N]` only writes a clip
(used by `make demo`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from agegender.faces.detectors import Box
from agegender.inference.backends import load_predictor
from agegender.inference.pipeline import STAGES, FacePipeline, LiveSettings, StageClock, set_threads
from agegender.inference.pipeline import run as run_loop
from agegender.inference.predictor import Predictor
from agegender.inference.sources import open_source
from agegender.scenes import (
    IMAGE_SIZE,
    background,
    live_detector,
    make_face_clip,
    write_untrained_checkpoint,
)
from agegender.validation import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

# (detect_every, predict_every, scan_every): the defaults, and everything on every frame
MODES = {"tuned": (3, 3, 4), "every frame": (1, 1, 1)}
THREADS = 1  # torch and OpenCV threads, as in conf/live.yaml


def measure(
    predictor: Predictor,
    clip: Path,
    truth: list[list[Box]],
    detect_every: int,
    predict_every: int,
    scan_every: int,
) -> dict:
    """One pass of the live loop over the clip: frames/s, ms per stage, box recall."""
    detector = live_detector()
    size = predictor.image_size
    predictor.predict([np.zeros((size, size, 3), np.uint8)] * 3)  # warm-up
    detector.detect(background())
    settings = LiveSettings(  # one crop per face (tta=none): the network's own cost
        detect_every=detect_every, predict_every=predict_every, scan_every=scan_every, tta=None
    )
    pipeline = FacePipeline(predictor, detector, settings, StageClock())
    found = total = 0
    overlaps: list[float] = []

    def score(frame, faces) -> None:
        nonlocal found, total
        for true in truth[frame.index]:
            best = max((true.iou(face.box) for face in faces), default=0.0)
            total += 1
            if best >= 0.5:
                found += 1
                overlaps.append(best)

    with open_source(str(clip)) as source:
        summary = run_loop(source, pipeline, display=False, draw=True, observer=score)
        decode_ms = 1000 * source.read_seconds / max(1, summary.frames)
    return {
        "fps": round(summary.fps, 1),
        **{f"{k}_ms": round(v, 2) for k, v in summary.stage_ms.items()},
        "decode_thread_ms": round(decode_ms, 2),
        "box_recall": round(found / max(1, total), 3),
        "box_iou": round(float(np.mean(overlaps)) if overlaps else 0.0, 3),
        "frames": summary.frames,
    }


def _measure_all(frames: int, image_sizes: tuple[int, ...]) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="agegender-bench-live-") as tmp:
        workdir = Path(tmp)
        predictors: dict[tuple[int, str], Predictor] = {}
        for size in image_sizes:
            checkpoint = write_untrained_checkpoint(workdir / f"bench{size}.ckpt", size)
            # what live.py ckpt=... runtime=torch|onnxruntime runs
            for runtime in ("torch", "onnxruntime"):
                predictors[size, runtime] = load_predictor(
                    checkpoint, threads=THREADS, runtime=runtime
                )
        for faces in (1, 3):
            clip = workdir / f"clip{faces}.mp4"
            truth = make_face_clip(clip, faces=faces, frames=frames)
            for mode, cadence in MODES.items():
                for (size, backend), predictor in predictors.items():
                    result = measure(predictor, clip, truth, *cadence)
                    rows.append(
                        {"faces": faces, "mode": mode, "input": size, "backend": backend, **result}
                    )
    return rows


def run(quick: bool = False, image_sizes: tuple[int, ...] = (IMAGE_SIZE,)) -> dict:
    frames = 60 if quick else 300
    threads_before = torch.get_num_threads(), cv2.getNumThreads()
    set_threads(THREADS)  # what conf/live.yaml uses
    try:
        rows = _measure_all(frames, image_sizes)
    finally:
        torch.set_num_threads(threads_before[0])
        cv2.setNumThreads(threads_before[1])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    sizes = " and ".join(f"{size}" for size in image_sizes)
    note = (
        f"{frames} frames of 640x480 per row, model input {sizes}px, threads "
        f"{THREADS}, {os.cpu_count()} CPUs, load average {load}; tuned = detect every "
        f"{MODES['tuned'][0]} frames (a full scan every {MODES['tuned'][2]}th time, otherwise "
        f"near known faces), predict each face every {MODES['tuned'][1]}; decoding "
        f"runs in a reader thread (decode_thread), overlapped with the loop (capture = time "
        f"the loop waited for a frame)"
    )
    ratios = {}
    for faces in (1, 3):
        tuned = [r for r in rows if r["faces"] == faces and r["mode"] == "tuned"]
        every = [r for r in rows if r["faces"] == faces and r["mode"] == "every frame"]
        for t, e in zip(tuned, every, strict=True):
            size = "" if len(image_sizes) == 1 else f", {t['input']}px"
            key = f"tuned/every-frame fps, {faces} face(s), {t['backend']}{size}"
            ratios[key] = round(t["fps"] / e["fps"], 2)
    _print_table(rows, note)
    return {"entry": "live", "rows": rows, "ratios": ratios, "notes": note}


def _print_table(rows: list[dict], note: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="live pipeline: frames/s and ms per frame per stage")
    columns = ["faces", "mode", "input", "backend", "fps", *(f"{s}_ms" for s in STAGES)]
    columns += ["decode_thread_ms", "box_recall", "box_iou"]
    for column in columns:
        table.add_column(column.removesuffix("_ms"), justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print(f"[dim]{note}[/dim]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agegender.bench.live_loop", description=__doc__
    )
    parser.add_argument("--clip", type=Path, help="only write a generated clip to this path")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--image-size", type=int, nargs="+", default=[IMAGE_SIZE], help="model input sizes"
    )
    args = parser.parse_args(argv)
    if any(not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE for size in args.image_size):
        parser.error(
            f"--image-size: each size must be {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} pixels, "
            "as data.image_size"
        )
    if args.clip:
        make_face_clip(args.clip, faces=args.faces, frames=args.frames)
        print(f"wrote {args.clip} ({args.frames} frames, {args.faces} face(s), 640x480)")
        return 0
    run(quick=args.quick, image_sizes=tuple(args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())

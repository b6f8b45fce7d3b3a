"""Live pipeline benchmark: frames/s and ms per stage on a generated 640x480 clip.

The clip composites the face of `skimage.data.astronaut()` (a public-domain NASA photograph)
at moving positions on a still background, with one or three faces, so the live detector
(YuNet) works as it would on a camera. The whole loop of `live.py` runs on it (decode, detect, crop,
predict, track, draw; no window, no file output), with the tuned defaults and with detection
and prediction on every frame, for the torch backend and, when it is available, onnxruntime.
Box recall against the known face positions shows that carrying boxes between detections
keeps them on the faces.

`python -m agegender.bench.live --clip PATH [--faces N] [--frames N]` only writes a clip
(used by `make demo`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from agegender.checkpoint import build_meta
from agegender.faces.detectors import Box, Detector, build_detector
from agegender.faces.photo import PhotoCrop
from agegender.inference.live import STAGES, FacePipeline, LiveSettings, StageClock, set_threads
from agegender.inference.live import run as run_loop
from agegender.inference.predictor import Predictor, TorchPredictor
from agegender.inference.sources import open_source
from agegender.model import AgeGenderNet, NetConfig

FRAME_SIZE = (640, 480)
FPS = 30.0
IMAGE_SIZE = 128  # the model input of conf/data/utkface.yaml
# (patch side in pixels, lane centre y, horizontal speed px/frame, phase) for each face
FACE_PATHS = ((150, 240, 4.0, 0.0), (140, 95, -5.0, 0.35), (130, 385, 3.0, 0.7))
# (detect_every, predict_every, scan_every): the defaults, and everything on every frame
MODES = {"tuned": (3, 3, 4), "every frame": (1, 1, 1)}
THREADS = 1  # torch and OpenCV threads, as in conf/live.yaml


@dataclass
class FacePatch:
    image: np.ndarray  # BGR square around the face
    mask: np.ndarray  # float alpha [H, W, 1], soft ellipse
    face: Box  # the face box inside `image`


def astronaut_patch() -> FacePatch:
    """The astronaut's head, square, with a soft elliptical mask to blend it in."""
    try:
        from skimage import data
    except ImportError as error:  # a dev dependency: pip install -e '.[dev]'
        raise SystemExit(
            "the live benchmark needs scikit-image: pip install scikit-image"
        ) from error
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    found = live_detector().detect_still(bgr)
    face = max(found, key=lambda b: b.area)  # one face in this photograph
    cx, cy = face.center
    half = int(face.width * 1.1)  # head and some hair around the face, like a webcam shot
    x1, y1 = max(0, int(cx) - half), max(0, int(cy) - half)
    image = bgr[y1 : y1 + 2 * half, x1 : x1 + 2 * half]
    side = image.shape[0]
    mask = np.zeros((side, side), np.float32)
    cv2.ellipse(
        mask, (side // 2, side // 2), (int(side * 0.45), int(side * 0.49)), 0, 0, 360, 1, -1
    )
    mask = cv2.GaussianBlur(mask, (0, 0), side / 30)[..., None]
    local = Box(face.x1 - x1, face.y1 - y1, face.x2 - x1, face.y2 - y1)
    return FacePatch(image, mask, local)


def live_detector() -> Detector:
    """The detector live.py uses by default (conf/live.yaml), with its default options."""
    return build_detector("yunet")


def background(size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A still 'room': a soft gradient and a few shapes, so the frame is not blank."""
    width, height = size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([60 + 80 * xs / width, 90 + 40 * ys / height, 120 - 50 * xs / width], -1)
    frame = frame.astype(np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(40, 220, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 160)), int(rng.integers(20, 160))
        cv2.rectangle(frame, (x, y), (x + w, y + h), color, -1)
    return cv2.GaussianBlur(frame, (0, 0), 2)


def _position(index: int, path: tuple, width: int, side: int) -> tuple[int, int]:
    """Patch top-left at a frame: back and forth across the frame, bobbing up and down."""
    _, lane_y, speed, phase = path
    span = width - side
    travel = (phase * 2 * span + speed * index) % (2 * span)
    x = travel if travel <= span else 2 * span - travel
    y = lane_y - side / 2 + 12 * np.sin(index / 9 + phase * 6)
    return int(round(x)), int(round(y))


def make_face_clip(
    path: str | Path, faces: int = 1, frames: int = 90, size: tuple[int, int] = FRAME_SIZE
) -> list[list[Box]]:
    """Write a clip (mp4v) with `faces` moving astronaut faces; returns the face boxes per
    frame (where the live detector finds the face in the full-resolution photograph)."""
    if not 1 <= faces <= len(FACE_PATHS):
        raise ValueError(f"faces must be 1..{len(FACE_PATHS)}, got {faces}")
    patch = astronaut_patch()
    base = background(size)
    scaled = []
    for side, *_ in FACE_PATHS[:faces]:
        factor = side / patch.image.shape[0]
        image = cv2.resize(patch.image, (side, side), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(patch.mask, (side, side), interpolation=cv2.INTER_AREA)[..., None]
        face = Box(*(v * factor for v in patch.face[:4]))
        scaled.append((image.astype(np.float32), mask, face))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    truth: list[list[Box]] = []
    try:
        for index in range(frames):
            frame = base.astype(np.float32)
            boxes = []
            for (image, mask, face), route in zip(scaled, FACE_PATHS, strict=False):
                side = image.shape[0]
                x, y = _position(index, route, size[0], side)
                region = frame[y : y + side, x : x + side]
                region[:] = mask * image + (1 - mask) * region
                boxes.append(Box(face.x1 + x, face.y1 + y, face.x2 + x, face.y2 + y))
            writer.write(frame.astype(np.uint8))
            truth.append(boxes)
    finally:
        writer.release()
    return truth


def write_bench_checkpoint(path: Path, image_size: int = IMAGE_SIZE) -> Path:
    """An untrained checkpoint: speed does not depend on the weights' values."""
    torch.manual_seed(0)
    net = NetConfig()
    model = AgeGenderNet(net)
    model.init_age_bias(30.0)  # plausible labels in pictures made with it
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    # framed as the default training data is, so the live loop aligns faces as it would
    meta = build_meta(net, image_size, (1, 80), "frozen", crop=PhotoCrop().to_meta())
    torch.save({"state_dict": state, "agegender": meta}, path)
    return path


def onnx_predictor(checkpoint: Path, workdir: Path) -> tuple[Predictor | None, str]:
    """The checkpoint exported to ONNX (export.py's code) on onnxruntime, or None and why."""
    try:
        from agegender.export import export
        from agegender.inference.onnx_backend import OnnxPredictor
    except ImportError as error:
        return None, f"onnxruntime column skipped: export not available ({error})"
    result = export(checkpoint, out=workdir / "bench.onnx", parity_images=4)
    return OnnxPredictor(result.path, threads=THREADS), ""


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
    predictor.predict([np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)] * 3)  # warm-up
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


def _measure_all(frames: int, notes: list[str]) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="agegender-bench-live-") as tmp:
        workdir = Path(tmp)
        checkpoint = write_bench_checkpoint(workdir / "bench.ckpt")
        predictors: dict[str, Predictor] = {"torch": TorchPredictor(checkpoint)}
        onnx, why = onnx_predictor(checkpoint, workdir)
        if onnx is not None:
            predictors["onnxruntime"] = onnx
        else:
            notes.append(why)
        for faces in (1, 3):
            clip = workdir / f"clip{faces}.mp4"
            truth = make_face_clip(clip, faces=faces, frames=frames)
            for mode, cadence in MODES.items():
                for backend, predictor in predictors.items():
                    result = measure(predictor, clip, truth, *cadence)
                    rows.append({"faces": faces, "mode": mode, "backend": backend, **result})
    return rows


def run(quick: bool = False) -> dict:
    frames = 60 if quick else 300
    notes: list[str] = []
    threads_before = torch.get_num_threads(), cv2.getNumThreads()
    set_threads(THREADS)  # what conf/live.yaml uses
    try:
        rows = _measure_all(frames, notes)
    finally:
        torch.set_num_threads(threads_before[0])
        cv2.setNumThreads(threads_before[1])
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    notes.append(
        f"{frames} frames of 640x480 per row, model input {IMAGE_SIZE}px, threads "
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
            key = f"tuned/every-frame fps, {faces} face(s), {t['backend']}"
            ratios[key] = round(t["fps"] / e["fps"], 2)
    _print_table(rows, notes)
    return {"entry": "live", "rows": rows, "ratios": ratios, "notes": "; ".join(notes)}


def _print_table(rows: list[dict], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="live pipeline: frames/s and ms per frame per stage")
    columns = ["faces", "mode", "backend", "fps", *(f"{s}_ms" for s in STAGES)]
    columns += ["decode_thread_ms", "box_recall", "box_iou"]
    for column in columns:
        table.add_column(column.removesuffix("_ms"), justify="right")
    for row in rows:
        table.add_row(*(str(row[c]) for c in columns))
    console = Console(width=max(Console().width, 150))
    console.print(table)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agegender.bench.live", description=__doc__)
    parser.add_argument("--clip", type=Path, help="only write a generated clip to this path")
    parser.add_argument("--faces", type=int, default=1)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.clip:
        make_face_clip(args.clip, faces=args.faces, frames=args.frames)
        print(f"wrote {args.clip} ({args.frames} frames, {args.faces} face(s), 640x480)")
        return 0
    run(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())

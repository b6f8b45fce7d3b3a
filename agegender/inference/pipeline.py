"""The live loop: frame -> faces -> one batched model call -> tracks -> overlay -> outputs.

`FacePipeline.process` does one frame; `run` drives a source through it into sinks and an
optional window; `run_from_config` builds everything from live.py's Hydra config. A
`StageClock` times every stage, so the benchmark measures the very loop users run.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np

from agegender.checkpoint import resolve_checkpoint
from agegender.configs import live_defaults
from agegender.errors import UserError
from agegender.faces.crop import Framing, crop_face, framing_of
from agegender.faces.detectors import Box, Detector, build_detector
from agegender.inference.backends import open_predictor
from agegender.inference.overlay import draw_faces, draw_fps
from agegender.inference.predictor import Predictor
from agegender.inference.sinks import Sink, check_sink_paths, open_sinks
from agegender.inference.sources import Frame, Source, open_source
from agegender.inference.tracking import IouTracker, Track, ema

STAGES = ("capture", "detect", "crop", "predict", "track", "draw", "output")
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C
EXIT_LOST_FRAMES = 3  # the source lost frames (damaged video, stalled stream)


class LiveError(UserError):
    """A live option that cannot work (bad value, no display, missing backend)."""


class StageClock:
    """Adds up wall time per stage with one perf_counter call per stage boundary."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.frames = 0
        self._mark = time.perf_counter()

    def start(self) -> None:
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._mark
        self._mark = now

    def per_frame_ms(self) -> dict[str, float]:
        frames = max(1, self.frames)
        return {stage: 1000 * total / frames for stage, total in self.seconds.items()}


_LIVE = live_defaults()


@dataclass
class LiveSettings:
    """The pipeline keys of conf/live.yaml (their meaning and defaults are there)."""

    detect_every: int = int(_LIVE.detect_every)
    scan_every: int = int(_LIVE.scan_every)
    predict_every: int = int(_LIVE.predict_every)
    smoothing: float = float(_LIVE.smoothing)
    max_missed_frames: int = int(_LIVE.max_missed_frames)
    hold: int = int(_LIVE.hold)
    iou_threshold: float = float(_LIVE.iou_threshold)
    tta: str | None = _LIVE.tta  # flip: each face averaged with its mirror image; None/"none"
    match_source: bool = bool(_LIVE.match_source)  # False: sharp faces stay as sharp as they come

    def __post_init__(self) -> None:
        for name in ("detect_every", "scan_every", "predict_every"):
            if int(getattr(self, name)) < 1:
                raise LiveError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.smoothing < 1:
            raise LiveError(f"smoothing must be in [0, 1) (0 = off), got {self.smoothing}")
        if self.tta not in (None, "none", "flip"):
            raise LiveError(f"tta={self.tta}: use tta=flip, or leave it out")
        if not isinstance(self.match_source, bool):
            raise LiveError(f"match_source={self.match_source}: use true or false")


def crop_faces(frame: np.ndarray, boxes: Sequence[Box], framing: Framing, size: int) -> list:
    """BGR frame -> RGB uint8 crops [size, size, 3], one per box, through the face path
    (cropped before the colour swap: the same pixels, less work)."""
    return [cv2.cvtColor(crop_face(frame, box, framing, size), cv2.COLOR_BGR2RGB) for box in boxes]


class FacePipeline:
    """Detect (every few frames), track, crop and predict all due faces in one batch."""

    def __init__(
        self,
        predictor: Predictor,
        detector: Detector,
        settings: LiveSettings | None = None,
        clock: StageClock | None = None,
    ) -> None:
        self.predictor = predictor
        self.detector = detector
        self.settings = settings or LiveSettings()
        self.clock = clock or StageClock()
        s = self.settings
        self.tracker = IouTracker(s.iou_threshold, s.max_missed_frames, s.hold, s.smoothing)
        self.framing = framing_of(predictor.meta, s.match_source)  # as the model was trained
        self.frames_seen = 0

    def process(self, frame: Frame, stills: bool = False) -> list[Track]:
        """Faces of this frame as tracks, each with its shown (smoothed) prediction.

        `stills`: the frame is unrelated to the previous one (a folder of images), so it is
        detected and predicted afresh, with no tracking or smoothing across frames.
        """
        clock = self.clock
        detections = self._detect(frame.image, stills)
        clock.lap("detect")
        if stills:
            self.tracker.reset()
        faces = self.tracker.step(detections)
        due = self._due(faces)
        clock.lap("track")
        boxes = [t.box.carry_landmarks(t.detection) for t in due]
        crops = crop_faces(frame.image, boxes, self.framing, self.predictor.image_size)
        clock.lap("crop")
        flip = self.settings.tta == "flip"
        outputs = self.predictor.predict(crops, flip) if crops else np.zeros((0, 2), np.float32)
        clock.lap("predict")
        for track, (age, p_female) in zip(due, outputs, strict=True):
            self.tracker.update_prediction(track, float(age), float(p_female))
        clock.lap("track")
        self.frames_seen += 1
        return faces

    def _detect(self, image: np.ndarray, stills: bool) -> list[Box] | None:
        """Detections for this frame, or None when the tracker carries the boxes.

        A full scan every `scan_every` detections finds new faces; in between, only the
        regions around known faces are searched, which keeps their boxes exact for a fraction
        of the cost. With no face known, every detection is a full scan.
        """
        s = self.settings
        if stills:
            return self.detector.detect_still(image)
        if self.frames_seen % s.detect_every:
            return None
        known = [t.next_box() for t in self.tracker.visible()]
        if not known or (self.frames_seen // s.detect_every) % s.scan_every == 0:
            return self.detector.detect(image)
        return self.detector.detect_near(image, known)

    def _due(self, faces: list[Track]) -> list[Track]:
        """New faces, plus the stalest faces whose label is predict_every frames old.

        At most ceil(n / predict_every) known faces per frame, so the model's work spreads
        evenly over frames (steady frame times) instead of all faces on the same frame.
        """
        every = self.settings.predict_every
        new = [t for t in faces if t.raw is None]
        stale = [t for t in faces if t.raw is not None and t.frames_since_predict >= every]
        stale.sort(key=lambda t: t.frames_since_predict, reverse=True)
        return new + stale[: math.ceil(len(faces) / every)]


@dataclass
class RunSummary:
    frames: int
    seconds: float
    faces: int  # faces over all frames
    stopped: str  # end | quit | interrupt | max_frames
    stage_ms: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # frames the source lost (damaged video, stalled stream)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class _Window:
    """An OpenCV window; q, Esc or closing it asks to stop."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.opened = False

    def show(self, image: np.ndarray) -> bool:
        """Show a frame; False when the user asked to quit."""
        try:
            if not self.opened:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self.opened = True
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
            closed = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error as error:
            raise LiveError(
                "display=true but OpenCV cannot open a window here; use display=false"
            ) from error
        return key not in QUIT_KEYS and not closed

    def close(self) -> None:
        if self.opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


class StopOnSignal:
    """Ctrl-C and SIGTERM become a stop request honoured between frames.

    A signal raised mid-frame could land between two sinks' writes and leave the video one
    frame ahead of the JSONL; between frames every output holds the same frames. A second
    signal stops at once (KeyboardInterrupt), for a source that hangs.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _request(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # handlers only live there
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._request)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def run(
    source: Source,
    pipeline: FacePipeline,
    sinks: Sequence[Sink] = (),
    display: bool = False,
    max_frames: int | None = None,
    draw: bool | None = None,
    observer: Callable[[Frame, list[Track]], None] | None = None,
    title: str = "agegender live (q to quit)",
) -> RunSummary:
    """Drive `source` through `pipeline` into `sinks`: complete files at the end, also on q or
    Ctrl-C; none when an error stops the run.

    `draw` defaults to drawing only when someone sees the pixels (a window or a video sink).
    `observer(frame, faces)` is called for every frame after the outputs (tests, benchmark).
    """
    clock = pipeline.clock
    draw = (display or any(s.needs_pixels for s in sinks)) if draw is None else draw
    window = _Window(title) if display else None
    frames = faces_total = 0
    stopped = "end"
    shown_fps = frame_time = 0.0
    start = previous = time.perf_counter()
    clock.start()
    finished = False  # False: an error stopped the run, and its outputs are dropped
    stop = StopOnSignal().__enter__()
    try:
        for frame in source:
            clock.lap("capture")
            faces = pipeline.process(frame, stills=source.stills)
            if draw:
                draw_faces(frame.image, faces)
                if not source.stills:
                    draw_fps(frame.image, shown_fps)
            clock.lap("draw")
            for sink in sinks:
                sink.write(frame, frame.image, faces)
            keep_going = window.show(frame.image) if window else True
            clock.lap("output")
            if observer is not None:
                observer(frame, faces)
                clock.start()  # the observer's time is not the pipeline's
            frames += 1
            clock.frames = frames
            faces_total += len(faces)
            now = time.perf_counter()
            # average frame *times* (not rates): frames with and without detection differ a lot
            frame_time = ema(None if frames == 1 else frame_time, now - previous, 0.9)
            shown_fps = 1.0 / max(frame_time, 1e-6)
            previous = now
            if not keep_going:
                stopped = "quit"
                break
            if stop.requested:
                stopped = "interrupt"
                break
            if max_frames and frames >= max_frames:
                stopped = "max_frames"
                break
        finished = True
    except KeyboardInterrupt:
        stopped, finished = "interrupt", True
    finally:
        stop.__exit__()
        for sink in sinks:
            if finished:
                sink.close()
            else:
                sink.discard()
        if window:
            window.close()
    seconds = time.perf_counter() - start
    return RunSummary(frames, seconds, faces_total, stopped, clock.per_frame_ms())


def resolve_display(value: Any) -> bool:
    """display=auto: a window only where there is a screen (DISPLAY/WAYLAND_DISPLAY on Linux)."""
    text = str(value).strip().lower()
    if text not in ("auto", "true", "false"):
        raise LiveError(f"display={value}: use auto, true or false")
    screen = not sys.platform.startswith("linux") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if text == "true" and not screen:  # OpenCV's Qt would abort the process, not raise
        raise LiveError(
            "display=true but there is no screen (DISPLAY is not set); use display=false"
        )
    return screen if text == "auto" else text == "true"


def live_settings(options: Mapping[str, Any] | None) -> LiveSettings:
    """LiveSettings from live.yaml-style keys; keys that are not settings are ignored, so a
    whole live or serve config can be passed."""
    options = options or {}
    names = [f.name for f in fields(LiveSettings)]
    return LiveSettings(**{name: options[name] for name in names if name in options})


def set_threads(threads: int | None) -> None:
    """Threads for torch and OpenCV; None leaves their defaults (one per core).

    One thread is steadiest for a few small crops: on a busy CPU, thread pools that wait
    on each other cost more than they gain (docs/training_at_scale.md, Threads).
    """
    if threads:
        import torch

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))


def run_from_config(cfg: Mapping[str, Any]) -> RunSummary:
    """Everything `python live.py` does, from its composed config (see conf/live.yaml)."""
    settings = live_settings(cfg)
    detector = build_detector(cfg["detector"])
    display = resolve_display(cfg["display"])
    set_threads(cfg.get("threads"))
    checkpoint = resolve_checkpoint(
        None if cfg["ckpt"] is None else str(cfg["ckpt"]), cfg.get("outputs_dir", "outputs")
    )
    check_sink_paths(cfg.get("save"), cfg.get("jsonl"), cfg.get("csv"), cfg["source"], checkpoint)
    predictor = open_predictor(
        checkpoint,
        cfg.get("outputs_dir", "outputs"),
        cfg["device"],
        cfg.get("threads"),
        cfg.get("runtime", "auto"),
    )
    stall = float(cfg.get("stall_timeout") or 10.0)
    with open_source(cfg["source"], first_frame_timeout=stall, stall_timeout=stall) as source:
        sinks = open_sinks(
            cfg.get("save"), cfg.get("jsonl"), cfg.get("csv"), source.fps, source.stills
        )
        pipeline = FacePipeline(predictor, detector, settings)
        summary = run(source, pipeline, sinks, display=display, max_frames=cfg.get("max_frames"))
        summary.problem = source.problem if summary.stopped == "end" else None
    written = [str(value) for value in (cfg.get("save"), cfg.get("jsonl"), cfg.get("csv")) if value]
    print(
        f"live: {summary.frames} frames, {summary.faces} faces in {summary.seconds:.1f} s "
        f"({summary.fps:.1f} frames/s, {predictor.backend}); stopped: {summary.stopped}"
        + (f"; wrote {', '.join(written)}" if written else "")
    )
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary.stage_ms.items())
    print(f"live: ms per frame: {stages}")
    if not display and not written:
        print("live: nothing shown (no window) or written; save=, jsonl= or csv= keep results")
    if summary.problem:
        allowed = bool(cfg.get("allow_lost_frames", False))
        print(
            f"{'warning' if allowed else 'error'}: {summary.problem}"
            + (
                ""
                if allowed
                else "; the outputs hold the frames read (allow_lost_frames=true "
                "accepts this with exit status 0)"
            ),
            file=sys.stderr,
        )
    return summary

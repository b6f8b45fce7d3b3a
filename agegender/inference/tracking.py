"""IoU tracker with per-track label smoothing: each face keeps an id and a steady label.

Detections match existing tracks greedily by IoU. Between detection frames (detect_every > 1)
each track's box moves on with its measured velocity, so boxes follow a moving face without
running the detector. Each track's (age, p_female) is an exponential moving average of the
model's raw outputs, so labels do not flicker from frame to frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agegender.configs import live_defaults
from agegender.faces.detectors import Box


def ema(previous: float | None, new: float, smoothing: float) -> float:
    """Exponential moving average: `smoothing` is the weight of the past (0 = no smoothing)."""
    if previous is None or smoothing <= 0:
        return float(new)
    return smoothing * previous + (1.0 - smoothing) * float(new)


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: Box
    hits: int = 1  # detections matched so far
    frames_since_hit: int = 0  # frames since the last matched detection
    missed: int = 0  # detection rounds missed in a row
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box change per frame
    raw: tuple[float, float] | None = None  # last model output (age, p_female)
    smooth: tuple[float, float] | None = None  # what is shown
    frames_since_predict: int = 0
    fresh: bool = False  # the model ran on this face in the current frame
    _hit_box: Box | None = None  # box at the last matched detection

    @property
    def detection(self) -> Box:
        """The box of the last detection matched (with landmarks, where the detector has
        them); `box` has moved on since by the track's velocity."""
        return self._hit_box if self._hit_box is not None else self.box

    def next_box(self) -> Box:
        """Where the box will be in the next frame, at the current velocity."""
        return _moved(self.box, self.velocity)

    @property
    def age(self) -> float | None:
        return None if self.smooth is None else self.smooth[0]

    @property
    def p_female(self) -> float | None:
        return None if self.smooth is None else self.smooth[1]


_LIVE = live_defaults()  # the defaults below are conf/live.yaml's


class IouTracker:
    """Greedy IoU matching, constant-velocity boxes between detections, EMA labels.

    - `iou_threshold`: least IoU for a detection to continue a track.
    - `max_missed_frames`: frames a track survives without a matching detection; then it expires.
    - `hold`: detection rounds a lost track stays visible (hides one-off detector misses).
    - `smoothing`: EMA weight of the past for age and p_female; 0 shows raw outputs.
    """

    def __init__(
        self,
        iou_threshold: float = float(_LIVE.iou_threshold),
        max_missed_frames: int = int(_LIVE.max_missed_frames),
        hold: int = int(_LIVE.hold),
        smoothing: float = float(_LIVE.smoothing),
    ) -> None:
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed_frames = int(max_missed_frames)
        self.hold = int(hold)
        self.smoothing = float(smoothing)
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        """Forget all tracks (ids keep counting, so they stay unique in a run's outputs)."""
        self.tracks = []

    def step(self, detections: list[Box] | None) -> list[Track]:
        """Advance one frame; `detections` is None on frames where the detector did not run.

        Returns the visible tracks.
        """
        for track in self.tracks:
            track.frames_since_hit += 1
            track.frames_since_predict += 1
            track.fresh = False
            track.box = _moved(track.box, track.velocity)
        if detections is not None:
            self._match(detections)
        self.tracks = [t for t in self.tracks if t.frames_since_hit <= self.max_missed_frames]
        return self.visible()

    def visible(self) -> list[Track]:
        return [t for t in self.tracks if t.missed <= self.hold]

    def _match(self, detections: list[Box]) -> None:
        pairs = sorted(
            (
                (track.box.iou(det), ti, di)
                for ti, track in enumerate(self.tracks)
                for di, det in enumerate(detections)
            ),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for overlap, ti, di in pairs:
            if overlap < self.iou_threshold:
                break
            if ti in used_tracks or di in used_dets:
                continue
            used_tracks.add(ti)
            used_dets.add(di)
            self._hit(self.tracks[ti], detections[di])
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
                track.velocity = np.zeros(4)  # a lost track stays put instead of drifting away
        for di, det in enumerate(detections):
            if di not in used_dets:
                self.tracks.append(Track(id=self._next_id, box=det, _hit_box=det))
                self._next_id += 1

    def _hit(self, track: Track, det: Box) -> None:
        if track._hit_box is not None and track.missed == 0:
            # velocity from the last two detections, averaged with the previous estimate
            measured = (np.array(det[:4]) - np.array(track._hit_box[:4])) / track.frames_since_hit
            track.velocity = measured if track.hits == 1 else 0.5 * (track.velocity + measured)
        track.box = det
        track._hit_box = det
        track.hits += 1
        track.frames_since_hit = 0
        track.missed = 0

    def update_prediction(self, track: Track, age: float, p_female: float) -> None:
        """Feed the model's output for a track; its shown label moves by the EMA."""
        track.raw = (float(age), float(p_female))
        previous = track.smooth
        track.smooth = (
            ema(None if previous is None else previous[0], age, self.smoothing),
            ema(None if previous is None else previous[1], p_female, self.smoothing),
        )
        track.frames_since_predict = 0
        track.fresh = True


def _moved(box: Box, velocity: np.ndarray) -> Box:
    if not velocity.any():
        return box
    x1, y1, x2, y2 = np.array(box[:4]) + velocity
    return Box(float(x1), float(y1), float(x2), float(y2), box.score)

"""IoU tracker: ids persist, boxes follow between detections, labels are smoothed."""

from __future__ import annotations

import numpy as np
import pytest

from agegender.faces.detectors import Box
from agegender.inference.tracking import IouTracker, ema


def moving_box(frame: int, speed: float = 4.0) -> Box:
    x = 50 + speed * frame
    return Box(x, 100, x + 80, 180)


def test_a_moving_face_keeps_one_track_id() -> None:
    tracker = IouTracker()
    ids = set()
    for frame in range(60):
        visible = tracker.step([moving_box(frame)])
        assert len(visible) == 1
        ids.add(visible[0].id)
    assert ids == {1}


def test_boxes_follow_the_face_between_detections() -> None:
    tracker = IouTracker()
    worst = 1.0
    for frame in range(60):
        detections = [moving_box(frame, 6.0)] if frame % 3 == 0 else None
        (track,) = tracker.step(detections)
        if frame > 6:  # after two detections the velocity is known
            worst = min(worst, track.box.iou(moving_box(frame, 6.0)))
    assert worst > 0.9


def test_two_faces_get_two_ids_and_keep_them() -> None:
    tracker = IouTracker()
    for frame in range(30):
        left = moving_box(frame)
        right = Box(400 - 3 * frame, 100, 480 - 3 * frame, 180)
        visible = tracker.step([right, left] if frame % 2 else [left, right])
        by_x = sorted(visible, key=lambda t: t.box.x1)
        assert [t.id for t in by_x] == [1, 2]


def test_one_missed_detection_does_not_hide_the_face() -> None:
    tracker = IouTracker(hold=1)
    tracker.step([moving_box(0)])
    assert len(tracker.step([])) == 1  # one miss: still shown
    assert tracker.step([]) == []  # two misses: hidden, but kept
    assert tracker.step([moving_box(3)])[0].id == 1  # back: same id


def test_lost_tracks_expire_after_max_missed_frames() -> None:
    tracker = IouTracker(max_missed_frames=5)
    tracker.step([moving_box(0)])
    for _ in range(6):
        tracker.step([])
    assert tracker.tracks == []
    assert tracker.step([moving_box(0)])[0].id == 2


def test_ema() -> None:
    assert ema(None, 5.0, 0.9) == 5.0
    assert ema(10.0, 0.0, 0.0) == 0.0
    assert ema(10.0, 0.0, 0.75) == pytest.approx(7.5)


def shown_ages(smoothing: float, raw: np.ndarray) -> np.ndarray:
    tracker = IouTracker(smoothing=smoothing)
    shown = []
    for age in raw:
        (track,) = tracker.step([Box(0, 0, 50, 50)])
        tracker.update_prediction(track, float(age), 0.3)
        shown.append(track.age)
    return np.array(shown)


def test_smoothing_lowers_frame_to_frame_change_on_a_noisy_sequence() -> None:
    raw = 30 + np.random.default_rng(0).normal(0, 4, 200)
    off = shown_ages(0.0, raw)
    on = shown_ages(0.6, raw)
    np.testing.assert_allclose(off, raw, rtol=1e-6)  # smoothing=0 shows the raw output
    assert np.abs(np.diff(on)).mean() < 0.5 * np.abs(np.diff(raw)).mean()
    assert abs(on[50:].mean() - 30) < 1.0  # steadier, not biased


def test_smoothing_must_be_below_one() -> None:
    with pytest.raises(ValueError, match="smoothing"):
        IouTracker(smoothing=1.0)

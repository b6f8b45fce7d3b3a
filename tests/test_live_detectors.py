"""Face detectors: the default finds a real face; the registry gives clear errors."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from agegender.faces.detectors import (
    Box,
    Detector,
    DetectorError,
    FullFrameDetector,
    HaarDetector,
    available_detectors,
    build_detector,
    register_detector,
)

# Where Eileen Collins' face is in skimage.data.astronaut() (512 x 512).
ASTRONAUT_FACE = Box(177, 66, 272, 161)


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)


def test_default_detector_finds_the_astronaut_face() -> None:
    found = build_detector("haar").detect(astronaut_bgr())
    assert len(found) == 1
    assert found[0].iou(ASTRONAUT_FACE) > 0.6


def test_haar_boxes_are_in_full_frame_pixels_when_detecting_downscaled() -> None:
    big = cv2.resize(astronaut_bgr(), (1024, 1024))
    found = HaarDetector(width=320).detect(big)
    doubled = Box(*(2 * v for v in ASTRONAUT_FACE[:4]))
    assert len(found) == 1 and found[0].iou(doubled) > 0.6


def test_haar_finds_nothing_on_a_blank_frame() -> None:
    assert HaarDetector().detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_full_frame_detector_is_the_whole_frame() -> None:
    assert FullFrameDetector().detect(np.zeros((48, 64, 3), np.uint8)) == [Box(0, 0, 64, 48)]


def test_unknown_detector_names_the_choices() -> None:
    with pytest.raises(DetectorError, match="full_frame, haar"):
        build_detector("nope")


def test_bad_option_is_a_detector_error() -> None:
    with pytest.raises(DetectorError, match="bad option"):
        build_detector("haar", colour="red")


def test_yunet_finds_the_astronaut_face_and_nothing_on_a_blank_frame() -> None:
    detector = build_detector("yunet")
    found = detector.detect(astronaut_bgr())
    assert len(found) == 1 and found[0].iou(ASTRONAUT_FACE) > 0.5
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_yunet_without_yuface_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "yuface", None)  # makes `import yuface` fail
    with pytest.raises(DetectorError, match="pip install yuface"):
        build_detector("yunet")


def test_yunet_finds_faces_with_landmarks_in_video_and_stills() -> None:
    frame = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    detector = build_detector("yunet", width=256)
    (video,) = detector.detect(frame)
    (still,) = detector.detect_still(frame)
    assert video.iou(still) > 0.6 and len(video.landmarks) == len(still.landmarks) == 10
    # the landmarks lie inside the face box, in frame pixels at both scales
    for box in (video, still):
        xs, ys = box.landmarks[0::2], box.landmarks[1::2]
        assert box.x1 < min(xs) < max(xs) < box.x2 and box.y1 < min(ys) < max(ys) < box.y2


def test_yunet_rejects_bad_options() -> None:
    with pytest.raises(DetectorError, match="threshold"):
        build_detector("yunet", threshold=2)
    with pytest.raises(DetectorError, match="still_min"):
        build_detector("yunet", still_min=10)


def test_registered_detector_is_built_by_name() -> None:
    class Centre(Detector):
        name = "centre"

        def __init__(self, size: int = 10) -> None:
            self.size = size

        def detect(self, frame: np.ndarray) -> list[Box]:
            return [Box(0, 0, self.size, self.size)]

    register_detector("centre", Centre)
    assert "centre" in available_detectors()
    assert build_detector("centre", size=5).detect(np.zeros((8, 8, 3), np.uint8)) == [
        Box(0, 0, 5, 5)
    ]


def test_box_iou() -> None:
    a = Box(0, 0, 10, 10)
    assert a.iou(a) == pytest.approx(1.0)
    assert a.iou(Box(5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert a.iou(Box(20, 20, 30, 30)) == 0.0


def test_detect_near_finds_the_face_around_a_known_box_only() -> None:
    image = astronaut_bgr()
    detector = HaarDetector()
    shifted = Box(187, 76, 282, 171)  # where the tracker expects it, a little off
    (near,) = detector.detect_near(image, [shifted])
    assert near.iou(ASTRONAUT_FACE) > 0.6
    assert near.iou(detector.detect(image)[0]) > 0.9  # the same box a full scan gives
    assert detector.detect_near(image, [Box(20, 400, 80, 460)]) == []  # nothing near there


def test_detect_near_reports_a_face_found_from_two_regions_once() -> None:
    image = astronaut_bgr()
    near = HaarDetector().detect_near(image, [ASTRONAUT_FACE, Box(180, 70, 270, 160)])
    assert len(near) == 1


def test_detectors_without_regions_scan_the_whole_frame() -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    assert FullFrameDetector().detect_near(frame, [Box(1, 1, 5, 5)]) == [Box(0, 0, 64, 48)]


def heads_with_faces(width_px: float, count: int) -> tuple[np.ndarray, list[Box]]:
    """A 640x480 frame with `count` astronaut heads whose faces are about `width_px` wide."""
    from agegender.scenes import faces_frame

    _, (unit,) = faces_frame([(0, 0, 100)])
    side = round(100 * width_px / unit.width)
    return faces_frame([(30 + 120 * i, 120 + 60 * (i % 2), side) for i in range(count)])


def found_all(found: list[Box], truth: list[Box]) -> bool:
    return all(any(box.iou(face) > 0.4 for box in found) for face in truth)


def test_yunet_finds_faces_down_to_its_smallest_face_size() -> None:
    from agegender.faces.detectors import SMALLEST_FACE_PX

    frame, truth = heads_with_faces(SMALLEST_FACE_PX, 5)
    assert found_all(build_detector("yunet")._run(frame, 1.0, 0), truth)


def test_photographs_are_detected_small_enough_to_be_cheap_and_large_enough_for_min_face() -> None:
    detector = build_detector("yunet")
    assert (detector.still_work, detector.min_face) == (320, 36)
    assert detector.still_factor(200) == pytest.approx(256 / 200)  # small: up to still_min
    assert detector.still_factor(300) == 1.0  # within still_work: as it is
    assert detector.still_factor(640) == pytest.approx(0.5)  # a 640x480 upload at 320x240
    assert detector.still_factor(1440) == pytest.approx(0.5)  # a 36 px face stays 18 px
    assert detector.still_factor(6000) == pytest.approx(1600 / 6000)  # capped by still_max
    assert build_detector("yunet", min_face=0).still_factor(640) == 1.0
    frame, truth = heads_with_faces(detector.min_face + 1, 5)
    assert found_all(detector.detect_still(frame), truth)
    big = cv2.resize(frame, (1280, 960), interpolation=cv2.INTER_CUBIC)
    assert found_all(detector.detect_still(big), [face.scaled(2.0, 0, 0) for face in truth])
    with pytest.raises(DetectorError, match="min_face"):
        build_detector("yunet", min_face=5)

"""The face path on real photographs that scikit-image ships: detection, landmarks, alignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from agegender.faces.align import (
    SHARPER_THAN,
    TEMPLATE,
    align_face,
    eye_distance,
    jpeg_round_trip,
    similarity,
    template_points,
)
from agegender.faces.crop import LEGACY_FRAMING, Framing, FramingError, crop_face, framing_of
from agegender.faces.detectors import Box, build_detector
from agegender.faces.photo import PhotoCrop, frame_photo, main_face

SIZE = 128


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """Public-domain NASA portrait, BGR."""
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def yunet():
    return build_detector("yunet")


def eye_centres(bgr: np.ndarray) -> list[tuple[float, float]]:
    """Eyes found by OpenCV's own eye cascade: a check independent of YuNet."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    found = cascade.detectMultiScale(grey, 1.05, 5, minSize=(12, 12))
    return [(x + w / 2, y + h / 2) for x, y, w, h in np.asarray(found).reshape(-1, 4)]


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = np.deg2rad(25), 1.7, np.array([12.0, -4.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.random.default_rng(0).uniform(0, 100, (5, 2))
    target = source @ (scale * rotation).T + shift
    matrix = similarity(source, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)


def test_template_is_symmetric_and_margin_zooms_out_around_its_centre() -> None:
    mirrored = TEMPLATE[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
    np.testing.assert_allclose(mirrored, TEMPLATE, atol=1e-9)
    tight, loose = template_points(100, 0.0), template_points(100, 0.5)
    eye_gap = lambda points: points[1, 0] - points[0, 0]  # noqa: E731
    assert eye_gap(loose) == pytest.approx(eye_gap(tight) / 1.5)
    np.testing.assert_allclose(loose.mean(0) - 50, (tight.mean(0) - 50) / 1.5, atol=1e-9)


def test_yunet_puts_the_eye_landmarks_on_the_eyes(astronaut, yunet) -> None:
    (face,) = yunet.detect_still(astronaut)
    assert face.landmarks is not None and face.score > 0.8
    points = np.asarray(face.landmarks).reshape(5, 2)
    eyes = eye_centres(astronaut[int(face.y1) : int(face.y2), int(face.x1) : int(face.x2)])
    eyes = [(x + face.x1, y + face.y1) for x, y in eyes]
    assert len(eyes) >= 2, "OpenCV's eye cascade should find both eyes of the portrait"
    tolerance = 0.08 * face.width
    for landmark in points[:2]:
        nearest = min(np.hypot(*(landmark - eye)) for eye in eyes)
        assert nearest < tolerance, f"eye landmark {landmark} is {nearest:.1f} px from an eye"
    # right eye left of the left eye in the image, nose below the eyes, mouth below the nose
    assert points[0, 0] < points[1, 0] and points[2, 1] > points[:2, 1].max()
    assert points[3:, 1].min() > points[2, 1]


def eye_line_degrees(landmarks: tuple[float, ...]) -> float:
    points = np.asarray(landmarks).reshape(5, 2)
    dx, dy = points[1] - points[0]
    return float(np.degrees(np.arctan2(dy, dx)))


def head_tilt(bgr: np.ndarray) -> float:
    """Tilt of the eye line, measured on the face enlarged: YuNet's landmarks follow a tilted
    head only where the face is large."""
    refined = build_detector("yunet", refine_px=224)
    return eye_line_degrees(main_face(refined.detect_still(bgr), *bgr.shape[:2]).landmarks)


@pytest.mark.parametrize("degrees", [-30, 25])
def test_an_aligned_crop_of_a_rotated_face_comes_out_upright(astronaut, degrees) -> None:
    """With refined landmarks the crop straightens a tilted head by about half or more (YuNet's
    landmarks follow only part of a strong tilt); the box crop keeps the tilt."""
    tilted = rotate(astronaut, degrees)
    refined = build_detector("yunet", refine_px=224)
    crop, outcome, _ = frame_photo(tilted, refined, Framing(), SIZE)
    assert outcome == "aligned" and crop.shape == (SIZE, SIZE, 3)
    box = main_face(refined.detect_still(tilted), *tilted.shape[:2])
    boxed = crop_face(tilted, box, LEGACY_FRAMING, SIZE)
    upright, kept = abs(head_tilt(crop)), abs(head_tilt(boxed))
    assert kept > 0.5 * abs(degrees), f"box crop tilt {kept:.1f} deg"
    assert upright < 0.6 * kept, f"aligned crop still tilted {upright:.1f} deg (box: {kept:.1f})"


def test_an_aligned_face_is_found_where_the_template_says(astronaut, yunet) -> None:
    """Alignment is (nearly) a fixed point: the template is where the detector itself puts
    the landmarks of a face framed like the training photographs."""
    once = frame_photo(astronaut, yunet, Framing(), SIZE).crop
    (again,) = yunet.detect_still(once)
    points = np.asarray(again.landmarks).reshape(5, 2)
    np.testing.assert_allclose(points, template_points(SIZE), atol=0.05 * SIZE)


def test_a_photo_without_a_face_is_centre_cropped_and_said_so(yunet) -> None:
    wall = np.full((90, 160, 3), 128, np.uint8)
    crop, outcome, _ = frame_photo(wall, yunet, Framing(), 32)
    assert outcome == "centre" and crop.shape == (32, 32, 3)


def test_the_face_in_the_middle_wins_over_a_small_one_at_the_edge() -> None:
    centre, corner = Box(40, 40, 60, 60, 0.9), Box(0, 0, 12, 12, 0.95)
    assert main_face([corner, centre], 100, 100) is centre
    assert main_face([], 100, 100) is None


def test_tight_crops_need_the_still_border(astronaut, yunet) -> None:
    (face,) = yunet.detect_still(astronaut)
    tight = astronaut[int(face.y1) + 10 : int(face.y2) - 5, int(face.x1) + 5 : int(face.x2) - 5]
    assert yunet.detect_still(tight), "the face filling a tight crop must still be found"


def test_landmarks_travel_with_a_scaled_and_tracked_box() -> None:
    box = Box(10, 10, 30, 30, 0.9, (15.0, 15.0, 25.0, 15.0, 20.0, 20.0, 15.0, 25.0, 25.0, 25.0))
    doubled = box.scaled(2.0, dx=-5, dy=1)
    assert doubled[:4] == (15, 21, 55, 61)
    assert doubled.landmarks[:2] == (25.0, 31.0)
    moved = Box(20, 10, 60, 50).carry_landmarks(box)  # twice the size, centre moved
    np.testing.assert_allclose(np.reshape(moved.landmarks, (5, 2))[0], (30.0, 20.0))
    assert Box(0, 0, 5, 5).carry_landmarks(Box(1, 1, 2, 2)).landmarks is None


def test_framing_round_trips_through_checkpoint_metadata() -> None:
    crop = PhotoCrop(Framing(margin=0.2))
    assert framing_of({"crop": crop.to_meta()}) == Framing(margin=0.2)
    assert framing_of({}) == LEGACY_FRAMING  # checkpoints from before the face path
    with pytest.raises(FramingError, match="margin"):
        Framing(margin=-1)
    with pytest.raises(FramingError, match="on_miss"):
        PhotoCrop.from_config({"on_miss": "drop"})
    with pytest.raises(FramingError, match="unknown"):
        PhotoCrop.from_config({"marginn": 0.1})


def test_photo_crop_key_changes_with_every_setting() -> None:
    keys = {
        PhotoCrop().key(),
        PhotoCrop(Framing(margin=0.1)).key(),
        PhotoCrop(Framing(align=False)).key(),
        PhotoCrop(on_miss="skip").key(),
        PhotoCrop(detector="haar").key(),
        PhotoCrop(Framing(detail_px=64)).key(),
    }
    assert len(keys) == 6
    # stores and checkpoints made before detail_px existed keep their keys
    assert "detail_px" not in PhotoCrop().key() and "detail_px" not in Framing().to_dict()


def test_detail_px_takes_a_sharp_face_down_to_the_training_photographs_detail(
    astronaut,
) -> None:
    box = Box(0, 0, 1, 1, 1.0, tuple(template_points(512).reshape(-1).tolist()))
    big = cv2.resize(astronaut, (512, 512), interpolation=cv2.INTER_AREA)
    sharp = crop_face(big, box, Framing(), 128)
    soft = crop_face(big, box, Framing(detail_px=32), 128)
    assert soft.shape == sharp.shape == (128, 128, 3)
    assert fine_detail(soft) < fine_detail(sharp) / 4
    assert abs(float(soft.mean()) - float(sharp.mean())) < 2  # the same face, only softer
    # a crop already at or below the limit is left alone
    assert np.array_equal(crop_face(big, box, Framing(detail_px=128), 128), sharp)
    assert framing_of({"crop": PhotoCrop(Framing(detail_px=48)).to_meta()}).detail_px == 48
    with pytest.raises(FramingError, match="detail_px"):
        Framing(detail_px=4)


def test_align_face_shrinks_large_faces_without_aliasing() -> None:
    """A big face warped straight to a small crop would sample every 8th pixel of a fine
    pattern; area-shrinking first averages it to grey."""
    stripes = np.zeros((1024, 1024, 3), np.uint8)
    stripes[:, ::2] = 255
    landmarks = template_points(1024).reshape(-1)
    crop = align_face(stripes, landmarks, 64)
    assert abs(float(crop.mean()) - 127.5) < 8 and float(crop.std()) < 20


def fine_detail(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_a_sharp_face_is_framed_as_a_small_training_photograph_would_show_it(
    astronaut, yunet
) -> None:
    """With source_eye_px, the portrait's face comes out as it would from a copy of the
    photograph shrunk until the eyes are that far apart and saved as JPEG."""
    face = main_face(yunet.detect_still(astronaut), *astronaut.shape[:2])
    eyes = eye_distance(face.landmarks)
    assert 30 < eyes < 60  # the portrait's eyes, in its own pixels
    sharp = crop_face(astronaut, face, Framing(), SIZE)
    for source_eye_px in (15.0, 20.0):
        matched = crop_face(astronaut, face, Framing(source_eye_px=source_eye_px), SIZE)
        side = round(astronaut.shape[0] * source_eye_px / eyes)
        small = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
        # pixel centres move with the resize: x -> (x + 0.5) * f - 0.5
        shrunk = tuple((v + 0.5) * side / 512 - 0.5 for v in face.landmarks)
        photo = crop_face(jpeg_round_trip(small), face._replace(landmarks=shrunk), Framing(), SIZE)
        assert 0.7 < fine_detail(matched) / fine_detail(photo) < 1.4
        assert fine_detail(sharp) > 3 * fine_detail(photo)
        # the same face in the same place, and closer to the small photograph's than sharp
        apart = lambda a, b: float(np.abs(a.astype(float) - b.astype(float)).mean())  # noqa: E731
        assert apart(matched, photo) < min(5.0, apart(sharp, photo))


def test_faces_no_sharper_than_the_training_photographs_are_left_alone(astronaut) -> None:
    points = template_points(512).reshape(-1, 2)
    eyes = eye_distance(points)
    box = Box(0, 0, 1, 1, 1.0, tuple(points.reshape(-1).tolist()))
    assert np.array_equal(
        crop_face(astronaut, box, Framing(source_eye_px=eyes / SHARPER_THAN), SIZE),
        crop_face(astronaut, box, Framing(), SIZE),
    )
    assert not np.array_equal(
        crop_face(astronaut, box, Framing(source_eye_px=eyes / SHARPER_THAN / 1.1), SIZE),
        crop_face(astronaut, box, Framing(), SIZE),
    )


def test_source_eye_px_softens_a_sharp_face_and_keeps_it_framed(astronaut, yunet) -> None:
    face = main_face(yunet.detect_still(astronaut), *astronaut.shape[:2])
    sharp = crop_face(astronaut, face, Framing(), SIZE)
    matched = crop_face(astronaut, face, Framing(source_eye_px=20.0), SIZE)
    assert fine_detail(matched) < fine_detail(sharp) / 2
    # the same face in the same place: only the detail differs
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0).astype(np.float64)
    assert np.corrcoef(blurred.ravel(), matched.astype(np.float64).ravel())[0, 1] > 0.95
    # recorded with the framing, in the key of stores built with it; absent when unset
    meta = PhotoCrop(Framing(source_eye_px=25.1)).to_meta()
    assert framing_of({"crop": meta}).source_eye_px == 25.1
    assert framing_of({"crop": meta}, match_source=False) == Framing()  # that alone left out
    assert PhotoCrop(Framing(source_eye_px=25.1)).key() != PhotoCrop().key()
    assert "source_eye_px" not in PhotoCrop().key()
    with pytest.raises(FramingError, match="source_eye_px"):
        Framing(source_eye_px=0.5)


def test_frame_photo_reports_the_face_eye_distance(astronaut, yunet) -> None:
    framed = frame_photo(astronaut, yunet, Framing(), SIZE)
    face = main_face(yunet.detect_still(astronaut), *astronaut.shape[:2])
    assert framed.outcome == "aligned"
    assert framed.eye_px == pytest.approx(eye_distance(face.landmarks))
    wall = np.full((200, 200, 3), 90, np.uint8)
    assert frame_photo(wall, yunet, Framing(), 32).eye_px is None

"""YuNet called through libfacedetection's own entry point: the wrapper's answers, from
several threads at once, without holding Python's lock."""

from __future__ import annotations

import sys
import threading
import time

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

from agegender.faces.yunet_native import load_yunet

yuface = pytest.importorskip("yuface")

COLUMNS = 15  # score, box, five landmarks; the row's last short is unused by the library


def photographs() -> list[np.ndarray]:
    """The astronaut at a few sizes and positions, plus a crop whose rows are strided."""
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    shots = [cv2.resize(astronaut, (side, side)) for side in (160, 256, 320)]
    shots.append(astronaut[20:400, 100:420])  # a view: its row step is not its width * 3
    return shots


def test_native_call_is_used_and_returns_the_wrappers_rows() -> None:
    detect = load_yunet(1)
    assert detect is not yuface.c_detect, "the library's entry point was not found"
    for shot in photographs():
        native = detect(shot)
        wrapped = np.asarray(yuface.c_detect(np.ascontiguousarray(shot))).astype(np.int16)
        assert len(native) >= 1
        np.testing.assert_array_equal(native[:, :COLUMNS], wrapped[:, :COLUMNS])


def test_threads_detecting_at_once_get_the_same_answers() -> None:
    detect = load_yunet(1)
    shots = photographs()
    expected = [detect(shot) for shot in shots]
    wrong: list[int] = []

    def work() -> None:
        for _ in range(10):
            for shot, rows in zip(shots, expected, strict=True):
                if not np.array_equal(detect(shot), rows):
                    wrong.append(1)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong


def _counting_rate_while(detect, image: np.ndarray, calls: int = 4) -> float:
    """Increments per second a pure-Python loop in a second thread makes while this thread
    runs `calls` detections."""
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        begin = time.perf_counter()
        for _ in range(calls):
            detect(image)
        seconds = time.perf_counter() - begin
    finally:
        done.set()
        counter.join()
    return ticks / seconds


def test_detection_leaves_python_free_to_run_other_threads() -> None:
    """While one thread detects, another thread's Python keeps running; through the
    wrapper, which holds the lock for the whole detection, it nearly stops."""
    detect = load_yunet(1)
    image = np.ascontiguousarray(cv2.resize(photographs()[2], (640, 640)))
    detect(image)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # a waiting thread asks for the lock every 0.1 ms
    try:
        wrapped = _counting_rate_while(yuface.c_detect, image)
        native = _counting_rate_while(detect, image)
    finally:
        sys.setswitchinterval(previous)
    assert native > 3 * wrapped, (native, wrapped)

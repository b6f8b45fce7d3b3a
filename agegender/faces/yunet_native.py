"""YuNet's detect function from the `yuface` package, callable from several threads at once.

`yuface` ships libfacedetection (YuNet with its weights compiled in) and a pybind11 wrapper
that holds Python's global lock for the whole detection, so two threads detecting at once
(the server's workers) take turns on one core. The library's own C++ entry point, called
through ctypes, runs with the lock released: on two cores two detections then run side by
side. Where the library cannot be reached that way, the wrapper is used as it is.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

# libfacedetection's `int* facedetect_cnn(unsigned char* result_buffer, unsigned char*
# bgr_image, int width, int height, int step)`, as the C++ compiler names it
_SYMBOL = "_Z14facedetect_cnnPhS_iii"
_RESULT_BYTES = 0x9000  # the library's DETECT_BUFFER_SIZE: a face count, then 16 shorts a face
_ROW = 16
_first_call = threading.Lock()


class _LibraryDetect:
    """Calls facedetect_cnn directly; rows of int16 as the wrapper returns them (score
    0..100, box x, y, w, h, five landmark (x, y), one spare)."""

    def __init__(self, function: ctypes._CFuncPtr) -> None:
        self._function = function
        self._warm = False

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"YuNet takes BGR uint8 [H, W, 3], not {bgr.dtype} {bgr.shape}")
        bgr = np.ascontiguousarray(bgr)
        if not self._warm:
            # the library sets up its weights on the first call: once, not in two threads
            with _first_call:
                rows = self._detect(bgr)
                self._warm = True
                return rows
        return self._detect(bgr)

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        result = np.zeros(_RESULT_BYTES, dtype=np.uint8)  # one buffer per call: thread safe
        height, width = bgr.shape[:2]
        self._function(result.ctypes.data, bgr.ctypes.data, width, height, bgr.strides[0])
        count = int(result[:4].view(np.int32)[0])
        return result[4 : 4 + 2 * _ROW * count].view(np.int16).reshape(count, _ROW).copy()


def load_yunet(threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The detect function: BGR uint8 image in, one int16 row per face out.

    yuface ships its own OpenMP runtime, which reads OMP_NUM_THREADS once when it loads; left
    to one thread per core it spins against torch's threads on a small CPU. Raises
    ImportError when `yuface` is not installed.
    """
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    try:
        import yuface
        from yuface import c_detect
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    function = _library_function(Path(yuface.__file__).parent)
    return _LibraryDetect(function) if function is not None else c_detect


def _library_function(folder: Path) -> ctypes._CFuncPtr | None:
    """facedetect_cnn from the library yuface loaded, or None when it is not there."""
    for library in sorted(folder.glob("libfacedetection*")):
        try:
            function = getattr(ctypes.CDLL(str(library)), _SYMBOL)
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.c_void_p
        function.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int] * 3
        return function
    return None

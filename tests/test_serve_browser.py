"""The page in a real browser: Debian's chromium driven by Playwright, with a fake camera that
plays a generated clip of the public-domain astronaut photograph moving across a background.

Runs where chromium is installed (`apt-get install chromium`; `.ci/run` installs it in CI).
Elsewhere the tests skip, except in CI (CI=true), where a missing browser fails them.
Set AGEGENDER_SCREENSHOT=PATH to keep the screenshot (the README's picture comes from it).
"""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.api import FaceAnalyzer
from agegender.faces.detectors import Box
from agegender.scenes import faces_frame
from agegender.serve import ServeSettings, create_app
from tests.serving import iou, running_server, serve_config

FPS = 30
CLIP_FRAMES = 90  # 3 s loop; the path is periodic so the loop does not jump
SIDES = (170, 140)  # the astronaut's head, twice, in pixels
FAKE_CAMERA = ("--use-fake-device-for-media-stream",)
LABEL = re.compile(r"^#(\d+) (female|male) (\d+) \(\d+%\)$")


def chromium_path() -> str | None:
    """Debian's chromium (the binary behind its /usr/bin wrapper), or AGEGENDER_CHROMIUM."""
    for candidate in (
        os.environ.get("AGEGENDER_CHROMIUM"),
        "/usr/lib/chromium/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _browser_missing(why: str) -> None:
    message = f"{why}: install Debian's 'chromium' package (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests must run in CI; {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Playwright's sync API with the system chromium (never `playwright install`)."""
    executable = chromium_path()
    if executable is None:
        _browser_missing("chromium not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        yield lambda *args: playwright.chromium.launch(
            executable_path=executable, headless=True, args=list(args)
        )


def heads(index: int) -> list[tuple[int, int, int]]:
    """(x, y, side) of each head at a frame: one loops through the top half, the other
    sways in the bottom half (at most about 190 and 100 pixels/s); they never overlap."""
    angle = 2 * math.pi * index / CLIP_FRAMES
    return [
        (int(235 + 90 * math.sin(angle)), int(30 + 20 * math.sin(2 * angle)), SIDES[0]),
        (int(250 - 50 * math.sin(angle)), int(300 + 10 * math.cos(angle)), SIDES[1]),
    ]


def write_y4m(path: Path) -> None:
    """The fake camera's clip: YUV4MPEG2, 4:2:0, what chromium's fake device reads."""
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W640 H480 F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(CLIP_FRAMES):
            bgr, _ = faces_frame(heads(index))
            out.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())


def where_are_the_faces(frame: np.ndarray) -> list[Box]:
    """The faces' boxes in a frame the page sent, found by matching the clip's frames."""
    scores = []
    for index in range(CLIP_FRAMES):
        bgr, boxes = faces_frame(heads(index))
        scores.append((float(np.abs(bgr.astype(np.int16) - frame).mean()), index, boxes))
    difference, _, boxes = min(scores)
    assert difference < 12, f"the page's frame matches no clip frame (mean |diff| {difference})"
    return boxes


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("camera") / "astronaut.y4m"
    write_y4m(path)
    return path


@pytest.fixture(scope="module")
def server(brief_onnx: Path) -> Iterator[str]:
    """The app exactly as serve.py builds it from conf/serve.yaml, on a free port."""
    cfg = serve_config(f"ckpt={brief_onnx}")
    app = create_app(FaceAnalyzer.from_config(cfg), ServeSettings.from_config(cfg))
    with running_server(app) as url:
        yield url


def test_page_draws_tracked_faces_from_the_camera(
    chromium, clip: Path, server: str, tmp_path: Path
) -> None:
    browser = chromium(
        *FAKE_CAMERA, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={clip}"
    )
    try:
        page = browser.new_page(viewport={"width": 700, "height": 600})
        page.goto(server)
        page.wait_for_function("window.agegender.replies >= 90", timeout=90_000)
        stats = page.inner_text("#stats")
        assert re.search(r"[\d.]+ frames/s · round trip \d+ ms", stats), stats
        assert "onnxruntime" in page.inner_text("#model")
        screenshot = tmp_path / "serve_page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        if os.environ.get("AGEGENDER_SCREENSHOT"):
            keep = Path(os.environ["AGEGENDER_SCREENSHOT"])
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(screenshot, keep)

        page.click("#toggle")  # pause: the last frame sent stays in the page with its reply
        page.wait_for_function("window.agegender.inFlight === 0", timeout=10_000)
        state = page.evaluate(
            "() => ({last: agegender.last, labels: agegender.labels, history: agegender.history,"
            " fps: agegender.fps, rtt: agegender.rtt, frame: agegender.lastFrame()})"
        )
        png = base64.b64decode(state["frame"].split(",", 1)[1])
        sent = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert sent.shape == (480, 640, 3)
        faces = state["last"]["faces"]
        assert len(state["labels"]) == len(faces)
        found = []
        for truth in where_are_the_faces(sent):
            best = max(faces, key=lambda face: iou(face["box"], truth), default=None)
            assert best is not None and iou(best["box"], truth) > 0.4, (faces, truth)
            found.append(best)
            # drawn where the face is: the box's colour on the frame shown, and its label
            x1, y1, x2, y2 = best["box"]
            pixel = page.evaluate(
                "([x, y]) => Array.from(document.getElementById('view').getContext('2d')"
                ".getImageData(x, y, 1, 1).data)",
                [round(x1), round((y1 + y2) / 2)],
            )
            expected = (255, 80, 180) if best["p_female"] >= 0.5 else (40, 170, 255)
            assert tuple(pixel[:3]) == expected and pixel[3] == 255, pixel
            label = LABEL.match(state["labels"][faces.index(best)])
            assert label and int(label[1]) == best["id"] and label[2] == best["gender"]
        assert len({face["id"] for face in found}) == 2

        # steady ids: one track follows each face through the loop of the clip
        # (a face that is missed at first is found by the next full scan, 12 frames on)
        history = state["history"][15:]
        counts = Counter(face_id for ids in history for face_id in ids)
        for face in found:
            assert counts[face["id"]] >= 0.9 * len(history), (counts, state["fps"])
        assert state["fps"] > 1
        print(f"browser: {state['fps']:.1f} frames/s, round trip {state['rtt']:.1f} ms")
    finally:
        browser.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ((*FAKE_CAMERA, "--deny-permission-prompts"), "camera was refused"),
        (("--use-fake-ui-for-media-stream",), "No camera was found"),
    ],
    ids=["refused", "missing"],
)
def test_page_explains_a_refused_or_missing_camera(
    chromium, server: str, flags: tuple[str, ...], message: str
) -> None:
    browser = chromium(*flags)
    try:
        page = browser.new_page()
        page.goto(server)
        page.wait_for_selector("#message.shown", timeout=20_000)
        assert message in page.inner_text("#message")
    finally:
        browser.close()


def test_a_missing_browser_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        _browser_missing("chromium not found")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI.*chromium"):
        _browser_missing("chromium not found")


def test_page_says_when_the_server_is_full(chromium, clip: Path, brief_onnx: Path) -> None:
    cfg = serve_config(f"ckpt={brief_onnx}", "max_clients=1", "workers=1")
    app = create_app(FaceAnalyzer.from_config(cfg), ServeSettings.from_config(cfg))
    browser = chromium(
        *FAKE_CAMERA, "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={clip}"
    )
    try:
        with running_server(app) as url:
            first = browser.new_page()
            first.goto(url)
            first.wait_for_function("window.agegender.replies >= 1", timeout=60_000)
            second = browser.new_page()
            second.goto(url)
            second.wait_for_selector("#message.shown", timeout=20_000)
            text = second.inner_text("#message")
            assert "server busy" in text and "max_clients=1" in text, text
            assert first.evaluate("window.agegender.error") is None  # the first goes on
    finally:
        browser.close()

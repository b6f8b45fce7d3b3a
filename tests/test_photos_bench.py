"""The real-photograph check (`python -m agegender.bench.photos`), without the network: its
verdicts on hand-made faces, the download's failures, and a run on generated scenes."""

from __future__ import annotations

import io
import json
import tarfile
import urllib.error
from pathlib import Path

import cv2
import pytest

from agegender.bench import photos
from agegender.scenes import faces_frame


def face(x1: float, age: float, p_female: float) -> dict:
    return {"box": [x1, 10, x1 + 50, 60], "age": age, "p_female": p_female}


def test_judge_orders_faces_left_to_right_and_checks_every_expectation() -> None:
    expected = photos.Expectation("FMF", (20.0, 45.0))
    # given right to left: the verdict must sort them
    found = [face(300, 30, 0.9), face(150, 25, 0.2), face(0, 41, 0.7)]
    verdict = photos.judge(found, expected)
    assert verdict["genders"] == "FMF" and verdict["genders_right"] == 3
    assert verdict["ages_in_range"] == 3 and verdict["all_met"]
    assert [f["box"][0] for f in verdict["faces"]] == [0, 150, 300]

    one_wrong = photos.judge([face(0, 30, 0.9), face(150, 25, 0.6), face(300, 30, 0.9)], expected)
    assert one_wrong["genders"] == "FFF" and one_wrong["genders_right"] == 2
    assert not one_wrong["all_met"]

    too_young = photos.judge([face(0, 19.9, 0.9), face(150, 25, 0.1), face(300, 30, 0.9)], expected)
    assert too_young["ages_in_range"] == 2 and not too_young["all_met"]

    missing = photos.judge([face(0, 30, 0.9), face(150, 25, 0.1)], expected)
    assert missing["faces_found"] == 2 and missing["genders_right"] == 0
    assert not missing["all_met"]


def test_offline_download_names_the_fix_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(photos.urllib.request, "urlopen", offline)
    with pytest.raises(photos.PhotoError, match="--group"):
        photos.fetch_group_photo(tmp_path)
    assert not any(tmp_path.rglob("*"))


def package_with(content: bytes, path: Path) -> str:
    """A source package holding `content` where the group photograph belongs; its URL."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(photos.GROUP_MEMBER)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    path.write_bytes(buffer.getvalue())
    return path.as_uri()


def test_download_checks_the_photograph_and_caches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = cv2.imencode(".jpg", faces_frame([(100, 100, 120)])[0])[1]
    content = image.tobytes()
    url = package_with(content, tmp_path / "package.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(photos.PhotoError, match="not the expected photograph"):
        photos.fetch_group_photo(cache, url)
    assert not any(cache.rglob("*"))

    monkeypatch.setattr(photos, "GROUP_SHA256", photos.sha256_of(content))
    target = photos.fetch_group_photo(cache, url)
    assert target.read_bytes() == content
    # a second call reads the cached copy: the package is not needed any more
    (tmp_path / "package.tar.gz").unlink()
    assert photos.fetch_group_photo(cache, url) == target


def test_a_package_without_the_photograph_is_an_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        tar.addfile(info, io.BytesIO(b""))
    (tmp_path / "other.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(photos.PhotoError, match="does not hold"):
        photos.fetch_group_photo(tmp_path / "cache", (tmp_path / "other.tar.gz").as_uri())


def test_run_on_generated_faces_reports_both_photographs(
    untrained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    heads = [(40, 150, 140), (250, 150, 140), (460, 150, 140)]
    group = tmp_path / "group.png"
    cv2.imwrite(str(group), faces_frame(heads)[0])
    out = tmp_path / "photos.json"
    code = photos.main([str(untrained_checkpoint), "--group", str(group), "--json", str(out)])
    assert code == 0
    (result,) = json.loads(out.read_text())
    assert result["astronaut"]["faces_found"] == 1
    assert result["group"]["faces_found"] == 3  # the scene's three heads
    assert not result["group"]["all_met"]  # three faces where six are expected
    assert "group: 3/6 faces" in capsys.readouterr().out


def test_missing_checkpoint_and_unreadable_photo_exit_non_zero(
    untrained_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert photos.main([str(tmp_path / "none.ckpt"), "--group", str(tmp_path)]) == 2
    assert "no such model file" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert photos.main([str(untrained_checkpoint), "--group", str(broken)]) == 1
    assert "not a readable image" in capsys.readouterr().err

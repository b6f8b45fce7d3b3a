"""Two real photographs outside UTKFace, through the live path, against what is known of them.

    python -m agegender.bench.photos CKPT [CKPT ...] [--group FILE] [--cache DIR] [--json PATH]

- The astronaut portrait (`skimage.data.astronaut()`, a public-domain NASA photograph of a
  woman in her thirties): expected one face, female, aged 28–45.
- A six-person group photograph (three women, three men, all in their twenties or early
  thirties when it was taken): `t1.jpg`, the demo image that insightface ships in its source
  package on PyPI. It is fetched once into `--cache` (checked against its SHA-256), or read
  from `--group`. Expected: six faces, each aged 20–45, genders left to right F F M M M F.

Each model analyses both as `live.py source=IMAGE` does (stills: detection at full
resolution, the checkpoint's framing, its test-time flip) and the script prints every face
and whether each expectation holds. The photographs are never written into the project.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agegender.api import FaceAnalyzer
from agegender.io import write_atomic
from agegender.preprocess import ImageDecodeError, decode_bgr

GROUP_URL = (
    "https://files.pythonhosted.org/packages/11/c7/"
    "7064625547238052effa5422b7d3e5512fa921dc0445737096861986e580/insightface-2.1.tar.gz"
)
GROUP_MEMBER = "insightface-2.1/insightface/data/images/t1.jpg"
GROUP_SHA256 = "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"
GROUP_GENDERS = "FFMMMF"  # left to right, by the centre of each face
GROUP_AGES = (20.0, 45.0)
ASTRONAUT_AGES = (28.0, 45.0)


class PhotoError(RuntimeError):
    """A photograph that cannot be had: no network, a changed download, an unreadable file."""


@dataclass(frozen=True)
class Expectation:
    """What is known of a photograph: its faces' genders left to right and an age range."""

    genders: str
    ages: tuple[float, float]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_group_photo(cache: Path, url: str = GROUP_URL) -> Path:
    """The group photograph in `cache`, downloaded and checked the first time."""
    target = cache / "photos" / "group-t1.jpg"
    if target.is_file() and sha256_of(target.read_bytes()) == GROUP_SHA256:
        return target
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            archive = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise PhotoError(
            f"could not download the group photograph's package ({url}: {error}); "
            "run with access to files.pythonhosted.org, or pass --group with a copy of t1.jpg"
        ) from error
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.extractfile(GROUP_MEMBER)
            image = member.read() if member else b""
    except (tarfile.TarError, KeyError) as error:
        raise PhotoError(f"{url} does not hold {GROUP_MEMBER}: {error}") from error
    if sha256_of(image) != GROUP_SHA256:
        raise PhotoError(f"{GROUP_MEMBER} in {url} is not the expected photograph (SHA-256)")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, image)
    return target


def read_photo(path: Path) -> np.ndarray:
    try:
        return decode_bgr(path.read_bytes())
    except (OSError, ImageDecodeError) as error:
        raise PhotoError(
            f"{path}: not a readable image ({error}); pass a JPEG or PNG file"
        ) from error


def judge(faces: list[dict], expected: Expectation) -> dict:
    """Which expectations hold, the faces taken left to right."""
    ordered = sorted(faces, key=lambda face: face["box"][0] + face["box"][2])
    low, high = expected.ages
    said = "".join("F" if face["p_female"] >= 0.5 else "M" for face in ordered)
    count_right = len(ordered) == len(expected.genders)
    genders_right = (
        sum(a == b for a, b in zip(said, expected.genders, strict=True)) if count_right else 0
    )
    return {
        "faces_found": len(ordered),
        "faces_expected": len(expected.genders),
        "genders": said,
        "genders_expected": expected.genders,
        "genders_right": genders_right,
        "ages_in_range": sum(low <= face["age"] <= high for face in ordered),
        "age_range": [low, high],
        "all_met": count_right
        and genders_right == len(ordered)
        and all(low <= face["age"] <= high for face in ordered),
        "faces": ordered,
    }


def analyse(analyzer: FaceAnalyzer, bgr: np.ndarray) -> list[dict]:
    return [
        {
            "box": [round(float(v)) for v in face.box],
            "age": round(float(face.age), 1),
            "p_female": round(float(face.p_female), 3),
        }
        for face in analyzer.analyze(bgr, bgr=True)
    ]


def astronaut_bgr() -> np.ndarray:
    from skimage import data  # scikit-image ships the portrait

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def run(checkpoints: list[Path], group: Path) -> list[dict]:
    photos = {
        "astronaut": (astronaut_bgr(), Expectation("F", ASTRONAUT_AGES)),
        "group": (read_photo(group), Expectation(GROUP_GENDERS, GROUP_AGES)),
    }
    results = []
    for checkpoint in checkpoints:
        analyzer = FaceAnalyzer(checkpoint, threads=1)
        results.append(
            {
                "checkpoint": str(checkpoint),
                **{
                    name: judge(analyse(analyzer, image), expected)
                    for name, (image, expected) in photos.items()
                },
            }
        )
    return results


def summary_line(result: dict) -> str:
    parts = [result["checkpoint"]]
    for name in ("astronaut", "group"):
        verdict = result[name]
        ages = ", ".join(f"{face['age']:.1f}" for face in verdict["faces"])
        parts.append(
            f"{name}: {verdict['faces_found']}/{verdict['faces_expected']} faces, "
            f"genders {verdict['genders']} (expected {verdict['genders_expected']}), "
            f"ages {ages} (range {verdict['age_range'][0]:g}–{verdict['age_range'][1]:g}): "
            + ("met" if verdict["all_met"] else "not met")
        )
    return "\n  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agegender.bench.photos", description=__doc__)
    parser.add_argument("checkpoints", type=Path, nargs="+", help=".ckpt or .onnx")
    parser.add_argument("--group", type=Path, help="a local copy of the group photograph")
    parser.add_argument(
        "--cache", type=Path, default=Path(".cache/agegender"), help="download folder"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    for checkpoint in args.checkpoints:
        if not checkpoint.is_file():
            message = f"error: {checkpoint}: no such model file; pass a .ckpt or .onnx"
            print(message, file=sys.stderr)
            return 2
    try:
        group = args.group or fetch_group_photo(args.cache)
        results = run(args.checkpoints, group)
    except PhotoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for result in results:
        print(summary_line(result))
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

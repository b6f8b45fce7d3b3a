"""Deterministic synthetic faces in UTKFace format.

The real UTKFace cannot be downloaded everywhere (CI, offline machines), so the demo and the
tests use this generator instead. Each image is a cartoon face drawn with OpenCV whose
appearance depends on the labels the way real faces do:

* age: head proportions (children have rounder, larger heads, low and large eyes, small noses),
  grey then white hair from ~40, wrinkles from ~30, under-eye bags, receding hair in old men;
* gender: hair length (with ~8% exceptions each way), beard/stubble on adult men, lip colour,
  eyebrow thickness, eyeliner, jaw shape;
* race: skin tone (with in-group variation) and hair colour;

plus nuisance variation (background, pose, lighting, noise, blur, JPEG) so that a network has
to learn the cues rather than a pixel. File names follow UTKFace:
``{age}_{gender}_{race}_{yyyymmddHHMMSSfff}.jpg.chip.jpg``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from agegender.io import pid_alive

__all__ = [
    "GENERATOR_VERSION",
    "generate_dataset",
    "render_face",
    "sample_labels",
    "synthetic_file_name",
]

# Bump whenever the pixels or labels change, so cached folders get regenerated.
GENERATOR_VERSION = 1

_RACE_SHARES = np.array([0.42, 0.19, 0.14, 0.17, 0.08])
_FEMALE_SHARE = 0.48  # UTKFace is ~52% male

_COMPLETE = ".complete"
_PARTIAL = ".partial-"
_SUFFIX = ".jpg.chip.jpg"

# Fixed-point sub-pixel drawing: OpenCV takes integer coordinates with `shift` fractional bits,
# which keeps small features (wrinkles, pupils) smooth at 64 px instead of snapping to pixels.
_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

Color = tuple[float, float, float]


# --------------------------------------------------------------------------------------------
# Labels and names
# --------------------------------------------------------------------------------------------


def _age_weights() -> np.ndarray:
    """Probability of each age 1..116, shaped like UTKFace's histogram."""
    ages = np.arange(1, 117, dtype=np.float64)
    weights = np.zeros_like(ages)

    def region(lo: int, hi: int, share: float, shape: np.ndarray) -> None:
        sel = (ages >= lo) & (ages <= hi)
        weights[sel] = share * shape[sel] / shape[sel].sum()

    region(1, 4, 0.10, 1.0 / ages)  # UTKFace has a spike of 1-year-olds
    region(5, 19, 0.10, 0.6 + ages / 19.0)
    region(20, 35, 0.40, 0.5 + np.exp(-0.5 * ((ages - 26.0) / 5.0) ** 2))
    region(36, 60, 0.27, 1.6 - (ages - 36.0) / 25.0)
    region(61, 80, 0.12, 1.5 - (ages - 61.0) / 20.0)
    region(81, 116, 0.01, np.exp(-(ages - 81.0) / 8.0))  # a few, for the age-range filter
    return weights / weights.sum()


_AGE_P = _age_weights()


def sample_labels(count: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Sample ``count`` (age, gender, race) triples with UTKFace-like marginals.

    Ages 1..116: ~10% under 5, ~40% in 20..35, a tail to 80 and ~1% above 80.
    Gender 0=male, 1=female (~52/48). Race 0..4 = White, Black, Asian, Indian, Others with
    shares ~42/19/14/17/8 %.
    """
    ages = rng.choice(np.arange(1, 117), size=count, p=_AGE_P)
    genders = (rng.random(count) < _FEMALE_SHARE).astype(int)
    races = rng.choice(5, size=count, p=_RACE_SHARES)
    return [(int(a), int(g), int(r)) for a, g, r in zip(ages, genders, races, strict=True)]


def synthetic_file_name(age: int, gender: int, race: int, index: int, seed: int) -> str:
    """UTKFace-style name, e.g. ``'27_1_2_20170116174525125.jpg.chip.jpg'``.

    The 17-digit timestamp is a valid date derived from (seed, index): a distinct week per seed
    and a distinct millisecond offset per index, so names in one folder never collide even when
    labels repeat.
    """
    stamp = datetime(2017, 1, 1) + timedelta(
        weeks=seed % 5000, milliseconds=1237 * index + 17 * (seed % 59)
    )
    millis = stamp.microsecond // 1000
    return f"{age}_{gender}_{race}_{stamp:%Y%m%d%H%M%S}{millis:03d}{_SUFFIX}"


# --------------------------------------------------------------------------------------------
# Drawing helpers (coordinates are float pixels; colours are RGB)
# --------------------------------------------------------------------------------------------


def _fx(v: float) -> int:
    return int(round(v * _ONE))


def _pts(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * _ONE).astype(np.int32).reshape(-1, 2)


def _mix(c1: Sequence[float], c2: Sequence[float], t: float) -> Color:
    t = float(min(max(t, 0.0), 1.0))
    return (
        c1[0] + (c2[0] - c1[0]) * t,
        c1[1] + (c2[1] - c1[1]) * t,
        c1[2] + (c2[2] - c1[2]) * t,
    )


def _scale(c: Sequence[float], k: float) -> Color:
    return (min(c[0] * k, 255.0), min(c[1] * k, 255.0), min(c[2] * k, 255.0))


def _ellipse(
    img: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    color: Color,
    thickness: int = -1,
    angle: float = 0.0,
    start: float = 0.0,
    end: float = 360.0,
) -> None:
    cv2.ellipse(
        img,
        (_fx(center[0]), _fx(center[1])),
        (max(_fx(axes[0]), 1), max(_fx(axes[1]), 1)),
        angle,
        start,
        end,
        color,
        thickness,
        _AA,
        _SHIFT,
    )


def _poly(img: np.ndarray, points: np.ndarray, color: Color) -> None:
    cv2.fillPoly(img, [_pts(points)], color, _AA, _SHIFT)


def _polyline(img: np.ndarray, points: np.ndarray, color: Color, thickness: float) -> None:
    cv2.polylines(img, [_pts(points)], False, color, max(int(round(thickness)), 1), _AA, _SHIFT)


def _circle(img: np.ndarray, center: tuple[float, float], r: float, color: Color) -> None:
    cv2.circle(img, (_fx(center[0]), _fx(center[1])), max(_fx(r), 1), color, -1, _AA, _SHIFT)


def _arc(cx: float, cy: float, ax: float, ay: float, t0: float, t1: float, n: int) -> np.ndarray:
    """Points on an ellipse for parameter angles t0..t1 (radians, y pointing down)."""
    t = np.linspace(t0, t1, n)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def _bezier(
    p0: Sequence[float], p1: Sequence[float], p2: Sequence[float], n: int = 8
) -> np.ndarray:
    """Quadratic Bezier through p0 and p2 pulled towards p1 (for curved wrinkles and brows)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c = np.asarray(p0), np.asarray(p1), np.asarray(p2)
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


# --------------------------------------------------------------------------------------------
# Appearance palettes
# --------------------------------------------------------------------------------------------

# Skin tone (RGB) per race: mean and per-channel spread of the in-group variation.
_SKIN = {
    0: ((232, 192, 168), 14),  # White
    1: ((118, 80, 58), 22),  # Black
    2: ((232, 196, 160), 12),  # Asian
    3: ((184, 132, 98), 18),  # Indian
    4: ((206, 158, 122), 24),  # Others
}
_HAIR_DARK = ((28, 22, 20), (45, 32, 24), (62, 42, 28))
_HAIR_LIGHT = ((205, 172, 110), (150, 105, 62), (98, 64, 38), (160, 78, 42))
_IRIS_DARK = ((70, 45, 30), (50, 35, 25), (90, 60, 35))
_IRIS_LIGHT = ((70, 110, 160), (80, 120, 90), (110, 80, 50))


def _skin_color(race: int, rng: np.random.Generator) -> Color:
    mean, spread = _SKIN[race]
    shade = rng.normal(0.0, spread)  # overall lighter/darker
    tint = rng.normal(0.0, spread * 0.25, 3)
    return tuple(float(np.clip(m + shade + t, 20, 250)) for m, t in zip(mean, tint, strict=True))


def _hair_base(race: int, rng: np.random.Generator) -> Color:
    # Light hair is common only in the White group; everyone else mostly very dark.
    if race == 0 and rng.random() < 0.55:
        base = _HAIR_LIGHT[rng.integers(len(_HAIR_LIGHT))]
    else:
        base = _HAIR_DARK[rng.integers(len(_HAIR_DARK))]
    return tuple(float(np.clip(c * rng.uniform(0.85, 1.15), 0, 255)) for c in base)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Solid colour, linear gradient, smooth blobs or textured noise."""
    kind = rng.integers(4)
    c1 = rng.uniform(25, 230, 3)
    if kind == 0:
        img = np.empty((size, size, 3), np.float32)
        img[:] = c1
        return img
    if kind == 1:
        c2 = rng.uniform(20, 240, 3)
        t = np.linspace(0.0, 1.0, size, dtype=np.float32)
        ramp = t[:, None] if rng.random() < 0.5 else t[None, :]
        ramp = np.broadcast_to(ramp, (size, size))[..., None]
        return (c1 + (c2 - c1) * ramp).astype(np.float32)
    # Coarse random grid upsampled: low-res cells give blobs, finer cells give texture.
    cells = 3 if kind == 2 else int(rng.integers(6, 16))
    grid = (c1 + rng.normal(0.0, 32.0, (cells, cells, 3))).astype(np.float32)
    interp = cv2.INTER_CUBIC if kind == 2 else cv2.INTER_LINEAR
    return cv2.resize(grid, (size, size), interpolation=interp)


# --------------------------------------------------------------------------------------------
# The face
# --------------------------------------------------------------------------------------------


@dataclass
class _Person:
    """One synthetic face's identity: labels, age cues, colours, hair style, head geometry."""

    size: float
    female: bool
    age: float
    race: int
    maturity: float  # 0 for a baby, 1 from about 21 years
    wrinkle: float  # 0 until about 25 years, about 1 at 70, growing on
    grey: float  # share of grey hair
    beardiness: float
    skin: Color
    hair_base: Color  # hair colour before greying
    grey_target: Color
    hair: Color
    shadow: Color
    crease: Color  # wrinkle lines
    crease_w: float
    hair_len: float  # 0 short, 0.5 chin, 1 shoulders
    exception: bool  # short-haired woman or long-haired man
    bald: float
    cx: float  # face ellipse centre and half axes
    cy: float
    a: float
    b: float
    taper: float  # jaw taper

    @property
    def child(self) -> float:
        return 1.0 - self.maturity

    @property
    def eye_y(self) -> float:
        return self.cy + self.b * (-0.07 + 0.26 * self.child)  # children's eyes sit lower

    @property
    def mouth_y(self) -> float:
        return self.cy + self.b * (0.5 + 0.06 * self.maturity)

    @property
    def mouth_w(self) -> float:
        return self.a * (0.3 + 0.12 * self.maturity) * (0.92 if self.female else 1.0)

    @property
    def nose_y(self) -> float:
        return self.eye_y + self.b * (0.22 + 0.17 * self.maturity)

    @property
    def nose_w(self) -> float:
        return self.a * (0.13 + 0.06 * self.maturity) * (1.15 if self.race in (1, 3) else 1.0)

    @property
    def strand_col(self) -> Color:
        return _mix(_scale(self.hair, 0.62), (90, 90, 90), self.grey * 0.3)  # darker strands

    @property
    def strand_w(self) -> int:
        return max(int(round(self.size * 0.007)), 1)


def _person(age: int, gender: int, race: int, rng: np.random.Generator, size: int) -> _Person:
    """Draw the identity of one face (the random draws come in a fixed order)."""
    s = float(size)
    female = gender == 1
    age_f = float(age)

    # Continuous age factors, each with individual noise so age is a noisy monotone function
    # of the cues over the whole range (not a set of thresholds).
    maturity = min(age_f / 21.0, 1.0) ** 0.75  # 0.1 at 1y, 0.31 at 5y, 0.57 at 10y, 1 at 21y
    child = 1.0 - maturity
    wrinkle = max(0.0, (age_f - 25.0 + rng.normal(0.0, 4.0)) / 45.0)
    grey_onset = 36.0 + rng.normal(0.0, 5.0)
    grey = float(np.clip((age_f - grey_onset) / 30.0, 0.0, 1.0))
    adult_male = (not female) and age_f >= 15
    beardiness = float(np.clip((age_f - 14.0) / 10.0, 0.0, 1.0)) if adult_male else 0.0

    skin = _skin_color(race, rng)
    skin = _mix(skin, _scale(skin, 0.92), min(wrinkle, 1.0) * 0.5)  # older skin a bit duller
    hair_base = _hair_base(race, rng)
    if age_f < 3:  # baby hair is lighter/sparser: blend towards skin
        hair_base = _mix(hair_base, skin, 0.35 * (3 - age_f) / 2)
    grey_target = _mix((150, 150, 150), (242, 242, 240), grey)
    # Wrinkles are faint but visible when they first appear and darken with age; width is
    # capped so very old lines don't read as a moustache.
    crease = _scale(skin, 0.86 - 0.36 * min(wrinkle, 1.3) / 1.3)

    hair_len, exception, bald = _hair_style(female, age_f, maturity, rng)

    # Jaw taper: female/child faces narrow to a softer chin; old faces sag (wider jowls).
    return _Person(
        size=s,
        female=female,
        age=age_f,
        race=race,
        maturity=maturity,
        wrinkle=wrinkle,
        grey=grey,
        beardiness=beardiness,
        skin=skin,
        hair_base=hair_base,
        grey_target=grey_target,
        hair=_mix(hair_base, grey_target, grey**0.8),
        shadow=_scale(skin, 0.78),
        crease=crease,
        crease_w=s * 0.01 * (0.7 + min(wrinkle, 1.2)),
        hair_len=hair_len,
        exception=exception,
        bald=bald,
        cx=s * 0.5,
        cy=s * (0.53 - 0.02 * child),
        a=s * (0.245 + 0.035 * child) * rng.normal(1.0, 0.03) * (1.03 if not female else 1.0),
        b=s * (0.345 - 0.035 * child) * rng.normal(1.0, 0.03),
        taper=(0.30 if female else 0.2) * maturity + 0.08 * child - 0.08 * min(wrinkle, 1.0),
    )


def _hair_style(
    female: bool, age: float, maturity: float, rng: np.random.Generator
) -> tuple[float, bool, float]:
    """(hair length, whether it goes against the gender's usual style, baldness).

    Exceptions (short-haired women, long-haired men) are a few percent each way for adults;
    they carry the other gender cues (beard, earrings, lipstick) more often, so a model that
    looks beyond the hair can tell them apart. Children get half as many: hair is their main
    gender cue."""
    odd = 0.05 if maturity > 0.8 else 0.025
    u = rng.random()
    if female:
        long_p = 1.0 - odd if age >= 2 else 0.7  # babies: gender is harder to see
        medium_p = 0.4 * (1.0 - long_p)
        hair_len = (
            rng.uniform(0.75, 1.0) if u < long_p else (0.45 if u < long_p + medium_p else 0.0)
        )
    else:
        hair_len = rng.uniform(0.7, 1.0) if u < 0.6 * odd else (0.45 if u < odd else 0.0)
    exception = (hair_len == 0.0) if female else (hair_len > 0.0)
    bald = 0.0
    if not female and age > 30:
        bald_p = min((age - 30.0) / 50.0, 0.7)
        if rng.random() < bald_p:
            bald = rng.uniform(0.4, 1.0) * min((age - 25.0) / 40.0, 1.0)
    if age < 2:
        bald = 0.35  # babies: little hair on top
    return hair_len, exception, bald


def render_face(
    age: int, gender: int, race: int, rng: np.random.Generator, size: int = 200
) -> np.ndarray:
    """Draw one synthetic face with the given labels; returns RGB uint8 ``[size, size, 3]``.

    All randomness (identity, pose, lighting, background) comes from ``rng``, so the same rng
    state gives the same image. The parts are drawn back to front.
    """
    person = _person(age, gender, race, rng, size)
    # OpenCV anti-aliases only on 8-bit images, so draw on uint8.
    canvas = np.clip(_background(size, rng), 0, 255).astype(np.uint8)
    _draw_hair_behind(canvas, person)
    _draw_body(canvas, person, rng)
    _draw_ears(canvas, person, rng)
    _draw_side_strands(canvas, person)
    outline = _draw_face_shape(canvas, person)
    _draw_beard(canvas, person, outline, rng)
    hairline = _draw_hair_on_top(canvas, person, rng)
    eye_ry, brow_lift = _draw_eyes(canvas, person, rng)
    _draw_forehead_lines(canvas, person, eye_ry, brow_lift, hairline)
    _draw_nose(canvas, person)
    _draw_folds(canvas, person)
    _draw_mouth(canvas, person, rng)
    _draw_age_spots(canvas, person, rng)
    _draw_bow(canvas, person, rng)
    return _photograph(canvas, rng, size)


def _draw_hair_behind(canvas: np.ndarray, p: _Person) -> None:
    """Long hair behind head and shoulders."""
    if p.hair_len <= 0:
        return
    cx, cy, a, b, s = p.cx, p.cy, p.a, p.b, p.size
    bottom = cy + b * (0.35 + 1.35 * p.hair_len)
    spread = min(a * (1.2 + 0.25 * p.hair_len), s * 0.47)  # stay in frame
    top = _arc(cx, cy - 0.04 * b, a * 1.12, b * 1.08, math.pi, 2 * math.pi, 16)
    back = np.concatenate([top, [[cx + spread, bottom], [cx - spread, bottom]]], axis=0)
    _poly(canvas, back, _scale(p.hair, 0.8))
    cv2.polylines(canvas, [_pts(back)], True, _scale(p.hair, 0.55), p.strand_w, _AA, _SHIFT)


def _draw_body(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> None:
    """Shoulders in clothes, and the neck."""
    cx, cy, a, b, s = p.cx, p.cy, p.a, p.b, p.size
    clothes = tuple(float(c) for c in rng.uniform(15, 235, 3))
    shoulder_w = s * (0.42 + 0.1 * p.maturity)
    _ellipse(canvas, (cx, cy + b + s * 0.36), (shoulder_w, s * 0.3), clothes)
    neck_w = a * (0.5 + 0.08 * (not p.female))
    neck = np.array(
        [
            [cx - neck_w, cy + 0.5 * b],
            [cx + neck_w, cy + 0.5 * b],
            [cx + neck_w * 1.05, cy + b + s * 0.09],
            [cx - neck_w * 1.05, cy + b + s * 0.09],
        ]
    )
    _poly(canvas, neck, p.shadow)
    _ellipse(
        canvas, (cx, cy + b + s * 0.085), (neck_w * 1.05, s * 0.03), p.shadow, start=0, end=180
    )


def _draw_ears(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> None:
    """Ears (long hair covers them later), with earrings for most women with short hair."""
    cx, a, b, ey = p.cx, p.a, p.b, p.eye_y
    ear_col = _scale(p.skin, 0.9)
    for side in (-1, 1):
        _ellipse(canvas, (cx + side * a * 0.97, ey + 0.14 * b), (0.14 * a, 0.22 * b), ear_col)
        if p.female and p.maturity > 0.6 and p.hair_len < 0.5 and rng.random() < 0.9:
            _circle(canvas, (cx + side * a * 0.98, ey + 0.36 * b), 0.045 * a, (225, 190, 70))


def _draw_side_strands(canvas: np.ndarray, p: _Person) -> None:
    """Strands of long hair in front of the shoulders, beside the face."""
    if p.hair_len <= 0:
        return
    cx, cy, a, b, s = p.cx, p.cy, p.a, p.b, p.size
    bottom = cy + b * (0.35 + 1.35 * p.hair_len)
    for side in (-1, 1):
        strand = np.array(
            [
                [cx + side * a * 0.7, cy - 0.3 * b],
                [cx + side * a * 1.18, cy - 0.4 * b],
                [cx + side * min(a * (1.3 + 0.2 * p.hair_len), s * 0.47), bottom],
                [cx + side * a * 0.75, bottom],
            ]
        )
        _poly(canvas, strand, p.hair)
        for f in (0.3, 0.6, 0.85):
            top_pt = strand[0] + f * (strand[1] - strand[0])
            bot_pt = strand[3] + f * (strand[2] - strand[3])
            mid = (top_pt + bot_pt) / 2 + (side * a * 0.08, 0.0)
            _polyline(canvas, _bezier(top_pt, mid, bot_pt), p.strand_col, p.strand_w)


@dataclass
class _Outline:
    """The face outline, relative to the centre, at parameter angles t: x, y and sin(t)."""

    fx: np.ndarray
    fy: np.ndarray
    sin_t: np.ndarray


def _draw_face_shape(canvas: np.ndarray, p: _Person) -> _Outline:
    """The face: round top, tapered jaw; rosy cheeks for children."""
    cx, cy, a, b = p.cx, p.cy, p.a, p.b
    t = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
    sin_t = np.sin(t)
    lower = np.clip(sin_t, 0.0, None)
    fx = a * np.cos(t) * (1.0 - p.taper * lower**2)
    fy = b * sin_t * (1.0 + 0.04 * lower * p.maturity)
    _poly(canvas, np.stack([cx + fx, cy + fy], axis=1), p.skin)
    if p.child > 0.2:
        blush = _mix(p.skin, (236, 120, 120), 0.45 * p.child)
        for side in (-1, 1):
            _ellipse(canvas, (cx + side * a * 0.55, cy + b * 0.35), (a * 0.2, b * 0.13), blush)
    return _Outline(fx, fy, sin_t)


def _draw_beard(
    canvas: np.ndarray, p: _Person, outline: _Outline, rng: np.random.Generator
) -> None:
    """Stubble, a full beard, or moustache and goatee, drawn before the mouth."""
    cx, cy, a, b, mouth_y = p.cx, p.cy, p.a, p.b, p.mouth_y
    kind = -1
    if p.beardiness > 0 and rng.random() < (0.97 if p.exception else 0.85):
        kind = int(rng.choice(3, p=[0.45, 0.35, 0.2]))  # stubble, full, moustache+goatee
    if kind in (0, 1):
        density = (0.5 if kind == 0 else 0.9) * p.beardiness * rng.uniform(0.8, 1.1)
        colour = _mix(p.skin, _scale(p.hair, 0.85), density)
        reach = 1.06 if kind == 1 else 1.0
        sel = outline.sin_t > 0.25
        jaw = np.stack([cx + outline.fx[sel] * reach, cy + outline.fy[sel] * reach], axis=1)
        cheek_y = cy + b * 0.22
        top_line = np.array(
            [
                [cx + a * 0.55, cheek_y],
                [cx + a * 0.25, mouth_y - 0.12 * b],
                [cx - a * 0.25, mouth_y - 0.12 * b],
                [cx - a * 0.55, cheek_y],
            ]
        )
        _poly(canvas, np.concatenate([jaw, top_line]), colour)
    elif kind == 2:
        colour = _mix(p.skin, _scale(p.hair, 0.85), 0.8 * p.beardiness)
        _ellipse(canvas, (cx, mouth_y - 0.07 * b), (a * 0.36, 0.07 * b), colour)
        _ellipse(canvas, (cx, mouth_y + 0.22 * b), (a * 0.2, 0.18 * b), colour)


def _draw_hair_on_top(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> float:
    """A cap of hair between the head outline and the hairline (returned, as a share of the
    face's half height above its centre), strands, and male-pattern baldness."""
    cx, cy, a, b = p.cx, p.cy, p.a, p.b
    volume = 0.06 + 0.1 * p.hair_len + rng.uniform(0.0, 0.08)
    cap_ax, cap_ay = a * (1.05 + volume * 0.5), b * (1.02 + volume)
    fringe = rng.random() < (0.35 if p.hair_len > 0 else 0.1)
    hairline = 0.62 - 0.22 * fringe + rng.normal(0.0, 0.03)
    side_drop = 0.15 if p.hair_len == 0 else 0.3
    hx = np.linspace(-1.0, 1.0, 17)
    hy = cy - b * hairline + b * (hairline + side_drop) * np.abs(hx) ** (4 if not fringe else 6)
    line = np.stack([cx + hx * cap_ax, hy], axis=1)
    top = _arc(cx, cy - 0.02 * b, cap_ax, cap_ay, 0.0, -math.pi, 20)
    _poly(canvas, np.concatenate([line, top[top[:, 1] < hy[-1]]], axis=0), p.hair)
    crown = (cx + rng.normal(0.0, 0.2) * a, cy - cap_ay * 0.95)
    for f in (-0.7, -0.35, 0.0, 0.35, 0.7):
        end = (cx + f * cap_ax * 0.9, cy - b * hairline + 0.04 * b)
        mid = ((crown[0] + end[0]) / 2 + f * a * 0.25, (crown[1] + end[1]) / 2)
        _polyline(canvas, _bezier(crown, mid, end), p.strand_col, p.strand_w)
    if p.bald > 0:  # skin over the crown, a horseshoe of hair remains
        _ellipse(
            canvas,
            (cx, cy - b * (0.55 + 0.25 * (1 - p.bald))),
            (a * (0.45 + 0.5 * p.bald), b * (0.2 + 0.38 * p.bald)),
            p.skin,
        )
    return hairline


def _draw_eyes(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> tuple[float, float]:
    """Eyes, lids, lashes, brows and crow's feet; returns the eye's vertical half axis and
    the brow's lift (the forehead lines start above them)."""
    cx, b, s, ey, child = p.cx, p.b, p.size, p.eye_y, p.child
    ex = p.a * (0.4 - 0.02 * child)
    erx = p.a * (0.17 + 0.1 * child)
    ery = erx * (0.5 + 0.25 * child) * (1.0 - 0.2 * min(p.wrinkle, 1.2))
    iris = _IRIS_LIGHT if (p.race == 0 and rng.random() < 0.5) else _IRIS_DARK
    iris_col = iris[rng.integers(len(iris))]
    gaze = rng.normal(0.0, 0.15) * erx
    # Eyeliner for women, lashes for girls and women (the cartoon convention).
    liner = (2.2 if p.maturity > 0.7 else 1.6) if p.female else 1.0
    brow_col = _mix(_scale(p.hair_base, 0.8), p.grey_target, p.grey * 0.8)
    brow_col = _mix(p.skin, brow_col, 0.45 + 0.55 * p.maturity)
    brow_thick = s * (0.022 if not p.female else 0.011) * (0.6 + 0.4 * p.maturity)
    brow_lift = b * (0.17 + (0.05 if p.female else 0.0))
    for side in (-1, 1):
        x0 = cx + side * ex
        if p.wrinkle > 0.2:  # under-eye bags
            bag = _mix(p.skin, _scale(p.shadow, 0.9), min(p.wrinkle, 1.2) * 0.85)
            _ellipse(canvas, (x0, ey + ery * 0.9), (erx * 0.9, ery * 1.2), bag, start=0, end=180)
        _ellipse(canvas, (x0, ey), (erx, ery), (238, 236, 230))
        _circle(canvas, (x0 + gaze, ey), ery * 0.95, iris_col)
        _circle(canvas, (x0 + gaze, ey), ery * 0.45, (15, 12, 12))
        _circle(canvas, (x0 + gaze + ery * 0.3, ey - ery * 0.3), ery * 0.18, (250, 250, 250))
        # Upper lid line (thicker with eyeliner).
        _ellipse(
            canvas,
            (x0, ey),
            (erx, ery),
            (30, 22, 20),
            thickness=max(int(round(s * 0.006 * liner)), 1),
            start=180,
            end=360,
        )
        if p.female and p.age >= 2:
            for k in range(3):  # three lashes on the outer half of the upper lid
                ang = math.radians(-65 + 22 * k)
                root = (x0 + side * erx * math.cos(ang), ey + ery * math.sin(ang))
                tip = (root[0] + side * erx * 0.3, root[1] - ery * (0.55 - 0.15 * k))
                _polyline(canvas, np.array([root, tip]), (30, 22, 20), s * 0.006)
        # Eyebrow: straight and heavy for men, thin and arched for women.
        by = ey - ery - brow_lift * (0.7 + 0.3 * p.maturity)
        arch = (0.1 if p.female else 0.03) * b
        inner, outer = x0 - side * erx * 1.0, x0 + side * erx * 1.25
        brow = _bezier((inner, by + 0.01 * b), (x0, by - arch), (outer, by + 0.04 * b))
        _polyline(canvas, brow, brow_col, brow_thick)
        if p.wrinkle > 0.25:  # crow's feet at the outer corner
            ox = x0 + side * erx * 1.12
            for k in range(1 + int(min(p.wrinkle, 1.3) * 2.4)):
                dy = (k - 1) * 0.45 * ery
                seg = np.array([[ox, ey + dy * 0.5], [ox + side * erx * 0.55, ey + dy * 1.8]])
                _polyline(canvas, seg, p.crease, p.crease_w)
    return ery, brow_lift


def _draw_forehead_lines(
    canvas: np.ndarray, p: _Person, eye_ry: float, brow_lift: float, hairline: float
) -> None:
    """Forehead lines, only where the forehead is visible (below the hairline)."""
    if p.wrinkle <= 0.1:
        return
    cx, cy, a, b = p.cx, p.cy, p.a, p.b
    for k in range(1 + int(min(p.wrinkle, 1.4) * 3)):
        fy_k = p.eye_y - eye_ry - brow_lift - b * (0.08 + 0.075 * k)
        if fy_k < cy - b * hairline + 0.02 * b:
            break
        half = a * (0.5 - 0.04 * k)
        line = _bezier((cx - half, fy_k + 0.02 * b), (cx, fy_k - 0.05 * b), (cx + half, fy_k))
        _polyline(canvas, line, p.crease, p.crease_w)


def _draw_nose(canvas: np.ndarray, p: _Person) -> None:
    """The nose, growing with maturity."""
    cx, b, ey, nose_y, nose_w = p.cx, p.b, p.eye_y, p.nose_y, p.nose_w
    bridge = np.array([[cx + nose_w * 0.25, ey + 0.1 * b], [cx + nose_w * 0.45, nose_y - 0.06 * b]])
    _polyline(canvas, bridge, p.shadow, p.size * 0.006)
    _ellipse(canvas, (cx, nose_y - 0.02 * b), (nose_w * 0.8, 0.06 * b), _scale(p.skin, 1.04))
    for side in (-1, 1):
        _ellipse(canvas, (cx + side * nose_w * 0.45, nose_y), (nose_w * 0.28, 0.025 * b), p.shadow)


def _draw_folds(canvas: np.ndarray, p: _Person) -> None:
    """Nasolabial folds and marionette lines."""
    if p.wrinkle <= 0.15:
        return
    cx, b, nose_y, nose_w, mouth_y, mouth_w = p.cx, p.b, p.nose_y, p.nose_w, p.mouth_y, p.mouth_w
    for side in (-1, 1):
        p0 = (cx + side * nose_w * 1.1, nose_y - 0.04 * b)
        p2 = (cx + side * mouth_w * 1.25, mouth_y + 0.08 * b)
        p1 = (cx + side * mouth_w * 1.45, nose_y + 0.05 * b)
        _polyline(canvas, _bezier(p0, p1, p2), p.crease, p.crease_w * 1.15)
        if p.wrinkle > 0.7:
            q0 = (cx + side * mouth_w * 1.05, mouth_y + 0.04 * b)
            q1 = (cx + side * mouth_w * 1.1, mouth_y + 0.25 * b)
            _polyline(canvas, np.array([q0, q1]), p.crease, p.crease_w * 0.8)


def _draw_mouth(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> None:
    """Lips redder for women (and lipstick for some adult women), thinner with age."""
    cx, b, mouth_y, mouth_w = p.cx, p.b, p.mouth_y, p.mouth_w
    lip_t = 0.55 if p.female else 0.18
    if p.female and p.maturity > 0.8 and rng.random() < (0.85 if p.exception else 0.45):
        lip_t = 0.75
    lip_col = _mix(p.skin, (185, 45, 65), lip_t)
    lip_h = b * 0.055 * (1.0 - 0.35 * min(p.wrinkle, 1.0)) * (1.1 if p.female else 1.0)
    smile = rng.uniform(-0.2, 0.6) * lip_h
    _ellipse(canvas, (cx, mouth_y), (mouth_w, lip_h), lip_col, start=180, end=360)
    _ellipse(canvas, (cx, mouth_y), (mouth_w * 0.85, lip_h * 1.3), lip_col, start=0, end=180)
    line = _bezier(
        (cx - mouth_w, mouth_y - smile), (cx, mouth_y + smile), (cx + mouth_w, mouth_y - smile)
    )
    _polyline(canvas, line, _scale(lip_col, 0.55), p.size * 0.006)


def _draw_age_spots(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> None:
    """Age spots on old skin."""
    if p.age <= 62:
        return
    for _ in range(int(rng.integers(0, 2 + (p.age - 62) / 8))):
        px = p.cx + rng.uniform(-0.6, 0.6) * p.a
        py = p.cy + rng.uniform(-0.5, 0.1) * p.b
        _circle(canvas, (px, py), p.a * rng.uniform(0.025, 0.05), _scale(p.skin, 0.8))


def _draw_bow(canvas: np.ndarray, p: _Person, rng: np.random.Generator) -> None:
    """A headband or bow for many little girls (a real-world cue while hair is still short)."""
    if not (p.female and p.age < 10 and rng.random() < (0.45 if p.age >= 3 else 0.75)):
        return
    cx, cy, a, b = p.cx, p.cy, p.a, p.b
    bow = tuple(float(c) for c in rng.uniform(60, 250, 3))
    bx, by = cx + a * 0.55, cy - b * 0.85
    if p.age < 3:
        band = max(int(round(p.size * 0.03)), 1)
        _ellipse(canvas, (cx, cy - 0.05 * b), (a * 1.0, b * 0.9), bow, band, start=200, end=340)
    _ellipse(canvas, (bx - a * 0.1, by), (a * 0.11, a * 0.07), bow, angle=20)
    _ellipse(canvas, (bx + a * 0.1, by), (a * 0.11, a * 0.07), bow, angle=-20)


# Nuisance strengths (see _photograph).
# Pose: UTKFace chips are aligned, so pose changes are mostly small (normal) but reach the
# limits now and then (clipped).
_ROT_SD, _ROT_MAX = 4.0, 15.0  # degrees
_SCALE_SD, _SCALE_MAX = 0.04, 0.1
_SHIFT_SD, _SHIFT_MAX = 0.008, 0.03  # fraction of the image
_LIGHT_MAX = 0.45  # max relative brightness change across the image
_CONTRAST = (0.75, 1.2)
_BRIGHTNESS = 25.0
_CAST_SD = 0.04
_NOISE_MAX = 6.0
_BLUR_P = 0.25


def _photograph(canvas: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Nuisance: soften, pose (rotation/scale/shift), lighting, white balance, noise, blur."""
    s = float(size)
    img = cv2.GaussianBlur(canvas, (0, 0), 0.45 * s / 200 + 0.3)

    angle = float(np.clip(rng.normal(0.0, _ROT_SD), -_ROT_MAX, _ROT_MAX))
    scale = 1.0 + float(np.clip(rng.normal(0.0, _SCALE_SD), -_SCALE_MAX, _SCALE_MAX))
    shift = np.clip(rng.normal(0.0, _SHIFT_SD, 2), -_SHIFT_MAX, _SHIFT_MAX) * s
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += shift
    img = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    img = img.astype(np.float32)

    # Directional light, brightness/contrast and a colour cast.
    phi = rng.uniform(0.0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    light = np.float32(math.cos(phi)) * ramp[None, :] + np.float32(math.sin(phi)) * ramp[:, None]
    gain = 1.0 + rng.uniform(0.0, _LIGHT_MAX) * light
    contrast = rng.uniform(*_CONTRAST)
    bright = rng.uniform(-_BRIGHTNESS, _BRIGHTNESS)
    cast = rng.normal(1.0, _CAST_SD, 3).astype(np.float32)
    img = (img - 128.0) * contrast + 128.0 + bright
    img *= gain[..., None]
    img *= cast

    noise_sigma = rng.uniform(0.0, _NOISE_MAX)
    if noise_sigma > 1.0:
        img += (rng.standard_normal((size, size), dtype=np.float32) * noise_sigma)[..., None]
    if rng.random() < _BLUR_P:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.0) * s / 200)
    return np.clip(img, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Dataset folder
# --------------------------------------------------------------------------------------------


def _read_meta(root: Path) -> dict | None:
    try:
        return json.loads((root / _COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def _clean_stale_partials(root: Path) -> None:
    """Remove temp folders of crashed runs of this host (their pid is gone).

    The host is in the name because the cache may be on a shared disk, where another
    machine's process ids mean nothing here."""
    prefix = f".{root.name}{_PARTIAL}{socket.gethostname()}-"
    for p in root.parent.glob(f"{prefix}*"):
        try:
            pid = int(p.name[len(prefix) :].split("-")[0])
        except ValueError:
            continue  # not ours: leave it
        if not pid_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


def _remove_old_dataset(root: Path) -> None:
    """Delete an outdated generated folder; refuse to delete anything that isn't one."""
    if not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a directory")
    foreign = [p for p in root.iterdir() if not (p.name == _COMPLETE or p.name.endswith(_SUFFIX))]
    if foreign:
        raise FileExistsError(
            f"{root} exists and does not look like a synthetic dataset "
            f"(e.g. {foreign[0].name}); refusing to overwrite it"
        )
    shutil.rmtree(root)


def generate_dataset(
    root: str | Path,
    count: int,
    seed: int = 0,
    image_size: int = 200,
    jpeg_quality: int = 90,
    progress: bool = True,
) -> Path:
    """Write ``count`` synthetic UTKFace-format JPEGs into ``root`` and return ``root``.

    Deterministic: the same arguments give byte-identical files. The folder is built under a
    temporary sibling name and renamed into place when complete, so an interrupted run never
    leaves a folder that looks finished. If ``root`` already holds a ``.complete`` marker with
    the same parameters and generator version, nothing is done. An outdated generated folder is
    replaced; a folder with other content raises ``FileExistsError``.
    """
    if count < 0 or seed < 0 or image_size < 16 or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"bad arguments: {count=} {seed=} {image_size=} {jpeg_quality=}")
    root = Path(root)
    meta = {
        "count": int(count),
        "seed": int(seed),
        "image_size": int(image_size),
        "jpeg_quality": int(jpeg_quality),
        "version": GENERATOR_VERSION,
    }
    if _read_meta(root) == meta:
        return root

    root.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_partials(root)
    tmp = root.parent / (
        f".{root.name}{_PARTIAL}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    tmp.mkdir()
    try:
        labels = sample_labels(count, np.random.default_rng(seed))
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        for index, (age, gender, race) in _progress(labels, f"Synthetic faces -> {root}", progress):
            # One independent stream per image (spawned from the seed): image i does not depend
            # on how many images come before it.
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
            rgb = render_face(age, gender, race, rng, image_size)
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            name = synthetic_file_name(age, gender, race, index, seed)
            (tmp / name).write_bytes(buf.tobytes())
        (tmp / _COMPLETE).write_text(json.dumps(meta, sort_keys=True))

        if root.exists() or root.is_symlink():
            if _read_meta(root) == meta:  # a concurrent run finished first
                shutil.rmtree(tmp)
                return root
            _remove_old_dataset(root)
        try:
            os.rename(tmp, root)
        except OSError:
            if _read_meta(root) != meta:
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _progress(
    labels: list[tuple[int, int, int]], description: str, enabled: bool
) -> Iterable[tuple[int, tuple[int, int, int]]]:
    """Enumerate labels, with a rich progress bar when enabled."""
    if not enabled:
        return enumerate(labels)
    from rich.progress import track

    return enumerate(track(labels, description=description, total=len(labels)))

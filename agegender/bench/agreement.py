"""Does `live.py` show what `eval.py` reports? Both paths on the same labelled photographs.

    python -m agegender.bench.agreement CKPT [--split FILE | --root FOLDER] [--detector NAME]
                                             [--tta none|flip] [--overlap skip|keep]
                                             [--match-source true|false]

For each photograph of a saved split's test part (default: the checkpoint's own split) or of
a UTKFace-named folder (less the photographs the checkpoint trained or was validated on, as
`eval.py` leaves them out), it runs the live pipeline as `live.py source=<folder>` does (stills:
detection at full resolution, every face cropped the checkpoint's way) and scores the face a
single-person photograph is about; then `eval.py`'s two framings (`crop=face`, the default,
and `crop=dataset`) on the same photographs. It prints age MAE, CS@5 and gender accuracy of
each, the share of photographs where live found a face, and how far live and eval differ
photograph by photograph. Both paths use the same test-time augmentation (`--tta`, like
`tta=` of eval.py and live.py) and source matching (`--match-source`, like their
`match_source=`). Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from agegender.data.split import read_split
from agegender.evaluation.data import load_eval_set
from agegender.evaluation.run import predict_all
from agegender.faces.detectors import build_detector
from agegender.faces.photo import main_face
from agegender.inference.backends import load_predictor
from agegender.inference.pipeline import FacePipeline, LiveSettings, set_threads
from agegender.inference.predictor import Predictor
from agegender.inference.sources import Frame
from agegender.io import write_atomic


def scores(ages: np.ndarray, genders: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    error = np.abs(pred[:, 0] - ages)
    return {
        "age_mae": round(float(error.mean()), 3),
        "age_cs5": round(float((error <= 5).mean()), 3),
        "gender_acc": round(float(((pred[:, 1] > 0.5) == (genders == 1)).mean()), 4),
        "count": len(ages),
    }


def live_predictions(
    predictor: Predictor,
    files: list[Path],
    detector_name: str,
    tta: str | None = None,
    match_source: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(age, p_female) of each photograph's main face through the live pipeline in stills
    mode, NaN where no face was found; and which photographs had one."""
    settings = LiveSettings(tta=tta, match_source=match_source)
    pipeline = FacePipeline(predictor, build_detector(detector_name), settings)
    out = np.full((len(files), 2), np.nan)
    for index, file in enumerate(files):
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            continue
        faces = pipeline.process(Frame(index, 0.0, image, file.name), stills=True)
        face = main_face([t.box for t in faces], *image.shape[:2])
        if face is not None:
            track = next(t for t in faces if t.box is face)
            out[index] = (track.age, track.p_female)
    return out, ~np.isnan(out[:, 0])


def run(
    checkpoint: Path,
    split: Path | None,
    root: Path | None,
    detector: str,
    cache: str,
    tta: str | None = None,
    overlap: str = "skip",
    match_source: bool = True,
) -> dict:
    predictor = load_predictor(checkpoint)
    meta = predictor.meta
    data_cfg: dict = {"cache_dir": cache}
    if root is not None and split is None:
        data_cfg["root"] = str(root)
    else:
        split = split or Path(meta["split_file"])
        data_cfg["split_file"] = str(split)
        data_cfg["root"] = str(root or read_split(split).root)
    sets = {
        mode: load_eval_set(
            meta, data_cfg, "test", crop=mode, overlap=overlap, match_source=match_source
        )
        for mode in ("face", "dataset")
    }
    photos = sets["face"]
    files = [photos.root / relpath for relpath in photos.relpaths]
    live, found = live_predictions(predictor, files, detector, tta, match_source)
    flip = tta == "flip"
    predictions = {
        mode: np.stack(predict_all(predictor, data.images, flip=flip), 1)
        for mode, data in sets.items()
    }
    rows: dict[str, dict] = {}
    for mode, data in sets.items():
        both = predictions[mode]
        rows[f"eval crop={mode}, all"] = scores(data.ages, data.genders, both)
        rows[f"eval crop={mode}, where live found a face"] = scores(
            data.ages[found], data.genders[found], both[found]
        )
    rows["live"] = scores(photos.ages[found], photos.genders[found], live[found])
    eval_face = predictions["face"]
    gap = np.abs(live[found] - eval_face[found])
    return {
        "checkpoint": str(checkpoint),
        "photos": len(files),
        "photographs trained on": photos.overlap or "the split's test part only",
        "live_found": int(found.sum()),
        "live_found_share": round(float(found.mean()), 4),
        "framing (eval crop=face)": photos.framing,
        "detector": detector,
        "tta": tta or "none",
        "match_source": match_source,
        "live vs eval crop=face, mean |age diff|": round(float(gap[:, 0].mean()), 4),
        "live vs eval crop=face, gender disagreements": int(
            ((live[found, 1] > 0.5) != (eval_face[found, 1] > 0.5)).sum()
        ),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m agegender.bench.agreement", description=__doc__
    )
    parser.add_argument("checkpoint", type=Path, help=".ckpt or .onnx")
    parser.add_argument("--split", type=Path, help="split.json (default: the checkpoint's)")
    parser.add_argument("--root", type=Path, help="data folder (default: the split's)")
    parser.add_argument("--detector", default="yunet", help="live detector (conf/detector/)")
    parser.add_argument("--tta", choices=("none", "flip"), default="flip", help="as eval/live")
    parser.add_argument("--cache", default=".cache/agegender", help="image store folder")
    parser.add_argument(
        "--overlap",
        choices=("skip", "keep"),
        default="skip",
        help="--root: leave out photographs the model trained on (as eval.py's overlap=)",
    )
    parser.add_argument(
        "--match-source",
        choices=("true", "false"),
        default="true",
        help="shrink and compress sharp faces like the training photographs (as live/eval)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    set_threads(1)
    result = run(
        args.checkpoint,
        args.split,
        args.root,
        args.detector,
        args.cache,
        args.tta,
        args.overlap,
        args.match_source == "true",
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_atomic(args.json, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

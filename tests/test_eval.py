"""eval.py: metrics equal to a direct computation, consistent breakdowns, report files, errors."""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from agegender.checkpoint import CheckpointError, load_checkpoint
from agegender.contract import RACES
from agegender.data.split import SplitMismatchError
from agegender.data.utkface import DatasetError, age_band, parse_name
from agegender.errors import UserError
from agegender.evaluation.data import EvalDataError, load_eval_set
from agegender.evaluation.metrics import GENDERS
from agegender.evaluation.run import evaluate
from agegender.faces.crop import Framing
from agegender.faces.detectors import build_detector
from agegender.faces.photo import PhotoCrop, frame_photo
from agegender.inference.pipeline import FacePipeline, LiveSettings, crop_faces
from agegender.inference.predictor import TorchPredictor
from agegender.inference.sources import Frame
from agegender.preprocess import decode_bgr
from tests.conftest import run_entry


def data_config(run: Path, **extra: object) -> dict:
    return {"root": None, "cache_dir": str(run.parent.parent / "cache"), **extra}


def direct_metrics(ages, genders, pred_age, p_female) -> dict[str, float]:
    """The metrics by their textbook definitions, in numpy, without the project's code."""
    error = pred_age - ages
    positive, negative = p_female[genders == 1], p_female[genders == 0]
    pairs = positive[:, None] - negative[None, :]
    return {
        "age_mae": np.abs(error).mean(),
        "age_rmse": np.sqrt((error**2).mean()),
        "age_cs5": (np.abs(error) <= 5).mean(),
        "age_bias": error.mean(),
        "gender_acc": ((p_female > 0.5) == (genders == 1)).mean(),
        "gender_auc": (pairs > 0).mean() + 0.5 * (pairs == 0).mean(),
        "gender_ece": direct_ece(genders, p_female),
    }


def direct_ece(genders: np.ndarray, p_female: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: over equal-width bins of p_female, the gap between the
    bin's mean p_female and its share of women, weighted by the bin's size."""
    index = np.searchsorted(np.linspace(0, 1, bins + 1), p_female, side="right") - 1
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.mean() * abs(p_female[inside].mean() - genders[inside].mean())
    return total


@pytest.fixture(scope="module")
def report(brief_run: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval")
    # on torch, as the direct computation below runs: the metrics can then match exactly
    return evaluate(
        brief_run / "checkpoints" / "best.ckpt",
        data_config(brief_run),
        out_dir=out,
        tta="flip",
        runtime="torch",
    )


def test_metrics_equal_a_direct_computation_on_the_saved_test_split(
    brief_run: Path, report
) -> None:
    split = json.loads((brief_run / "split.json").read_text())
    root = Path(split["root"])
    names = [relpath for relpath, _ in split["test"]]
    labels = [parse_name(Path(name).name) for name in names]
    ages = np.array([label.age for label in labels], dtype=np.float64)
    genders = np.array([label.gender for label in labels])
    # the face path, as eval.py runs it by default (crop=face): the framing the run recorded
    meta = load_checkpoint(brief_run / "checkpoints" / "best.ckpt").meta
    crop = PhotoCrop.from_config(meta["crop"]).cropper(64)
    faces = [crop(decode_bgr((root / name).read_bytes()))[0] for name in names]
    images = np.stack(faces).transpose(0, 3, 1, 2)
    predictor = TorchPredictor(brief_run / "checkpoints" / "best.ckpt")
    plain = predictor.predict_batch(images).astype(np.float64)
    flipped = predictor.predict_batch(np.ascontiguousarray(images[..., ::-1])).astype(np.float64)
    for variant, predictions in (("plain", plain), ("flip", (plain + flipped) / 2)):
        overall = report.summary["results"][variant]["overall"]
        assert overall["count"] == len(names)
        expected = direct_metrics(ages, genders, predictions[:, 0], predictions[:, 1])
        for key, value in expected.items():
            assert overall[key] == pytest.approx(value, abs=1e-4), (variant, key)
        # every fairness group: the same direct computation on that group's faces only
        races = np.array([label.race for label in labels])
        groups = {
            "age_band": np.array([age_band(int(age)) for age in ages]),
            "gender": np.array([GENDERS[g] for g in genders]),
            "race": np.array([RACES[r] for r in races]),
        }
        checked = 0
        for key, names_of in groups.items():
            rows = report.summary["results"][variant]["by"][key]
            assert set(rows) == set(names_of.tolist()), key
            for group, row in rows.items():
                inside = names_of == group
                assert row["count"] == int(inside.sum())
                with warnings.catch_warnings():  # AUC of a one-gender group is undefined
                    warnings.simplefilter("ignore", RuntimeWarning)
                    direct = direct_metrics(
                        ages[inside],
                        genders[inside],
                        predictions[inside, 0],
                        predictions[inside, 1],
                    )
                for metric, value in direct.items():
                    if metric == "gender_auc" and len(set(genders[inside])) < 2:
                        assert row[metric] is None  # undefined for a one-gender group
                        continue
                    assert row[metric] == pytest.approx(value, abs=1e-4), (key, group, metric)
                    checked += 1
        assert checked > 50
    assert report.summary["backend"] == "torch"
    assert report.summary["data"].startswith(f"test split of {brief_run / 'split.json'}")


def test_by_default_a_checkpoint_is_scored_on_onnxruntime_as_torch_scores_it(
    brief_run: Path, report, tmp_path: Path
) -> None:
    scored = evaluate(
        brief_run / "checkpoints" / "best.ckpt",
        data_config(brief_run),
        out_dir=tmp_path,
        tta="flip",
        tensorboard=False,
    )
    assert scored.summary["backend"] == "onnxruntime"
    for variant in ("plain", "flip"):
        got = scored.summary["results"][variant]["overall"]
        expected = report.summary["results"][variant]["overall"]
        assert got["count"] == expected["count"] > 10
        assert got["age_mae"] == pytest.approx(expected["age_mae"], abs=1e-3)
        assert got["gender_acc"] == pytest.approx(expected["gender_acc"], abs=1e-9)


def test_training_records_the_eye_distance_of_its_faces(brief_run: Path) -> None:
    """The checkpoint's framing carries the training faces' median eye distance (what live
    and eval shrink sharper faces to), measured here again on part of the training split."""
    meta = load_checkpoint(brief_run / "checkpoints" / "best.ckpt").meta
    recorded = meta["crop"]["source_eye_px"]
    split = json.loads((brief_run / "split.json").read_text())
    root, yunet = Path(split["root"]), build_detector("yunet")
    eyes = [
        frame_photo(decode_bgr((root / name).read_bytes()), yunet, Framing(), 64).eye_px
        for name, _ in split["train"][:60]
    ]
    assert recorded == pytest.approx(np.median([e for e in eyes if e is not None]), rel=0.1)


def test_eval_agrees_with_the_test_metrics_training_logged(brief_run: Path, report) -> None:
    # Lightning's test loop (torchmetrics objects, float32 batches) on the same split.
    logged = json.loads((brief_run / "metrics.json").read_text())["test"]
    overall = report.summary["results"]["plain"]["overall"]
    assert overall["age_mae"] == pytest.approx(logged["test/age_mae"], abs=1e-3)
    assert overall["gender_acc"] == pytest.approx(logged["test/gender_acc"], abs=1e-6)


@pytest.mark.parametrize("variant", ["plain", "flip"])
def test_breakdowns_add_up_to_the_totals(report, variant: str) -> None:
    result = report.summary["results"][variant]
    overall = result["overall"]
    assert set(result["by"]) == {"age_band", "gender", "race"}
    for breakdown, groups in result["by"].items():
        counts = np.array([row["count"] for row in groups.values()])
        assert counts.sum() == overall["count"], breakdown
        for key in ("age_mae", "age_bias", "age_cs5", "gender_acc"):
            weighted = sum(row[key] * row["count"] for row in groups.values()) / counts.sum()
            assert weighted == pytest.approx(overall[key], abs=1e-6), (breakdown, key)
    bands = list(result["by"]["age_band"])
    assert bands == sorted(bands, key=lambda band: int(band.split("-")[0]))
    assert sum(map(sum, result["gender_confusion"])) == overall["count"]


def test_report_files_exist_and_pictures_are_valid_pngs(report) -> None:
    out = report.out_dir
    markdown = (out / "report.md").read_text()
    assert json.loads((out / "metrics.json").read_text()) == report.summary
    for name in ("summary", "age_scatter", "age_band_errors", "gender_confusion", "worst_errors"):
        path = out / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = cv2.imread(str(path))
        assert image is not None and min(image.shape[:2]) > 100
        assert f"]({name}.png)" in markdown
    assert "## By race" in markdown and "| flip |" in markdown
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 1 + report.summary["results"]["plain"]["overall"]["count"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_a_utkface_folder_is_evaluated_whole(
    brief_run: Path, brief_onnx: Path, tmp_path: Path
) -> None:
    root = Path(json.loads((brief_run / "split.json").read_text())["root"])
    folder = tmp_path / "my_photos"
    folder.mkdir()
    for path in sorted(root.glob("*.jpg"))[:12]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "holiday.jpg").write_bytes(b"not a face")  # not UTKFace-named: skipped
    cfg = {"root": str(folder), "cache_dir": str(tmp_path / "cache")}
    result = evaluate(
        brief_onnx, cfg, out_dir=tmp_path / "out", tensorboard=False, worst=0, overlap="keep"
    )
    assert not (tmp_path / "out" / "worst_errors.png").exists()  # worst=0: no grid
    assert (tmp_path / "out" / "summary.png").is_file()
    assert result.summary["backend"] == "onnxruntime"
    assert result.summary["data"].startswith(f"12 usable images in {folder} (")
    assert result.summary["results"]["plain"]["overall"]["count"] == 12
    assert not (tmp_path / "out" / "tensorboard").exists()


def framed_count(framing: str) -> int:
    """The faces a report's framing line counts, whatever way each was framed."""
    pattern = r"(\d+) (?:aligned on landmarks|box crops|with no face found)"
    return sum(int(count) for count in re.findall(pattern, framing))


def test_a_folder_is_scored_without_the_photographs_the_model_trained_on(
    brief_run: Path, tmp_path: Path
) -> None:
    """UTKFace frames the same photographs several ways under the same names: another
    framing of a training photograph (same name, other pixels) and a renamed copy of a
    validation photograph (same content) are left out; test photographs are scored."""
    split = json.loads((brief_run / "split.json").read_text())
    root = Path(split["root"])
    folder = tmp_path / "another_framing"
    folder.mkdir()
    trained = [name for name, _ in split["train"][:5]]
    for name in trained:  # reframed: a tighter crop, the same file name
        image = cv2.imread(str(root / name))
        side = image.shape[0]
        cv2.imwrite(str(folder / name), image[side // 8 : -side // 8, side // 8 : -side // 8])
    validated = split["val"][0][0]
    age, gender, race, _ = validated.split("_", 3)
    renamed = f"{age}_{gender}_{race}_20991231235959999.jpg.chip.jpg"
    (folder / renamed).write_bytes((root / validated).read_bytes())
    unseen = [name for name, _ in split["test"][:4]]
    for name in unseen:
        (folder / name).write_bytes((root / name).read_bytes())
    cfg = {"root": str(folder), "cache_dir": str(tmp_path / "cache")}
    best = brief_run / "checkpoints" / "best.ckpt"
    meta = load_checkpoint(best).meta
    skipped = load_eval_set(meta, cfg)
    assert sorted(skipped.relpaths) == sorted(unseen)
    assert "6 photographs left out" in skipped.overlap
    kept = load_eval_set(meta, cfg, overlap="keep")
    assert sorted(kept.relpaths) == sorted([*trained, renamed, *unseen])
    assert "6 of these photographs were trained on" in kept.overlap
    # the framing line counts the photographs scored, not the whole folder's store
    assert framed_count(skipped.framing) == 4 and framed_count(kept.framing) == 10
    result = evaluate(best, cfg, out_dir=tmp_path / "out", tensorboard=False, runtime="torch")
    assert result.summary["results"]["plain"]["overall"]["count"] == 4
    assert "6 photographs left out" in result.summary["overlap"]
    # a checkpoint whose split file is not on this machine cannot be checked: all scored
    elsewhere = {**meta, "split_file": str(tmp_path / "gone" / "split.json")}
    assert len(load_eval_set(elsewhere, cfg)) == 10
    assert "not checked" in load_eval_set(elsewhere, cfg).overlap
    with pytest.raises(EvalDataError, match="overlap=maybe"):
        load_eval_set(meta, cfg, overlap="maybe")


def test_both_crop_modes_agree_on_photographs_already_aligned(
    trained_run: Path, tmp_path: Path
) -> None:
    """Photographs already framed the way the face path frames them (real faces: the
    astronaut portrait, moved, turned and lit differently, then aligned) reach the model much
    as stored when eval re-frames them (crop=face), and exactly as live.py crops them; the
    report says which framing it used."""
    from skimage import data as skimage_data

    folder = tmp_path / "aligned"
    folder.mkdir()
    detector = build_detector("yunet")
    portrait = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    rng = np.random.default_rng(0)
    for index in range(8):
        angle, scale = rng.uniform(-10, 10), rng.uniform(0.8, 1.2)
        matrix = cv2.getRotationMatrix2D((256 + rng.uniform(-30, 30), 180), angle, scale)
        photo = cv2.warpAffine(portrait, matrix, (512, 512), borderMode=cv2.BORDER_REFLECT)
        photo = cv2.convertScaleAbs(photo, alpha=rng.uniform(0.7, 1.2))
        face, outcome, _ = frame_photo(photo, detector, Framing(), 128)
        assert outcome == "aligned"
        cv2.imwrite(str(folder / f"{20 + 5 * index}_1_0_2017010402310{index:04d}.jpg"), face)
    best = trained_run / "checkpoints" / "best.ckpt"
    meta = TorchPredictor(best).meta
    cfg = {"root": str(folder), "cache_dir": str(tmp_path / "cache")}
    sets = {mode: load_eval_set(meta, cfg, crop=mode) for mode in ("face", "dataset")}
    images = {mode: sets[mode].images.astype(np.float32) for mode in sets}
    # re-framing moves an aligned face a little (the detector does not put landmarks on a
    # crop exactly where it found them in the whole photograph), far less than another photo
    same_photo = np.abs(images["face"] - images["dataset"]).mean()
    other_photo = np.abs(images["dataset"] - np.roll(images["dataset"], 1, axis=0)).mean()
    assert same_photo < 0.7 * other_photo, (same_photo, other_photo)
    # eval's crops are live's crops, pixel for pixel
    pipeline = FacePipeline(TorchPredictor(best), detector, LiveSettings())
    for index, relpath in enumerate(sets["face"].relpaths):
        path = folder / relpath
        (track,) = pipeline.process(Frame(index, 0.0, cv2.imread(str(path))), stills=True)
        (crop,) = crop_faces(cv2.imread(str(path)), [track.box], pipeline.framing, 64)
        assert np.array_equal(crop.transpose(2, 0, 1), images["face"][index].astype(np.uint8))
    results = {
        mode: evaluate(best, cfg, out_dir=tmp_path / mode, tensorboard=False, crop=mode)
        for mode in ("face", "dataset")
    }
    assert results["face"].summary["crop"] == "face"
    assert "8 aligned on landmarks" in results["face"].summary["framing"]
    assert "centre square" in results["dataset"].summary["framing"]


def test_match_source_false_scores_what_live_shows_without_source_matching(
    trained_run: Path, tmp_path: Path
) -> None:
    """Sharp photographs (a real portrait, eyes far wider apart than the training faces'):
    `match_source=false` frames them as live.py match_source=false does, pixel for pixel,
    unlike the default, and the report says which way they were framed."""
    from skimage import data as skimage_data

    folder = tmp_path / "sharp"
    folder.mkdir()
    portrait = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    portrait = cv2.resize(portrait, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    for index, angle in enumerate((-6, 0, 6)):
        matrix = cv2.getRotationMatrix2D((512, 360), angle, 1.0)
        photo = cv2.warpAffine(portrait, matrix, (1024, 1024), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"35_1_0_2017010402310{index:04d}.jpg"), photo)
    best = trained_run / "checkpoints" / "best.ckpt"
    meta = TorchPredictor(best).meta
    assert meta["crop"]["source_eye_px"] < 60  # the portrait's eyes are ~90 px apart
    cfg = {"root": str(folder), "cache_dir": str(tmp_path / "cache")}
    sets = {on: load_eval_set(meta, cfg, match_source=on) for on in (True, False)}
    assert not np.array_equal(sets[True].images, sets[False].images)
    detector = build_detector("yunet")
    pipeline = FacePipeline(TorchPredictor(best), detector, LiveSettings(match_source=False))
    for index, relpath in enumerate(sets[False].relpaths):
        photo = cv2.imread(str(folder / relpath))
        (track,) = pipeline.process(Frame(index, 0.0, photo), stills=True)
        (crop,) = crop_faces(photo, [track.box], pipeline.framing, 64)
        assert np.array_equal(crop.transpose(2, 0, 1), sets[False].images[index])
    out = tmp_path / "out"
    result = evaluate(
        best, cfg, out_dir=out, tensorboard=False, runtime="torch", match_source=False
    )
    assert result.summary["match_source"] is False
    assert "- framing (crop=face, match_source=false):" in (out / "report.md").read_text()


def test_the_saved_split_follows_data_that_moved(brief_run: Path, report, tmp_path: Path) -> None:
    root = Path(json.loads((brief_run / "split.json").read_text())["root"])
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    cfg = data_config(brief_run, root=str(moved), split_file=str(brief_run / "split.json"))
    result = evaluate(brief_run / "checkpoints" / "best.ckpt", cfg, out_dir=tmp_path / "out")
    assert result.summary["data"].endswith(f"images in {moved})")
    plain, before = result.summary["results"]["plain"], report.summary["results"]["plain"]
    assert plain["overall"] == pytest.approx(before["overall"])


def test_the_default_report_folder_is_beside_the_run(brief_run: Path) -> None:
    from agegender.evaluation.run import default_out_dir

    assert default_out_dir(brief_run / "checkpoints" / "best.ckpt") == brief_run / "eval"
    assert default_out_dir(Path("deploy/model.onnx")) == Path("deploy/eval")


def test_a_split_file_that_no_longer_matches_its_folder_is_refused(
    brief_run: Path, tmp_path: Path
) -> None:
    split = json.loads((brief_run / "split.json").read_text())
    split["test"][0][1] = "0" * 32  # as if the image had been edited since training
    changed = tmp_path / "split.json"
    changed.write_text(json.dumps(split))
    with pytest.raises(SplitMismatchError, match="does not match the data folder.*changed"):
        evaluate(
            brief_run / "checkpoints" / "best.ckpt",
            data_config(brief_run, split_file=str(changed)),
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["empty folder", "no split", "bad checkpoint", "bad tta"])
def test_bad_input_is_a_clear_user_error(
    case: str, brief_run: Path, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    best = brief_run / "checkpoints" / "best.ckpt"
    cache = str(tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no faces here")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00" * 64)
    model, cfg, error, message = {
        "empty folder": (best, {"root": str(tmp_path / "empty")}, DatasetError, "no usable"),
        "no split": (untrained_checkpoint, {}, EvalDataError, "pass data.root=PATH"),
        "bad checkpoint": (garbage, {}, CheckpointError, "not a PyTorch file"),
        "bad tta": (best, {}, UserError, "tta=mirror"),
    }[case]
    with pytest.raises(error, match=message):
        evaluate(
            model,
            {"cache_dir": cache, **cfg},
            out_dir=tmp_path / "out",
            tta=("mirror" if case == "bad tta" else None),
        )
    assert not (tmp_path / "out").exists()


def test_eval_cli_writes_the_report_and_says_where(brief_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run_entry(
        "eval.py",
        "ckpt=latest",
        f"outputs_dir={brief_run.parent.parent}",
        f"data.cache_dir={brief_run.parent.parent / 'cache'}",
        f"out={out}",
        "tta=flip",
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"report:  {out / 'report.md'}" in result.stdout
    assert "plain  age MAE" in result.stdout and "flip   age MAE" in result.stdout
    assert (out / "eval_config.yaml").is_file() and (out / "summary.png").is_file()
    assert not list(Path.cwd().glob("eval.log")) and not (Path.cwd() / ".hydra").exists()

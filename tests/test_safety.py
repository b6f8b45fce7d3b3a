"""No user file is replaced by accident; temporaries are unique per writer and cleaned up."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from agegender.configs import compose_config
from agegender.data.utkface import DigestIndex
from agegender.errors import UserError
from agegender.evaluation.run import evaluate
from agegender.export import export
from agegender.inference.pipeline import run_from_config
from agegender.io import (
    PathClashError,
    check_outputs,
    pid_alive,
    remove_stale_temps,
    temp_path,
    write_atomic,
)
from tests.conftest import run_entry


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content digest: proves nothing was changed."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def live_config(**overrides: object) -> dict:
    config = OmegaConf.to_container(compose_config("live", "display=false"), resolve=True)
    config.update(overrides)
    return config


def write_video(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def write_images(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for index in range(count):
        cv2.imwrite(str(folder / f"photo{index}.jpg"), rng.integers(0, 255, (40, 40, 3), np.uint8))
    return folder


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


# -- the helper ------------------------------------------------------------------------------


def test_temporary_names_are_unique_per_writer_and_keep_the_suffix(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    names = {temp_path(target, keep_suffix=True) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(".out.mp4.tmp-")
        assert name.suffix == ".mp4" and f"-{os.getpid()}-" in name.name


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    write_atomic(target, "new")
    assert target.read_text() == "new"


def test_check_outputs_catches_inputs_links_and_twins(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"x")
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    hard = tmp_path / "hard.mp4"
    os.link(video, hard)
    for output in (video, link, hard, tmp_path / "sub" / ".." / "clip.mp4"):
        with pytest.raises(PathClashError, match=r"save=.* would replace the input source="):
            check_outputs({"save": output}, {"source": video})
    with pytest.raises(PathClashError, match="jsonl=.* and save=.* are the same file"):
        check_outputs({"save": tmp_path / "a.x", "jsonl": tmp_path / "a.x"}, {})
    check_outputs({"save": tmp_path / "new.mp4", "jsonl": tmp_path / "a.jsonl"}, {"source": video})


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = dead_pid()
    stale = tmp_path / f"images-abc.npy.tmp-{dead}"
    stale_meta = tmp_path / f"images-abc.json.tmp-{dead}"
    running = tmp_path / f"images-def.npy.tmp-{os.getpid()}"
    unrelated = tmp_path / "images-abc.npy"
    for path in (stale, stale_meta, running, unrelated):
        path.write_bytes(b"data")
    removed = remove_stale_temps(tmp_path, "images-*.tmp-*")
    assert sorted(removed) == sorted([stale, stale_meta])
    assert running.exists() and unrelated.exists() and not stale.exists()


def test_a_sink_clears_what_a_killed_run_left_for_its_target(tmp_path: Path) -> None:
    from agegender.inference.sinks import JsonlSink

    leftover = tmp_path / f".faces.jsonl.tmp-{dead_pid()}-0a1b2c3d"
    other = tmp_path / f".other.jsonl.tmp-{dead_pid()}-0a1b2c3d"
    leftover.write_text("half")
    other.write_text("not ours to judge")
    sink = JsonlSink(tmp_path / "faces.jsonl")
    sink.close()
    assert not leftover.exists() and other.exists()


def test_the_image_store_build_clears_a_killed_builds_leftovers(
    tmp_path: Path, synthetic_root: Path
) -> None:
    from agegender.data.cache import open_or_build
    from agegender.data.utkface import discover

    samples = discover(synthetic_root).samples[:4]
    leftover = tmp_path / f"images-0123.npy.tmp-{dead_pid()}"
    leftover.write_bytes(b"half a store")
    store = open_or_build(synthetic_root, samples, 32, tmp_path, progress=False, workers=1)
    assert store.valid.all() and not leftover.exists()


def _save_index(args: tuple[str, int]) -> int:
    path, worker = args
    for round_ in range(40):
        index = DigestIndex(Path(path))
        index.entries = {f"w{worker}-{round_}": [1, 2, "x"]}
        index.changed = True
        index.save()
    return worker


def test_concurrent_digest_index_saves_do_not_collide(tmp_path: Path) -> None:
    path = tmp_path / "index.json"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        assert sorted(pool.map(_save_index, [(str(path), w) for w in range(3)])) == [0, 1, 2]
    assert len(json.loads(path.read_text())) == 1  # one writer's whole index, never a mix
    assert [p.name for p in tmp_path.iterdir()] == ["index.json"]


# -- live ------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["save", "jsonl", "csv"])
def test_live_refuses_to_write_over_its_source_video(
    option: str, untrained_checkpoint: Path, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4")
    before = snapshot(tmp_path)
    with pytest.raises(PathClashError, match=f"{option}=.*clip.mp4 would replace the input"):
        run_from_config(
            live_config(ckpt=str(untrained_checkpoint), source=str(video), **{option: str(video)})
        )
    assert snapshot(tmp_path) == before


def test_live_refuses_to_annotate_a_folder_into_itself(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    photos = write_images(tmp_path / "photos")
    before = snapshot(tmp_path)
    for save in (photos, f"{photos}/", photos / "photo0.jpg"):
        with pytest.raises(PathClashError, match="would replace the input source="):
            run_from_config(
                live_config(ckpt=str(untrained_checkpoint), source=str(photos), save=str(save))
            )
    with pytest.raises(PathClashError, match="jsonl=.* would replace the input ckpt="):
        run_from_config(
            live_config(
                ckpt=str(untrained_checkpoint), source=str(photos), jsonl=str(untrained_checkpoint)
            )
        )
    assert snapshot(tmp_path) == before


def test_live_refuses_two_outputs_on_one_file(untrained_checkpoint: Path, tmp_path: Path) -> None:
    photos = write_images(tmp_path / "photos")
    existing = tmp_path / "k.jsonl"
    existing.write_text("keep me\n")
    before = snapshot(tmp_path)
    with pytest.raises(PathClashError, match="csv=.*k.jsonl and jsonl=.*k.jsonl are the same"):
        run_from_config(
            live_config(
                ckpt=str(untrained_checkpoint),
                source=str(photos),
                jsonl=str(existing),
                csv=str(existing),
            )
        )
    assert snapshot(tmp_path) == before


def test_live_cli_clash_is_one_line_and_exit_2(untrained_checkpoint: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4")
    before = snapshot(tmp_path)
    result = run_entry(
        "live.py",
        "display=false",
        f"ckpt={untrained_checkpoint}",
        f"source={video}",
        f"save={video}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "save=" in result.stderr
    assert snapshot(tmp_path) == before


# -- export ----------------------------------------------------------------------------------


def test_export_refuses_its_own_checkpoint_and_wrong_suffixes(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "c.ckpt"
    checkpoint.write_bytes(untrained_checkpoint.read_bytes())
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=r"out=.*c.ckpt: an ONNX export must be named \*.onnx"):
        export(checkpoint, out=checkpoint)
    with pytest.raises(UserError, match=r"must be named \*.pt"):
        export(checkpoint, out=tmp_path / "m.onnx", fmt="torchscript")
    with pytest.raises(UserError, match=r"must be named \*.onnx"):
        export(checkpoint, out=tmp_path / "model")
    onnx_named = tmp_path / "c.onnx"
    onnx_named.symlink_to(checkpoint)  # an .onnx name that is the checkpoint itself
    before = snapshot(tmp_path)
    with pytest.raises(PathClashError, match="would replace the input ckpt="):
        export(checkpoint, out=onnx_named)
    assert snapshot(tmp_path) == before


# -- eval ------------------------------------------------------------------------------------


def test_eval_refuses_to_write_into_a_training_run(brief_run: Path) -> None:
    before = snapshot(brief_run)
    with pytest.raises(PathClashError, match="training run's .* choose another out="):
        evaluate(brief_run / "checkpoints" / "best.ckpt", {}, out_dir=brief_run)
    assert snapshot(brief_run) == before


def test_eval_refuses_a_folder_with_a_foreign_metrics_json(
    untrained_checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"phase": "frozen", "epochs_run": 3}))
    with pytest.raises(PathClashError, match="metrics.json"):
        evaluate(untrained_checkpoint, {}, out_dir=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_run"] == 3

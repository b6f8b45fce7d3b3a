"""The package as a user installs it: `pip install .` (not editable), then the console scripts
from a folder outside the checkout, with the configs shipped inside the package."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPTS = (
    "agegender-train",
    "agegender-live",
    "agegender-export",
    "agegender-eval",
    "agegender-serve",
)


def _checkout_copy(folder: Path) -> Path:
    """The files git tracks (plus untracked, not ignored ones), so no build folder, venv or
    cache of the checkout leaks into the wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = REPO / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder


def _venv_reusing_these_dependencies(folder: Path) -> Path:
    """A fresh venv that sees this environment's packages through a .pth file (offline: no
    download), but has none of the checkout on its path: its agegender is the installed one."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (Path(purelib) / "reuse-test-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.mark.slow
def test_a_non_editable_install_trains_from_outside_the_checkout(tmp_path: Path) -> None:
    source = _checkout_copy(tmp_path / "src")
    python = _venv_reusing_these_dependencies(tmp_path / "venv")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet", "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    shutil.rmtree(source)  # nothing may come from the copied checkout any more
    bin_dir = python.parent
    for script in SCRIPTS:
        assert (bin_dir / script).is_file(), f"{script} was not installed"
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["AGEGENDER_CACHE"] = str(workdir / "cache")
    located = subprocess.run(
        [str(python), "-c", "import agegender.cli as c; print(c.__file__, c.CONFIG_DIR)"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
    )
    assert located.returncode == 0, located.stderr
    assert str(REPO) not in located.stdout and "site-packages" in located.stdout
    # The README's command; a smaller generated set keeps the test to minutes on a busy CPU.
    command = [
        str(bin_dir / "agegender-train"),
        "phase=frozen",
        "data=synthetic",
        "model.pretrained=none",
        "debug=fast",
        "data.synthetic.count=200",
    ]
    trained = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=1500, env=env
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    (run,) = (workdir / "outputs" / "frozen").iterdir()
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "metrics.json").is_file()
    assert (run / "train.log").is_file()
    # Bad input is still one line and exit status 2 through the console script.
    bad = subprocess.run(
        [str(bin_dir / "agegender-live"), "ckpt=missing.ckpt", "display=false"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr

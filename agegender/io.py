"""Safe file output: one atomic-write helper, and the check that no output replaces an input.

Every file the project writes goes to a hidden temporary name unique to its writer (process id
and a random part, so two writers of one target never share a temporary) and is renamed into
place when complete. `check_outputs` runs before any work starts and refuses output paths
that would replace an input (or each other), naming both options.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from agegender.errors import UserError

# `<name>.tmp-<pid>` (caches) or `.<name>.tmp-<pid>-<random>[suffix]` (everything else)
_TEMP_PATTERN = re.compile(r"\.tmp-(?P<pid>\d+)(?:-[0-9a-f]+)?(?:\.[A-Za-z0-9]+)?$")

PathLike = str | os.PathLike


class PathClashError(UserError):
    """An output path that would replace an input file or another output."""


def temp_path(path: str | Path, keep_suffix: bool = False) -> Path:
    """A hidden temporary name beside `path`, unique to this writer.

    `keep_suffix` repeats the suffix at the end, for writers (OpenCV, matplotlib) that pick
    the file type from it.
    """
    path = Path(path)
    tail = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{tail}")


@contextlib.contextmanager
def atomic_target(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    temporary = temp_path(path, keep_suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text or bytes to `path` so that it is either the old file or the complete new one."""
    with atomic_target(path) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data, encoding="utf-8")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temps(folder: str | Path, glob: str = "*.tmp-*") -> list[Path]:
    """Delete temporaries in `folder` left by processes that no longer run; returns them.

    A killed build leaves its temporary behind (for an image store as large as the store);
    a live writer's temporary is kept.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(glob):
        match = _TEMP_PATTERN.search(path.name)
        if match is None or pid_alive(int(match["pid"])) or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):  # another run removed it first
            path.unlink()
            removed.append(path)
    return removed


def _key(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def _same(a: Path, b: Path) -> bool:
    if _key(a) == _key(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _paths(value: PathLike | Iterable[PathLike] | None) -> list[Path]:
    if value is None or value == "":
        return []
    if isinstance(value, str | os.PathLike):
        return [Path(value).expanduser()]
    return [Path(item).expanduser() for item in value]


def check_outputs(
    outputs: Mapping[str, PathLike | Iterable[PathLike] | None],
    inputs: Mapping[str, PathLike | Iterable[PathLike] | None],
) -> None:
    """Refuse outputs that are (or resolve to) an input file or folder, or another output.

    Keys are the options as the user wrote them (`save`, `source`, ...); a value is a path or
    the list of every file that option reads or writes (a folder's images). Raises
    PathClashError naming the two options; runs before anything is written.
    """
    seen: list[tuple[str, Path]] = []
    for option, value in outputs.items():
        for path in _paths(value):
            for input_option, input_value in inputs.items():
                for source in _paths(input_value):
                    if _same(path, source):
                        raise PathClashError(
                            f"{option}={path} would replace the input {input_option}={source}; "
                            f"choose another {option}= path"
                        )
            for other_option, other in seen:
                if _same(path, other):
                    raise PathClashError(
                        f"{option}={path} and {other_option}={other} are the same file; "
                        f"give each output its own path"
                    )
            seen.append((option, path))

"""User-facing errors: bad input that the user can fix, reported in one line, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Base of every error that names bad input (a file, a flag) and how to fix it."""


def report_user_errors(function: F) -> F:
    """Entry-point decorator: a UserError becomes one line on stderr and exit status 2."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]

"""User errors: bad config, bad data, bad checkpoint. The commands print these as one line; anything else is a
bug and keeps its traceback.

Each type also derives from the built-in exception callers have always caught (``ValueError``,
``FileNotFoundError``), so code that catches those keeps working.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """An error in what the user gave (a config key, a file, a checkpoint); its message says which and why."""


class ConfigError(UserError, ValueError):
    """A config value the code cannot work with, named by its key."""


class DataError(UserError, ValueError):
    """A data file that cannot be used, named by its path (and line)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the run needs is not there."""


class FileAccessError(UserError, OSError):
    """A file that cannot be written or downloaded (a full disk, no permission, no network)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit the run."""


class DivergedError(UserError, FloatingPointError):
    """Training stopped after too many consecutive non-finite losses (``model.max_nonfinite_steps``)."""


def full_traceback_wanted() -> bool:
    """``HYDRA_FULL_ERROR=1`` shows the full traceback for user errors too (as Hydra does for its own)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def user_error(err: BaseException) -> UserError | None:
    """The user error ``err`` is, or that Hydra's ``instantiate`` wrapped in an ``InstantiationException``."""
    from hydra.errors import InstantiationException

    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return err if isinstance(err, UserError) else None


def exit_on_user_error(fn: Callable[[], T], logger: logging.Logger | None = None) -> T:
    """Run a command's body: a :class:`UserError` ends the process with ``error: ...`` on stderr (and in
    ``logger``'s log file) and exit code 1, with no traceback. Any other exception propagates with its own."""
    try:
        return fn()
    except Exception as err:
        found = user_error(err)
        if found is None or full_traceback_wanted():
            raise
        if logger is not None:
            logger.error("%s", found)
        sys.exit(f"error: {found}")

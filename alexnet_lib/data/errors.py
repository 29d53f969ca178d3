"""Errors raised by ``alexnet_lib.data``; each message says what to do.

Every message names where we looked, what is wrong, how to get or fix
the data, and which setting points at it: the ``ALEXNET_DATA`` variable
or the ``--data`` flag of ``python -m alexnet_lib``.
"""
from __future__ import annotations

from pathlib import Path

WHERE_TO_SET = ("point the environment variable ALEXNET_DATA (or the "
                "--data flag) at the folder that holds the data sets")


class DataError(RuntimeError):
    """Base class: the data a run needs cannot be used as it is."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No data set where we looked."""


class DataLayoutError(DataError):
    """The folder exists but is not laid out as expected."""


class CorruptImageError(DataError):
    """An image file cannot be decoded; ``path`` names it."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class DownloadError(DataError):
    """A download was asked for and failed (usually: no network)."""


def corrupt_image(path: str | Path, reason: str) -> CorruptImageError:
    return CorruptImageError(
        f"corrupt or unreadable image {path}: {reason}. Replace the file "
        f"(re-download or re-extract it), delete it, or pass "
        f"on_corrupt='skip' (data.on_corrupt) to skip it and count it.",
        path)

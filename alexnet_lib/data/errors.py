"""Errors raised by ``alexnet_lib.data``; each message says what to do.

Every message names where we looked, what is wrong, how to get or fix
the data, and which setting points at it: the ``ALEXNET_DATA`` variable
or the ``--data`` flag of ``python -m alexnet_lib``.
"""
from __future__ import annotations

import re
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
    """An image file cannot be decoded; ``path`` names it, ``reason``
    says why (for the warning when it is skipped)."""

    def __init__(self, message: str, path: str | Path | None = None,
                 reason: str | None = None):
        # A DataLoader worker's error comes back as "Caught ... Original
        # Traceback ...": keep the one line the worker raised.
        found = re.findall(r"CorruptImageError: (.+)", message)
        if message.startswith("Caught ") and found:
            message = found[-1].strip()
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.reason = reason or message


class DownloadError(DataError):
    """A download was asked for and failed (usually: no network)."""


def corrupt_image(path: str | Path, reason: str) -> CorruptImageError:
    return CorruptImageError(
        f"corrupt or unreadable image {path}: {reason}. Replace the file "
        f"(re-download or re-extract it), or pass "
        f"--on-corrupt skip (data.on_corrupt='skip') to skip it and "
        f"count it.", path, reason)

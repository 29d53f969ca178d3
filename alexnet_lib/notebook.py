"""What every chapter notebook does first and last, and how it shows
tables.

A chapter's first code cell installs the library on Colab or Kaggle,
then calls ``NB = start(chapter, needs=[...])``: it reads the run
profile, finds (or, for cpu/gpu, downloads) the data sets the chapter
needs through ``alexnet_lib.data.find_dataset`` and shows a short
header. The last code cell calls ``NB.finish()``, which writes this
run's wall time into that header (an in-place display update, which
Jupyter, Colab and nbclient store in the header cell's output).

A missing data set stops the chapter in its first cell with the data
API's message (``ChapterStopped``). Jupyter, Colab, Kaggle and nbclient
(``jupyter execute``) skip the queued cells after an error anyway; for
cells run one by one afterwards (by hand, or by nbval, which runs every
cell), an input transformer makes each of them fail at once with one
line pointing back at the first cell instead of a ``NameError``.
Running ``start`` again (the first cell) lifts the stop.
"""
from __future__ import annotations

import datetime
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

import alexnet_lib
from alexnet_lib.config import current_profile
from alexnet_lib.sysinfo import hardware_summary

__all__ = ["start", "Chapter", "ChapterStopped", "show_table",
           "show_markdown", "format_mean_std", "format_points",
           "format_value",
           "check_answer"]

class ChapterStopped(RuntimeError):
    """The chapter cannot go on (missing data); says what to do."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a Python traceback.
        return [f"{type(self).__name__}: {self}"]


class Chapter:
    """One run of a chapter notebook: profile, data and wall time."""

    def __init__(self, chapter: str, profile: str,
                 data: dict[str, Path], described: list[str]):
        self.chapter = chapter
        self.profile = profile
        self.data = data  # need name -> folder or file
        self.device = ("cuda" if profile != "ci"
                       and torch.cuda.is_available() else "cpu")
        self.hardware = hardware_summary()
        self.described = described  # one line per data set
        self.started = time.perf_counter()
        self._handle = None

    def elapsed(self) -> float:
        """Seconds since ``start``."""
        return time.perf_counter() - self.started

    def header(self, wall_time_s: float | None = None,
               date: str | None = None) -> str:
        lines = [("profile", self.profile)]
        lines += [("data", d) for d in self.described or ["none"]]
        lines += [("hardware", f"{self.hardware}; runs on {self.device}"),
                  ("torch", f"{torch.__version__}, alexnet_lib "
                            f"{alexnet_lib.__version__}")]
        if wall_time_s is None:
            lines.append(("time", "written here when the last cell has run"))
        else:
            lines.append(("time", f"{duration(wall_time_s)} for the whole "
                                  f"notebook (run of {date})"))
        # "data" once, its later lines indented under it
        return "\n".join(
            (f"{k:8}: " if i == 0 or k != lines[i - 1][0] else " " * 10)
            + v for i, (k, v) in enumerate(lines))

    def show(self) -> None:
        self._handle = _display({"text/plain": self.header()},
                                new_id=True)

    def finish(self, wall_time_s: float | None = None,
               date: str | None = None) -> None:
        """Write the wall time into the header; print it here too.

        Defaults: the time since ``start`` and today (pass a recorded
        run's values to show that run's).
        """
        seconds = self.elapsed() if wall_time_s is None else wall_time_s
        date = date or datetime.date.today().isoformat()
        text = self.header(seconds, date)
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)
        print(f"wall time of this notebook: {duration(seconds)} "
              f"({self.profile} profile, {self.hardware})")


def start(chapter: str, needs: Iterable[str] = ()) -> Chapter:
    """The first cell of a chapter: profile, data, hardware, header.

    needs: data sets by ``find_dataset`` name ("cifar10", "imagenette",
    "imagenet-samples", "class-index"). A missing one raises
    ``ChapterStopped`` with the data API's message, and the later cells
    are not run.
    """
    _lift_stop()
    from alexnet_lib.data import (DataError, describe_dataset,
                                  find_dataset)
    profile = current_profile()
    data, described = {}, []
    for name in needs:
        try:
            data[name] = find_dataset(name, profile=profile)
        except DataError as err:
            _stop_later_cells(f"{chapter} stopped in its first cell "
                              f"({_first_line(err)}); see there")
            raise ChapterStopped(
                f"{err}\nThe chapter stops here; run this cell again "
                f"once the data is in place.") from None
        described.append(describe_dataset(name, data[name]))
    nb = Chapter(chapter, profile, data, described)
    if nb.device == "cpu":  # reuse freed activations (speed.py)
        from alexnet_lib.speed import keep_freed_memory
        keep_freed_memory()
    nb.show()
    return nb


def duration(seconds: float) -> str:
    """'18.8 s' below 100 s, else '10.3 min'."""
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def show_markdown(text: str) -> None:
    """Display Markdown; plain-text viewers (and nbval) get the same
    text, not an object's repr."""
    _display({"text/markdown": text, "text/plain": text})


def show_table(text: str) -> None:
    """Display a Markdown pipe table (and any text after it) so that
    the book renders a table; see ``show_markdown``."""
    lines = text.strip().splitlines()
    if (len(lines) < 2 or not lines[0].startswith("|")
            or set(lines[1].replace("|", "").strip()) - set("-: ")):
        raise ValueError(
            "show_table needs a Markdown table: a '| a | b |' header row "
            "then a '|---|---|' row; use show_markdown for other text")
    show_markdown(text)


def format_mean_std(values: Sequence[float], scale: float = 100, *,
                    sign: bool = False, unit: str = "") -> str:
    """'12.34 ± 0.56' of ``scale * values`` (sample std; no '±' for
    one value); ``sign`` writes '+1.23', ``unit`` follows the mean."""
    from alexnet_lib.experiments import mean_std
    mean, std = mean_std([scale * v for v in values])
    text = f"{mean:+.2f}" if sign else f"{mean:.2f}"
    return text + unit + ("" if math.isnan(std) else f" ± {std:.2f}")


def format_points(points: Sequence[float]) -> str:
    """'+1.23 ± 0.45' of differences already in points (e.g. paired
    differences of error rates times 100): signed, unscaled."""
    return format_mean_std(points, scale=1, sign=True)


def format_value(value: float | None, digits: int = 1,
                 missing: str = "–") -> str:
    """A table cell: ``value`` with ``digits`` decimals, or ``missing``
    (a dash) for None, the paper's "not reported"."""
    return missing if value is None else f"{value:.{digits}f}"


def check_answer(answer: Any, truth: float, name: str, hint: str,
                 tolerance: float = 0.0, digits: int = 3) -> str:
    """A self-check cell's verdict on a reader's number: "Not answered
    yet" while ``answer`` is None, "✅ Correct (truth)." within
    ``tolerance``, else "❌ Not yet: " and the ``hint``. ``truth`` is
    computed by the cell from the chapter's data, not written in it."""
    if answer is None:
        return f"Not answered yet: set {name} above."
    try:
        ok = abs(float(answer) - float(truth)) <= tolerance
    except (TypeError, ValueError):
        return f"❌ {name} should be a number, got {answer!r}."
    if ok:
        return f"✅ Correct ({float(truth):.{digits}g})."
    return f"❌ Not yet: {hint}"


def _first_line(err: Exception) -> str:
    """'CIFAR-10 not found' from 'CIFAR-10 not found: looked for ...'."""
    return str(err).strip().splitlines()[0].split(":")[0]


def _display(bundle: dict, new_id: bool = False):
    """Display a mime bundle (print its text outside IPython); with
    ``new_id`` return a handle that can update it in place."""
    if _shell() is None:
        print(bundle["text/plain"])
        return None
    from IPython.display import display
    return display(bundle, raw=True, display_id=new_id or None)


def _stop_later_cells(reason: str) -> None:
    """Make every later cell raise ChapterStopped(reason) at once."""
    shell = _shell()
    if shell is None:
        return

    def transform(lines: list[str]) -> list[str]:
        if any("alexnet_lib.notebook" in line for line in lines):
            return lines  # the first cell again: let start() run
        return [f"raise __import__('alexnet_lib.notebook').notebook."
                f"ChapterStopped({('not run: ' + reason)!r})\n"]

    transform.alexnet_stop = True
    shell.input_transformers_post.append(transform)


def _lift_stop() -> None:
    shell = _shell()
    if shell is not None:
        shell.input_transformers_post[:] = [
            t for t in shell.input_transformers_post
            if not getattr(t, "alexnet_stop", False)]


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()

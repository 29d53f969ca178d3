"""Stop a training run cleanly on SIGTERM or SIGINT.

A cluster scheduler (or ``torchrun`` when it shuts its workers down)
sends SIGTERM and kills the process some seconds later; Ctrl-C sends
SIGINT. The handler here only sets a flag, so a checkpoint being
written is never cut short. ``fit`` asks :meth:`StopFlag.agreed`
between updates; every process answers the same, so all ranks stop
after the same update and save one consistent checkpoint.

Slurm, ``timeout`` and torchrun signal a whole process group, so the
data-loading workers get the signal too and would die before the
trainer saves. Processes started inside :func:`shield_children` (the
DataLoader workers) never see SIGINT or SIGTERM: the trainer alone
decides when to stop, saves, then shuts its workers down
(:func:`stop_shielded_children`).
"""
from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
import sys
import threading
import weakref
from typing import Callable, Iterable, Iterator

import torch

from alexnet_lib.distributed import all_reduce_sum


class StopFlag:
    """Which stop signal arrived first in this process (None: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._agreed = False

    @property
    def name(self) -> str | None:
        """"SIGTERM", "SIGINT", "another process's signal" or None."""
        if self.signum is not None:
            return signal.Signals(self.signum).name
        return "another process's signal" if self._agreed else None

    def set(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def stopped(self) -> bool:
        """What the last :meth:`agreed` found (no communication)."""
        return self._agreed

    def agreed(self, device: torch.device | str = "cpu") -> bool:
        """True once any process has been signalled (a collective call
        under torch.distributed: every rank must ask at the same step)."""
        if not self._agreed:
            hit = torch.tensor([float(self.signum is not None)],
                               device=device)
            self._agreed = all_reduce_sum(hit).item() > 0
        return self._agreed


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_SHIELDED: "weakref.WeakSet" = weakref.WeakSet()  # children started so


@contextlib.contextmanager
def shield_children() -> Iterator[None]:
    """Children forked or spawned inside never receive SIGINT/SIGTERM.

    The signals are blocked in this thread while inside; a child
    inherits the blocked mask (across exec too) and keeps it, so a
    signal to the process group stays pending in the workers forever.
    This process gets any signal that arrived when the block ends.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    before = set(multiprocessing.active_children())
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        _SHIELDED.update(set(multiprocessing.active_children()) - before)


def stop_shielded_children(timeout: float = 5.0) -> None:
    """End the shielded children that are still alive.

    They ignore SIGTERM, which is what ``Process.terminate`` (and
    multiprocessing's clean-up at exit) sends, so a worker left running
    would make the program wait forever when it exits. Loaders nobody
    holds any more shut their workers down when collected; the rest
    get SIGKILL.
    """
    gc.collect()  # a dropped DataLoader iterator stops its workers
    for child in list(_SHIELDED):
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join(timeout)


class Shielded:
    """``loader`` whose worker processes are started shielded."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        with shield_children():
            return iter(self.loader)


STOP = StopFlag()  # one per process: signal handlers are process-wide
_depth = 0  # how many stop_on blocks are open (the CLI's, then fit's)


@contextlib.contextmanager
def stop_on(*signums: int) -> Iterator[StopFlag]:
    """While inside, ``signums`` set :data:`STOP` instead of killing.

    Nested use is fine: each level restores the handlers it replaced.
    A second SIGINT while stopping raises KeyboardInterrupt as usual,
    so an impatient Ctrl-C still ends the program at once. Outside the
    main thread (where Python cannot install handlers) it does nothing.
    """
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield STOP
        return
    if _depth == 0:
        STOP.__init__()  # a fresh flag for a fresh run
    _depth += 1

    def handler(signum, frame):
        if signum == signal.SIGINT and STOP.signum is not None:
            raise KeyboardInterrupt
        STOP.set(signum)
        print(f"received {signal.Signals(signum).name}: stopping after "
              f"this update and saving a checkpoint", file=sys.stderr,
              flush=True)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield STOP
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        _depth -= 1


def until_stopped(loader: Iterable, flag: StopFlag,
                  device: torch.device | str = "cpu",
                  due: Callable[[], bool] | None = None) -> Iterable:
    """``loader``'s batches, ending early once ``flag.agreed()``, or
    once ``due()`` says a timed checkpoint is due (its workers are
    started shielded: see :func:`shield_children`).

    The check comes before each batch is fetched, so the update in
    progress when the signal arrives is finished and nothing is lost.
    """

    class _Stoppable:
        def __iter__(self):
            # iter() now, not lazily: train_one_epoch makes the iterator
            # inside fork_rng so a DataLoader's seed draw leaves the
            # dropout RNG alone, and that must stay true through us.
            with shield_children():
                return self._batches(iter(loader))

        @staticmethod
        def _batches(batches):
            # ``due`` is asked after the first update only: a chunk
            # always makes progress, whatever the clock says.
            first = True
            while not flag.agreed(device) and (
                    first or not (due and due())):
                first = False
                try:
                    yield next(batches)
                except StopIteration:
                    return

    return _Stoppable()

"""Stop a training run cleanly on SIGTERM or SIGINT.

A cluster scheduler (or ``torchrun`` when it shuts its workers down)
sends SIGTERM and kills the process some seconds later; Ctrl-C sends
SIGINT. The handler here only sets a flag, so a checkpoint being
written is never cut short. ``fit`` asks :meth:`StopFlag.agreed`
between updates; every process answers the same, so all ranks stop
after the same update and save one consistent checkpoint.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterable, Iterator

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
                  device: torch.device | str = "cpu") -> Iterable:
    """``loader``'s batches, ending early once ``flag.agreed()``.

    The check comes before each batch is fetched, so the update in
    progress when the signal arrives is finished and nothing is lost.
    """

    class _Stoppable:
        def __iter__(self):
            # iter() now, not lazily: train_one_epoch makes the iterator
            # inside fork_rng so a DataLoader's seed draw leaves the
            # dropout RNG alone, and that must stay true through us.
            return self._batches(iter(loader))

        @staticmethod
        def _batches(batches):
            while not flag.agreed(device):
                try:
                    yield next(batches)
                except StopIteration:
                    return

    return _Stoppable()

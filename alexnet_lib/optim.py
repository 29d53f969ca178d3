"""The paper's SGD update (§5) and its learning-rate schedule.

Paper §5, with ε the learning rate and i the iteration::

    v_{i+1} = 0.9 v_i - 0.0005 ε w_i - ε <dL/dw>_{D_i}
    w_{i+1} = w_i + v_{i+1}

The learning rate sits *inside* the velocity v. ``torch.optim.SGD``
(momentum m, weight decay λ, dampening 0) keeps a buffer b without it::

    b_{i+1} = m b_i + g_i + λ w_i
    w_{i+1} = w_i - ε b_{i+1}

While ε is constant, v = -ε b and the two rules give the same weights.
When ε drops to ε' the paper keeps the velocity it already has, while
torch rescales the old buffer by the new rate at once: the first step
after the drop differs by ``paper - torch = m (1 - ε'/ε) v_i``, i.e.
0.81 v_i for the paper's ÷10 (tests/test_optim.py checks both facts).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from alexnet_lib.config import OptimConfig


class PaperSGD(torch.optim.Optimizer):
    """SGD with momentum and weight decay exactly as written in §5.

    ``state[p]["velocity"]`` is the paper's v (in weight units, so it
    already carries the learning rate). Paper: §5.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9,
                 weight_decay: float = 5e-4) -> None:
        if lr <= 0:
            raise ValueError(f"lr must be > 0 (paper: 0.01), got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1) (paper: 0.9), "
                             f"got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (paper: 5e-4), "
                             f"got {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m = group["lr"], group["momentum"]
            wd = group["weight_decay"]
            for w in group["params"]:
                if w.grad is None:
                    continue
                state = self.state[w]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(w)
                v = state["velocity"]
                # v <- m v - wd*lr*w - lr*grad ; w <- w + v
                v.mul_(m).add_(w, alpha=-wd * lr).add_(w.grad, alpha=-lr)
                w.add_(v)
        return loss


def build_optimizer(model: nn.Module, optim_cfg: OptimConfig):
    """PaperSGD (``update_rule="paper"``) or torch.optim.SGD ("torch").

    Every parameter, biases included, gets the same rate and weight decay
    as in the paper (§5).
    """
    o = optim_cfg
    params = [p for p in model.parameters() if p.requires_grad]
    if o.update_rule == "paper":
        return PaperSGD(params, lr=o.lr, momentum=o.momentum,
                        weight_decay=o.weight_decay)
    if o.update_rule == "torch":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                               weight_decay=o.weight_decay, dampening=0)
    raise ValueError(f"update_rule must be 'paper' or 'torch', "
                     f"got {o.update_rule!r}")


class PlateauSchedule:
    """Divide the rate by 10 when validation error stops improving (§5).

    Call ``step(val_error)`` once per epoch. After ``patience`` epochs
    without a new best error the rate is multiplied by ``factor``; at
    most ``max_drops`` times (the paper: three, ending at 1e-5). When the
    error plateaus once more after the last drop, ``finished`` turns True
    and the run may stop.
    """

    # DEVIATION: the paper lowered the rate by hand "when the validation
    # error stopped improving"; here a patience in epochs decides.
    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.1,
                 patience: int = 2, max_drops: int = 3,
                 threshold: float = 0.0) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1) (paper: 0.1), "
                             f"got {factor}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1 epoch, got {patience}")
        self.optimizer = optimizer
        self.factor, self.patience = factor, patience
        self.max_drops, self.threshold = max_drops, threshold
        self.best = float("inf")
        self.bad_epochs = 0  # epochs since the last new best (or drop)
        self.drops = 0
        self.finished = False

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self, val_error: float) -> bool:
        """Record one epoch's validation error; True if the rate dropped."""
        if val_error < self.best - self.threshold:
            self.best, self.bad_epochs = val_error, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return False
        self.bad_epochs = 0
        if self.drops >= self.max_drops:
            self.finished = True
            return False
        for group in self.optimizer.param_groups:
            group["lr"] *= self.factor
        self.drops += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        keys = ("factor", "patience", "max_drops", "threshold", "best",
                "bad_epochs", "drops", "finished")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, value in state.items():
            setattr(self, k, value)

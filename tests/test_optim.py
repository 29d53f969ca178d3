"""The paper's update rule (§5) against torch.optim.SGD, and the schedule."""
import pytest
import torch
from torch import nn

from alexnet_lib.config import OptimConfig
from alexnet_lib.optim import PaperSGD, PlateauSchedule, build_optimizer


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(),
                         nn.Linear(5, 3)).double()


def _step(model, opt, x, y):
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _pair(lr=0.05):
    paper, torch_ = _model(), _model()
    return (paper, PaperSGD(paper.parameters(), lr=lr),
            torch_, torch.optim.SGD(torch_.parameters(), lr=lr,
                                    momentum=0.9, weight_decay=5e-4,
                                    dampening=0))


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(16, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (16,), generator=g))


def test_one_step_by_hand():
    # L = w^2, dL/dw = 2w; v1 = -wd*lr*w0 - lr*2*w0; w1 = w0 + v1 ...
    w = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = PaperSGD([w], lr=0.1, momentum=0.9, weight_decay=5e-4)
    expected = [0.79995, 0.4598750025]
    for value in expected:
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
        assert w.item() == pytest.approx(value, abs=1e-12)
    # v2 = 0.9*(-0.20005) - 5e-4*0.1*0.79995 - 0.1*1.5999
    assert opt.state[w]["velocity"].item() == pytest.approx(-0.3400749975,
                                                            abs=1e-12)


def test_equals_torch_sgd_while_lr_is_constant():
    paper, po, torch_, to = _pair()
    x, y = _data()
    for _ in range(60):
        _step(paper, po, x, y)
        _step(torch_, to, x, y)
    for a, b in zip(paper.parameters(), torch_.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # the paper's velocity is -lr times torch's momentum buffer
    for a, b in zip(paper.parameters(), torch_.parameters()):
        torch.testing.assert_close(po.state[a]["velocity"],
                                   -0.05 * to.state[b]["momentum_buffer"])


def test_differs_from_torch_sgd_after_a_drop_by_m_1_minus_ratio_v():
    paper, po, torch_, to = _pair()
    x, y = _data()
    for _ in range(20):
        _step(paper, po, x, y)
        _step(torch_, to, x, y)
    v_before = [po.state[p]["velocity"].clone() for p in paper.parameters()]
    for opt in (po, to):
        opt.param_groups[0]["lr"] /= 10  # the paper's ÷10 (§5)
    _step(paper, po, x, y)
    _step(torch_, to, x, y)
    for a, b, v in zip(paper.parameters(), torch_.parameters(), v_before):
        # paper - torch = m (1 - lr'/lr) v = 0.9 * 0.9 * v = 0.81 v
        torch.testing.assert_close(a - b, 0.81 * v, rtol=1e-9, atol=1e-12)
        assert (a - b).abs().max() > 1e-4  # a real, visible difference


def test_build_optimizer_picks_the_rule():
    model = _model()
    assert isinstance(build_optimizer(model, OptimConfig()), PaperSGD)
    opt = build_optimizer(model, OptimConfig(update_rule="torch"))
    assert type(opt) is torch.optim.SGD
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"], g["dampening"]) == \
        (0.01, 0.9, 5e-4, 0)
    with pytest.raises(ValueError, match="'paper' or 'torch', got 'adam'"):
        build_optimizer(model, OptimConfig(update_rule="adam"))


def test_paper_sgd_rejects_bad_values():
    w = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match=r"lr must be > 0 \(paper: 0.01\)"):
        PaperSGD(w, lr=0)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        PaperSGD(w, lr=0.01, momentum=1.0)


def test_plateau_schedule_drops_at_most_three_times():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = PlateauSchedule(opt, factor=0.1, patience=2, max_drops=3)
    drops = [sched.step(0.5) for _ in range(20)]  # never improves
    assert sum(drops) == sched.drops == 3
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5)  # §5 final
    assert sched.finished
    # epochs 0: best; 1,2: drop; 3,4: drop; 5,6: drop; 7,8: finished
    assert [i for i, d in enumerate(drops) if d] == [2, 4, 6]


def test_plateau_schedule_waits_while_error_improves():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = PlateauSchedule(opt, patience=2)
    for err in [0.9, 0.8, 0.8, 0.7, 0.6, 0.6]:
        assert not sched.step(err)
    assert sched.drops == 0 and not sched.finished
    assert sched.step(0.6)  # second epoch without a new best
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_plateau_schedule_state_round_trip():
    opt = PaperSGD([nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = PlateauSchedule(opt, patience=3)
    for err in [0.5, 0.6, 0.6, 0.6, 0.7]:
        sched.step(err)
    other = PlateauSchedule(opt, patience=1)
    other.load_state_dict(sched.state_dict())
    assert other.state_dict() == sched.state_dict()
    assert (other.drops, other.bad_epochs, other.patience) == (1, 1, 3)

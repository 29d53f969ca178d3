"""The CIFAR-10 proxy of AlexNet and the seeded ablation runner."""
import math

import pytest
import torch

from alexnet_lib.data.cifar import CifarTensors
from alexnet_lib.experiments import (ProxyPlan, mean_std,
                                     paired_differences, proxy_run)
from alexnet_lib.models import AlexNet, create_model, feature_map_shapes
from alexnet_lib.models.proxy import (PROXY_ONE_TOWER_WIDTHS,
                                      PROXY_WIDTHS)


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_proxy_widths_are_a_quarter_of_the_paper():
    assert PROXY_WIDTHS == tuple(w // 4 for w in (96, 256, 384, 384, 256))
    # footnote 2: the one-GPU net halves conv1..conv4, keeps conv5
    assert PROXY_ONE_TOWER_WIDTHS == (12, 32, 48, 48, 64)


@pytest.mark.parametrize("towers, params", [
    ("two", 545_130), ("one_half", 472_282), ("one_full", 633_450)])
def test_proxy_parameter_counts(towers, params):
    model = create_model("alexnet_cifar", towers=towers)
    assert isinstance(model, AlexNet)
    assert count(model) == params
    assert model.groups == (2 if towers == "two" else 1)


@pytest.mark.parametrize("pooling", ["overlapping", "non_overlapping"])
def test_proxy_pool_sizes_equal_for_both_poolings(pooling):
    shapes = feature_map_shapes(create_model("alexnet_cifar",
                                             pooling=pooling))
    assert shapes["conv1"] == (24, 23, 23)
    assert shapes["pool1"] == (24, 11, 11)
    assert shapes["pool2"] == (64, 5, 5)
    assert shapes["pool5"] == (64, 2, 2)
    assert shapes["fc8"] == (10,)


def test_proxy_rejects_unknown_towers():
    with pytest.raises(ValueError, match="towers='three' is not one of"):
        create_model("alexnet_cifar", towers="three")


def test_mean_std_and_paired_differences():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0
    assert math.isnan(mean_std([5.0])[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])
    a = [{"seed": 0, "test_error": 0.3}, {"seed": 1, "test_error": 0.4}]
    b = [{"seed": 1, "test_error": 0.5}, {"seed": 0, "test_error": 0.2}]
    assert paired_differences(a, b) == pytest.approx([-0.1, 0.1])
    with pytest.raises(ValueError, match="share no seed"):
        paired_differences(a, [{"seed": 7, "test_error": 0.1}])


def test_proxy_plan_checks_its_schedule():
    with pytest.raises(ValueError, match="low_lr_epochs <= epochs"):
        ProxyPlan(epochs=2, low_lr_epochs=3)


def _tiny_split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return CifarTensors(torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                                      dtype=torch.uint8),
                        torch.randint(0, 10, (n,), generator=g),
                        [str(i) for i in range(10)])


def test_proxy_run_is_reproducible_and_reports_its_numbers():
    train, test = _tiny_split(64, 0), _tiny_split(32, 1)
    mean = train.images.float().mean(0)
    plan = ProxyPlan(epochs=2, low_lr_epochs=1, batch_size=32,
                     train_eval_images=48)
    runs = [proxy_run(lambda: create_model("alexnet_cifar"), train, test,
                      plan, seed=3, mean=mean, log=None) for _ in range(2)]
    a, b = runs
    assert [c["lr"] for c in a["curve"]] == pytest.approx([0.01, 0.001])
    assert [c["epoch"] for c in a["curve"]] == [1, 2]
    assert a["test_error"] == b["test_error"]
    assert a["train_error"] == b["train_error"]
    assert [c["running_error"] for c in a["curve"]] == \
        [c["running_error"] for c in b["curve"]]
    assert a["gap"] == pytest.approx(a["test_error"] - a["train_error"],
                                     abs=1e-4)
    assert a["parameters"] == 545_130
    # errors are fractions of 32 test / 48 training images
    assert round(a["test_error"] * 32, 3) % 1 == 0
    assert round(a["train_error"] * 48, 3) % 1 == 0


def test_train_eval_indices_cover_every_class_of_a_sorted_set():
    from alexnet_lib.experiments import train_eval_indices
    labels = torch.arange(10).repeat_interleave(5000)  # sorted, like CIFAR
    idx = train_eval_indices(len(labels), 10_000)
    assert len(idx) == 10_000 and len(set(idx.tolist())) == 10_000
    assert torch.bincount(labels[idx], minlength=10).tolist() == [1000] * 10
    assert train_eval_indices(48, 10_000).tolist() == list(range(48))


# --- the knobs and the cached multi-arm runner ---------------------------

from alexnet_lib.config import OptimConfig  # noqa: E402
from alexnet_lib.data.cifar_loader import CifarLoader  # noqa: E402
from alexnet_lib.data.transforms import compute_rgb_pca  # noqa: E402
from alexnet_lib.evaluate import evaluate  # noqa: E402
from alexnet_lib.experiments import (Arm, run_arms,  # noqa: E402
                                     train_eval_indices)
from alexnet_lib.optim import build_optimizer  # noqa: E402
from alexnet_lib.train import seed_everything, train_one_epoch  # noqa: E402

TINY = ProxyPlan(epochs=2, low_lr_epochs=1, batch_size=32,
                 train_eval_images=48)


def _data():
    train, test = _tiny_split(64, 0), _tiny_split(32, 1)
    return train, test, train.images.float().mean(0)


def _proxy():
    return create_model("alexnet_cifar")


def _written_out_loop(make_model, train, test, plan, seed, mean, *,
                      random_crop, pca_std, pca, weight_decay, on_epoch):
    """The per-chapter loop the runner replaced, written out once more:
    the runner must give exactly its numbers."""
    seed_everything(seed)
    model = make_model()
    opt = build_optimizer(model, OptimConfig(lr=plan.lr,
                                             weight_decay=weight_decay))
    loader = CifarLoader(train.images, train.labels, plan.batch_size,
                         seed=seed, crop=plan.crop, flip=plan.flip,
                         random_crop=random_crop, pca_std=pca_std, pca=pca,
                         mean=mean)
    scored = train_eval_indices(len(train), plan.train_eval_images)
    train_eval = CifarLoader(train.images[scored], train.labels[scored],
                             500, shuffle=False, crop=plan.crop, mean=mean,
                             train=False)
    test_eval = CifarLoader(test.images, test.labels, 500, shuffle=False,
                            crop=plan.crop, mean=mean, train=False)
    curve = []
    for epoch in range(plan.epochs):
        lr = plan.lr * (0.1 if epoch >= plan.epochs - plan.low_lr_epochs
                        else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr
        loader.set_epoch(epoch)
        fit = train_one_epoch(model, loader, opt, "cpu")
        val = evaluate(model, test_eval, "cpu")
        curve.append(dict(epoch=epoch + 1, lr=lr,
                          running_error=round(fit["error"], 4),
                          loss=round(fit["loss"], 4),
                          test_error=round(val["top1_error"], 4),
                          **on_epoch(model)))
    train_error = round(evaluate(model, train_eval, "cpu")["top1_error"], 4)
    return curve, train_error


def _no_speed(curve):
    return [{k: v for k, v in row.items() if k != "images_per_s"}
            for row in curve]


def _norm(model):
    return {"weight_norm": round(torch.cat(
        [p.detach().flatten() for p in model.parameters()]).norm().item(), 3)}


@pytest.mark.parametrize("random_crop, flip, pca_std, weight_decay", [
    (True, True, 0.1, 5e-4), (False, False, 0.0, 0.0)])
def test_proxy_run_knobs_equal_the_written_out_loop(random_crop, flip,
                                                    pca_std, weight_decay):
    train, test, mean = _data()
    pca = compute_rgb_pca(train.images)
    plan = ProxyPlan(epochs=2, low_lr_epochs=1, batch_size=32,
                     train_eval_images=48, random_crop=random_crop,
                     flip=flip, pca_std=pca_std, weight_decay=weight_decay)
    result, model = proxy_run(_proxy, train, test, plan, 5, mean, log=None,
                              pca=pca, on_epoch=_norm, return_model=True)
    curve, train_error = _written_out_loop(
        _proxy, train, test, plan, 5, mean, random_crop=random_crop,
        pca_std=pca_std, pca=pca, weight_decay=weight_decay, on_epoch=_norm)
    assert _no_speed(result["curve"]) == curve
    assert result["train_error"] == train_error
    assert "weight_norm" in result["curve"][0]
    assert isinstance(model, AlexNet)


def test_proxy_run_weight_decay_and_optimizer_knobs_change_what_they_should(
        monkeypatch):
    import alexnet_lib.experiments as experiments
    train, test, mean = _data()
    built = []

    def spy(model, cfg):
        built.append(cfg)
        return build_optimizer(model, cfg)

    monkeypatch.setattr(experiments, "build_optimizer", spy)
    proxy_run(_proxy, train, test,
              ProxyPlan(**{**TINY.__dict__, "weight_decay": 0.0,
                           "momentum": 0.5}), 0, mean, log=None)
    assert (built[0].weight_decay, built[0].momentum, built[0].lr) == \
        (0.0, 0.5, 0.01)
    assert built[0].update_rule == "paper"
    # make_optimizer: per-group rates keep their ratio under the schedule
    seen = []

    def halves(model):
        params = list(model.parameters())
        return torch.optim.SGD([dict(params=params[:2], lr=0.02),
                                dict(params=params[2:], lr=0.01)], lr=0.01)

    def record(model):
        return {}

    proxy_run(_proxy, train, test, TINY, 0, mean, log=None,
              make_optimizer=lambda m: seen.append(halves(m)) or seen[-1],
              on_epoch=record)
    assert [g["lr"] for g in seen[0].param_groups] == \
        pytest.approx([0.002, 0.001])


def test_proxy_plan_rejects_negative_decay_and_unknown_changes():
    with pytest.raises(ValueError, match="weight_decay and pca_std"):
        ProxyPlan(weight_decay=-1.0)
    train, test, mean = _data()
    with pytest.raises(ValueError, match=r"no field\(s\) \['decay'\]"):
        run_arms({"a": Arm("a", _proxy, changes=dict(decay=0.0))},
                 train, test, TINY, [0], mean, log=None)


class _Stop(Exception):
    pass


def test_run_arms_caches_each_arm_and_seed_and_continues(tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    train, test, mean = _data()
    arms = {"decay": Arm("with decay", _proxy),
            "none": Arm("no decay", _proxy, dict(weight_decay=0.0),
                        seeds=(1,))}
    straight = run_arms(arms, train, test, TINY, [0, 1], mean, log=None)
    assert straight["trained"] == 3 and straight["loaded"] == 0
    assert [r["seed"] for r in straight["runs"]["decay"]] == [0, 1]
    assert [r["seed"] for r in straight["runs"]["none"]] == [1]

    # Cut off in the third run (seed 1, arm "none"): two are kept.
    calls = []

    def stop_third(model):
        calls.append(1)
        if len(calls) > 2 * TINY.epochs:
            raise _Stop
        return {}

    with pytest.raises(_Stop):
        run_arms(arms, train, test, TINY, [0, 1], mean, log=None,
                 experiment="demo", on_epoch=stop_third)
    kept = sorted(p.name.split("-")[0] + p.name.split("-")[1]
                  for p in (tmp_path / "ablations" / "demo").glob("*.json"))
    assert kept == ["decayseed0", "decayseed1"]

    def quiet(model):
        return {}
    quiet.__qualname__ = stop_third.__qualname__  # the same hook, renamed
    again = run_arms(arms, train, test, TINY, [0, 1], mean, log=None,
                     experiment="demo", on_epoch=quiet, keep_models=False)
    assert again["loaded"] == 2 and again["trained"] == 1
    for arm in arms:
        for a, b in zip(straight["runs"][arm], again["runs"][arm]):
            assert _no_speed(a["curve"]) == _no_speed(b["curve"])
            assert a["test_error"] == b["test_error"]
            assert a["train_error"] == b["train_error"]
    assert again["runs"]["decay"][0]["cached"] is True

    # A change of plan is a new run, not a cached one.
    longer = run_arms(arms, train, test, ProxyPlan(**{**TINY.__dict__,
                                                      "epochs": 3}),
                      [0], mean, log=None, experiment="demo",
                      on_epoch=quiet)
    assert longer["trained"] == 1 and longer["loaded"] == 0


def test_run_arms_keeps_models_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    train, test, mean = _data()
    arms = {"paper": Arm("paper", _proxy)}
    first = run_arms(arms, train, test, TINY, [2], mean, log=None,
                     experiment="models", keep_models=True)
    second = run_arms(arms, train, test, TINY, [2], mean, log=None,
                      experiment="models", keep_models=True)
    assert (first["trained"], second["loaded"]) == (1, 1)
    a, b = first["models"]["paper", 2], second["models"]["paper", 2]
    for (name, x), (_, y) in zip(a.state_dict().items(),
                                 b.state_dict().items()):
        assert torch.equal(x, y), name
    loader = CifarLoader(test.images, test.labels, 500, shuffle=False,
                         crop=27, mean=mean, train=False)
    assert evaluate(b, loader, "cpu")["top1_error"] == pytest.approx(
        second["runs"]["paper"][0]["test_error"], abs=1e-4)
    with pytest.raises(ValueError, match="plain folder name"):
        run_arms(arms, train, test, TINY, [2], mean, experiment="../x")


def test_an_arm_can_bring_its_own_optimizer():
    train, test, mean = _data()
    built = []

    def plain_sgd(model):
        built.append(torch.optim.SGD(model.parameters(), lr=0.05))
        return built[-1]

    out = run_arms({"own": Arm("own optimizer", _proxy,
                               make_optimizer=plain_sgd),
                    "paper": Arm("paper", _proxy)},
                   train, test, TINY, [0], mean, log=None)
    assert len(built) == 1 and isinstance(built[0], torch.optim.SGD)
    assert built[0].param_groups[0]["lr"] == pytest.approx(0.005)  # x 0.1
    own, paper = out["runs"]["own"][0], out["runs"]["paper"][0]
    assert _no_speed(own["curve"]) != _no_speed(paper["curve"])

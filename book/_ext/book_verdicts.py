"""Verdicts for the scorecard: one per claim, by one stated rule.

Each record of ``results/`` is reduced to the numbers its claim is
about (``EVIDENCE``: one function per experiment, reading the record's
own fields), and ``judge`` applies ``RULE`` to them. Nothing here is a
hand-typed verdict: change a record and its verdict follows. Claims the
book does not measure are listed in ``UNTESTED`` with the reason.

Plain Python on purpose (no docutils, no torch), so the tests can call
it directly.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

REPRODUCED = "reproduced"
SMALLER = "same direction, smaller"
NOT_REPRODUCED = "not reproduced"
OPPOSITE = "opposite"
NOT_TESTED = "not tested here"
VERDICTS = (REPRODUCED, SMALLER, NOT_REPRODUCED, OPPOSITE, NOT_TESTED)

RULE = (
    "Each claim is reduced to our measurement of the quantity it is "
    "about, one number per seed, in the paper's terms: a difference in "
    "points of error (negative: lower error), an improvement factor as "
    "×, or a count. With two or more seeds an effect is clear when its "
    "mean is more than twice its standard error (sample standard "
    "deviation / √n) away from zero; a single run is judged by its sign "
    "and size alone, and the verdict says \"one run\". Reproduced: "
    "clear, with the paper's sign, and at least half the paper's size "
    "(larger counts too); a count equal to the paper's, or within the "
    "rounding the paper uses (2%). Same direction, smaller: clear, "
    "the paper's sign, less than half its size. Not reproduced: not "
    "clear, or a count that differs from the paper's. Opposite: "
    "clear, with the other sign. Not tested here: the book has no "
    "measurement comparable with the claim (the reason is given). A "
    "claim without a number in the paper (\"lower training error\") is "
    "judged on its sign and clarity. Where a record holds several "
    "measurements of one claim, each is judged and shown; the first, the "
    "claim's main one, decides, unless it is not clear and another is.")


@dataclass
class Evidence:
    """Our numbers for one claim. ``values``: one per seed (or per run,
    image: ``of``). ``paper``: the paper's number in the same terms, or
    None with ``sign`` (+1 or -1) the direction the paper claims.
    ``kind``: "effect" (a signed difference, in ``unit``), "factor" (an
    improvement factor, judged as factor - 1, shown as ×), "count" (must
    equal ``paper`` within ``tolerance``, relative), "bound" (must be at
    most ``paper``) or "check" (1 where a stated test passed, 0 where it
    failed; reproduced when it passed in every run)."""
    label: str
    values: list[float]
    paper: float | None = None
    sign: int = 0
    kind: str = "effect"
    tolerance: float = 0.0
    unit: str = "points"
    of: str = "seeds"


def judge(ev: Evidence) -> tuple[str, str]:
    """(verdict, a short reason) for one piece of evidence."""
    n = len(ev.values)
    mean = sum(ev.values) / n
    if ev.kind == "check":
        passed = sum(1 for v in ev.values if v)
        return (REPRODUCED if passed == n else NOT_REPRODUCED,
                f"yes in {passed} of {n} {ev.of}" if n > 1 else
                ("yes" if passed else "no"))
    if ev.kind in ("count", "bound"):
        ok = (mean <= ev.paper if ev.kind == "bound" else
              abs(mean - ev.paper) <= ev.tolerance * abs(ev.paper))
        return (REPRODUCED if ok else NOT_REPRODUCED,
                f"{_num(mean)} against {_num(ev.paper)}")
    if ev.kind == "factor":
        shown = f"{mean:.2f}×" + ("" if ev.paper is None else
                                   f" against {ev.paper:g}×")
        ev = Evidence(ev.label, [v - 1 for v in ev.values],
                      None if ev.paper is None else ev.paper - 1,
                      ev.sign, of=ev.of)
        verdict, _ = judge(ev)
        return verdict, shown + (", one run" if n == 1 else "")
    want = ev.sign or (1 if ev.paper > 0 else -1)
    std = (math.sqrt(sum((v - mean) ** 2 for v in ev.values) / (n - 1))
           if n > 1 else float("nan"))
    clear = mean != 0 and (n == 1 or abs(mean) > 2 * std / math.sqrt(n))
    spread = "" if n == 1 else f" ± {std:.2f}"
    text = (f"{mean:+.2f}{spread}" + (f" {ev.unit}" if ev.unit else "")
            + ("" if n == 1 else f" ({n} {ev.of})")
            + ("" if ev.paper is None else f" against {ev.paper:+.2f}")
            + (", one run" if n == 1 else ""))
    if not clear:
        return NOT_REPRODUCED, text + (": no change" if mean == 0 else
                                       ": within twice its standard error")
    if (mean > 0) != (want > 0):
        return OPPOSITE, text
    if ev.paper is not None and abs(mean) < abs(ev.paper) / 2:
        return SMALLER, text
    return REPRODUCED, text


def verdict_of(record: dict) -> tuple[str, str]:
    """(verdict, reason) of one record, by ``EVIDENCE`` and ``judge``."""
    name = record["experiment"]
    if name not in EVIDENCE:
        return NOT_TESTED, "no rule for this record yet"
    found = EVIDENCE[name](record)
    if isinstance(found, str):
        return NOT_TESTED, found
    judged = [(judge(ev), ev) for ev in found]
    # the first measurement (the claim's main one) decides, unless it is
    # not clear and a later one is
    verdict = next((v for (v, _), _ in judged if v != NOT_REPRODUCED),
                   NOT_REPRODUCED)
    reason = "; ".join(f"{ev.label}: {why}" if ev.label else why
                       for (_, why), ev in judged)
    return verdict, reason


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.3g}"


def _points(values) -> list[float]:
    """Fractions of error as points."""
    return [100 * v for v in values]


def _runs_diff(runs: dict, a: str, b: str, key: str = "test_error"):
    """Per-seed ``b - a`` in points from a record's ``runs``."""
    return [100 * (y[key] - x[key]) for x, y in zip(runs[a], runs[b])]


def _ten_crop(r: dict) -> list[Evidence]:
    rows = r["details"]["ten_crop"]["paper" if "paper" in
                                    r["details"]["ten_crop"] else "no_pca"]
    return [Evidence("", [100 * (x["ten_top1"] - x["centre_top1"])
                          for x in rows], paper=37.5 - 39.0)]


def _depth(r: dict) -> list[Evidence]:
    d = r["details"]["paired_differences_points"]
    return [Evidence(arm, d[arm]["test_error"], paper=2.0) for arm in d]


def _dropout(r: dict) -> list[Evidence]:
    s = r["details"]["summaries"]
    return [Evidence("gap", s["diff_points_by_seed"]["gap"], sign=-1),
            Evidence("epochs to a common training error",
                     [s["epoch_ratio_dropout_over_none"]["running_error"]],
                     paper=2, kind="factor")]


def _relu(r: dict) -> list[Evidence]:
    ratio = r["details"]["summary"]["faithful"]["ratio_iterations"]
    value = float(str(ratio).lstrip(">= "))  # ">= 6.6": at least
    label = "iterations to 25%, tanh / ReLU" + (
        " (at least: tanh never got there)" if str(ratio).startswith(">")
        else "")
    return [Evidence(label, [value], paper=6, kind="factor")]


def _lrn_author_nets(r: dict) -> list[Evidence]:
    runs = r["details"]["runs"]
    return [Evidence("", _runs_diff(runs, "cifar_13pct", "cifar_11pct"),
                     paper=11 - 13)]


def _zf_first_layer(r: dict) -> list[Evidence]:
    runs = r["details"]["runs"]
    seeds = sorted(k.split("-", 1)[1] for k in runs if k.startswith("alex"))
    return [Evidence("", [100 * (runs[f"zfnet-{s}"]["top1"]
                                 - runs[f"alexnet-{s}"]["top1"])
                          for s in seeds], paper=38.4 - 40.5)]


def _zf_transfer(r: dict) -> list[Evidence]:
    acc = r["details"]["accuracy"]
    out = []
    for per_class, paper in (("30", 86.5 - 46.5), ("15", 83.8 - 22.8)):
        frozen, scratch = acc["frozen"][per_class], acc["scratch"][per_class]
        mean_scratch = sum(scratch) / len(scratch)
        out.append(Evidence(f"{per_class} images per class",
                            [100 * (f - mean_scratch) for f in frozen],
                            paper=paper, unit="points of accuracy",
                            of="runs"))
    return out


def _occlusion(r: dict) -> list[Evidence]:
    pairs = re.findall(r"p ([\d.]+) -> lowest ([\d.]+)", r["ours"])
    return [Evidence("probability of the correct class, occluded − not",
                     [float(low) - float(p) for p, low in pairs], sign=-1,
                     unit="", of="images")]


def _colour_towers(r: dict) -> list[Evidence]:
    last = {}  # seed -> (epoch, row) of its last snapshot
    for key, row in r["details"]["colour"].items():
        found = re.match(r"grouped, seed (\d+), epoch (\d+)", key)
        if found:
            seed, epoch = found.group(1), int(found.group(2))
            if seed not in last or epoch > last[seed][0]:
                last[seed] = (epoch, row)
    return [Evidence("the towers' colour shares differ, p < 0.05",
                     [1.0 if row["p"] < 0.05 else 0.0
                      for _, row in last.values()], kind="check",
                     of="runs")]


def _evolution(r: dict) -> list[Evidence]:
    first = {}
    for layer, overlap in r["details"]["overlap"].items():
        first[layer] = min((int(e) for e, v in overlap.items() if v >= 0.5),
                           default=math.inf)
    return [Evidence("conv1 settles before conv5",
                     [1.0 if first["conv1"] < first["conv5"] else 0.0],
                     kind="check")]


def _retrieval(r: dict) -> list[Evidence]:
    a = r["details"]["agreement"]
    return [Evidence("fc7 minus pixel neighbours in the query's class",
                     [100 * (a["fc7 space"] - a["pixel space"])], sign=1,
                     unit="points of share")]


def _init(r: dict) -> list[Evidence]:
    d = r["details"]
    paper = d["conditions"]["paper"]["val_top1_error"][-1]
    return [Evidence("paper init: validation error below chance",
                     [100 * (paper - d["chance_top1_error"])], sign=-1)]


def _vgg(*pairs: tuple[str, float]):
    """Paired differences of the VGG record, each against the paper's
    Table 3 difference in top-1 points."""
    return lambda r: [Evidence(key, r["details"]
                               ["paired_differences_points"][key],
                               paper=paper) for key, paper in pairs]


def _no_gain(r: dict) -> list[Evidence]:
    """VGG's A-LRN claim is that LRN does *not* help: passed when A-LRN
    is not clearly better than A (``judge``'s clarity rule applied to
    "A-LRN lowers the error")."""
    d = r["details"]["paired_differences_points"]["A-LRN − A"]
    clearly_better = judge(Evidence("", d, sign=-1))[0] == REPRODUCED
    return [Evidence("A-LRN not clearly better than A",
                     [0.0 if clearly_better else 1.0], kind="check",
                     of="comparisons")]


def _lineage(r: dict) -> list[Evidence]:
    d = r["details"]["differences_from_alexnet_points"]
    return [Evidence(f"{net} − AlexNet", d[net], sign=-1)
            for net in ("VGG", "GoogLeNet", "NiN") if net in d]


def _inception(r: dict) -> list[Evidence]:
    return [Evidence("module 3a multiply-adds", [float(r["ours"])],
                     paper=128e6, kind="count", tolerance=0.02),
            Evidence("measured speed-up of the reductions",
                     [r["details"]["measured_speedup"]], sign=1,
                     kind="factor")]


def _count(paper: float, tolerance: float = 0.0, field: str = "ours"):
    return lambda r: [Evidence("", [float(r[field])], paper=paper,
                               kind="count", tolerance=tolerance)]


IMAGENETTE = ("ten classes of Imagenette are not ILSVRC's 1000: error "
              "rates are not comparable (§6 says what they show)")
EVIDENCE: dict[str, Callable[[dict], list[Evidence] | str]] = {
    "alexnet_parameters": _count(60e6, 0.02),
    "alexnet_neurons": _count(650_000, 0.02),
    "conv_parameter_share": lambda r: [Evidence(
        "", [float(r["ours"])], paper=1.0, kind="bound")],
    "crop_count": _count(2048),
    "imagenet_class_count": _count(1000),
    "imagenette_counts": lambda r: "Imagenette is not ILSVRC: its image "
                                   "count says nothing of the paper's",
    "training_set_mean": lambda r: "the paper gives no number to compare",
    "relu_vs_tanh_fig1": _relu,
    "two_gpu_cifar_proxy": lambda r: [Evidence(
        "", r["details"]["paired_differences_points"]["test_error"],
        paper=-1.7)],
    "lrn_cifar10_11pct_vs_13pct": _lrn_author_nets,
    "lrn_alexnet_cifar_proxy": lambda r: [Evidence(
        "", r["details"]["test_error_diff_points"], paper=1.4)],
    "overlapping_pooling_cifar_proxy": lambda r: [Evidence(
        "", _points(r["details"]["test_error_diff_by_seed"]), paper=-0.4)],
    "pca_colour_cifar_proxy": lambda r: [Evidence(
        "", r["details"]["test_error_diff_points"], paper=-1.0)],
    "crops_flips_cifar_proxy": lambda r: [Evidence(
        "gap", r["details"]["gap_diff_points"], sign=-1)],
    "ten_crop_cifar_proxy": _ten_crop,
    "dropout_cifar_proxy": _dropout,
    "weight_decay_cifar_proxy": lambda r: [Evidence(
        "training error", _points(r["details"]["diff_by_seed"]
                                  ["train_error"]), sign=-1)],
    "init_comparison_224": _init,
    "full_size_imagenette_seed0": lambda r: IMAGENETTE,
    "full_size_imagenette_seed1": lambda r: IMAGENETTE,
    "imagenette_alexnet": lambda r: IMAGENETTE,
    "colour_towers_imagenette": _colour_towers,
    "retrieval_imagenette": _retrieval,
    "depth_cifar_proxy": _depth,
    "zfnet_feature_evolution": _evolution,
    "zfnet_occlusion": _occlusion,
    "zfnet_first_layer": _zf_first_layer,
    "zfnet_transfer": _zf_transfer,
    "lenet5_mnist": lambda r: [Evidence(
        "", r["details"]["test_error_per_seed"], paper=0.95, kind="bound")],
    "lenet5_cifar_grey": lambda r: "the papers give no number: the "
                                   "chapter's own question",
    "vgg_depth_cifar_proxy": _vgg(("D − A", -2.6), ("B − A", -0.9)),
    "vgg_lrn_cifar_proxy": _no_gain,
    "vgg_1x1_cifar_proxy": _vgg(("C − D", 1.1)),
    "nin_gap_cifar_proxy": lambda r: [Evidence(
        "", r["details"]["paired_differences_points"], paper=-1.18)],
    "googlenet_vs_plain_cifar_proxy": lambda r: [Evidence(
        "", r["details"]["paired_differences_points"], sign=-1)],
    "inception_reductions": _inception,
    "lineage_cifar_proxy": _lineage,
}

# Claims of the papers that no record measures, with the reason.
UNTESTED: list[tuple[str, str, str]] = [
    ("AlexNet §1, §5", "training takes five to six days on two GTX 580 "
     "GPUs", "no such GPUs here; the book's own times are on every page"),
    ("AlexNet §3.2", "the two-GPU net takes slightly less time to train "
     "than the one-GPU net", "the towers are timed on one device here "
     "(§3.2 counts what they exchange instead)"),
    ("AlexNet §3.3, §3.4", "the top-5 part of the LRN (1.2) and pooling "
     "(0.3) gains", "top-5 error is close to zero on ten classes"),
    ("AlexNet §6, Table 1", "37.5% top-1 and 17.0% top-5 on the "
     "ILSVRC-2010 test set", "ILSVRC is not available here; §6 trains on "
     "Imagenette"),
    ("AlexNet §6, Table 2", "five CNNs averaged: 16.4% top-5; seven with "
     "two pretrained on ImageNet Fall 2011: 15.3%", "needs ILSVRC and "
     "the 22,000-class release; §6 averages two Imagenette networks"),
    ("AlexNet §6", "ImageNet Fall 2009 (10,184 classes): 67.4% top-1",
     "that release is not available here"),
]


def verdict_counts(records: list[dict]) -> dict[str, int]:
    """How many claims got each verdict (records and UNTESTED)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for record in records:
        counts[verdict_of(record)[0]] += 1
    counts[NOT_TESTED] += len(UNTESTED)
    return counts

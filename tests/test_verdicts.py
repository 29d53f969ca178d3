"""The scorecard's verdicts (book/_ext/book_verdicts.py): the rule on
made-up numbers, and a rule for every stored record."""
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))
import book_verdicts as V  # noqa: E402


@pytest.mark.parametrize("values, paper, sign, verdict", [
    ([-1.9, -2.1, -2.0], -2.0, 0, V.REPRODUCED),
    ([-4.0, -3.5, -4.5], -2.0, 0, V.REPRODUCED),    # larger counts too
    ([-0.5, -0.6, -0.4], -2.0, 0, V.SMALLER),
    ([-0.5, 0.6, -0.4], -2.0, 0, V.NOT_REPRODUCED),  # within 2 s.e.
    ([1.5, 1.7, 1.6], -2.0, 0, V.OPPOSITE),
    ([-0.84, -1.26, -0.70], None, -1, V.REPRODUCED),  # sign only
    ([-2.1], -2.0, 0, V.REPRODUCED),                 # one run
    ([0.0], None, -1, V.NOT_REPRODUCED),
])
def test_effects_follow_the_stated_rule(values, paper, sign, verdict):
    assert V.judge(V.Evidence("", values, paper=paper, sign=sign))[0] \
        == verdict


def test_counts_bounds_checks_and_factors():
    count = V.Evidence("", [60_965_224], paper=60e6, kind="count",
                       tolerance=0.02)
    assert V.judge(count) == (V.REPRODUCED, "60,965,224 against 60,000,000")
    assert V.judge(V.Evidence("", [2178], paper=2048, kind="count"))[0] \
        == V.NOT_REPRODUCED
    assert V.judge(V.Evidence("", [1.45], paper=1.0, kind="bound"))[0] \
        == V.NOT_REPRODUCED
    check = V.Evidence("", [1, 0], kind="check", of="runs")
    assert V.judge(check) == (V.NOT_REPRODUCED, "yes in 1 of 2 runs")
    factor = V.Evidence("", [1.09], paper=2, kind="factor")
    assert V.judge(factor) == (V.SMALLER, "1.09× against 2×, one run")


def test_every_stored_record_has_a_rule_and_a_verdict():
    records = [json.loads(p.read_text())
               for p in sorted((REPO / "results").glob("*.json"))]
    assert records
    for record in records:
        verdict, why = V.verdict_of(record)
        assert verdict in V.VERDICTS and why, record["experiment"]
        assert why != "no rule for this record yet", record["experiment"]
    counts = V.verdict_counts(records)
    assert sum(counts.values()) == len(records) + len(V.UNTESTED)


def test_first_measurement_decides_unless_it_is_not_clear():
    record = {"experiment": "depth_cifar_proxy", "details": {
        "paired_differences_points": {
            "without conv3": {"test_error": [-0.64, -1.22, 0.0]},
            "without conv4": {"test_error": [-0.94, -2.13, -1.80]}}}}
    verdict, why = V.verdict_of(record)
    assert verdict == V.OPPOSITE
    assert why.startswith("without conv3: -0.62 ± 0.61 points (3 seeds) "
                          "against +2.00: within twice")

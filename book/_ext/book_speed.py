"""The ``{cpu-speed}`` directive: what two CPU cores can do, from the record.

Renders ``results/benchmarks/roofline_cpu.json`` (written by
``benchmarks/bench_roofline.py``): the measured peak FLOP/s per dtype,
then each model's training rate as images/s and as a share of that
peak, and LRN's share of a paper-AlexNet step. Reads JSON only, so the
table cannot drift from the stored measurement.
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from book_deviations import mark_generated, table

RECORD = "results/benchmarks/roofline_cpu.json"
# the same model rows with LRN apart and on threads of its own
UNFUSED = "results/benchmarks/roofline_cpu_unfused.json"
DTYPES = {"torch.float32": "float32", "torch.bfloat16": "bf16"}
# where a CIFAR proxy's training step spends its time
PROFILE = "results/benchmarks/proxy_profile_alexnet_cifar.json"


def speed_rows(record: dict) -> list[list[str]]:
    """Model, dtype, batch, images/s, GFLOP/s, share of peak."""
    rows = []
    for m in record["models"]:
        rows.append([m["group"], m["model"], DTYPES.get(m["dtype"],
                                                        m["dtype"]),
                     f"{m['images_per_s']:,.0f}" if m["images_per_s"] >= 100
                     else f"{m['images_per_s']:,.1f}",
                     f"{m['flop_per_s'] / 1e9:,.0f}",
                     f"{100 * m['share_of_peak']:.0f}%"])
    return rows


def summary(record: dict, unfused: dict | None = None) -> str:
    env = record["environment"]
    peaks = ", ".join(f"{v / 1e9:,.0f} GFLOP/s in {DTYPES.get(k, k)}"
                      for k, v in record["peak_flop_per_s"].items())
    text = (f"Measured on {env['hardware']} with torch {env['torch']}, "
            f"{record['date'][:10]}: the best convolution or matrix "
            f"product reached {peaks}.")
    inside = record.get("lrn_time_in_step") or []

    def shares(how: str) -> str:
        return " and ".join(f"{100 * r['lrn_share_of_step']:.0f}% in "
                            f"{DTYPES.get(r['dtype'], r['dtype'])}"
                            for r in inside if r.get("lrn", "apart") == how)
    if any(r.get("lrn") == "fused" for r in inside):
        text += (f" LRN, timed inside a paper-AlexNet training step, "
                 f"takes {shares('fused')} as the library runs it (fused "
                 f"with the max-pooling after it, the pooling's own time "
                 f"taken off); {shares('apart')} as a layer of its own.")
    elif inside:
        text += (f" LRN, timed inside a paper-AlexNet training step, "
                 f"takes {shares('apart')}.")
    own = [r for r in (unfused or {}).get("lrn_time_in_step", [])
           if r.get("lrn", "apart") == "apart"]
    if own:
        text += (" With LRN apart and its kernel on threads of its own "
                 "instead of PyTorch's (" + UNFUSED.split("/")[-1] + "), "
                 "the layer took " + " and ".join(
                     f"{100 * r['lrn_share_of_step']:.0f}% in "
                     f"{DTYPES.get(r['dtype'], r['dtype'])}" for r in own)
                 + ".")
    return text


class CpuSpeedDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / RECORD
        mark_generated(self.env)
        if not path.is_file():
            return [nodes.paragraph(text="No CPU speed record yet: run "
                                         "benchmarks/run_quiet.sh.")]
        record = json.loads(path.read_text())
        other = Path(self.env.srcdir) / UNFUSED
        unfused = json.loads(other.read_text()) if other.is_file() else None
        rows = [[[nodes.Text(c)] for c in r] for r in speed_rows(record)]
        return [nodes.paragraph(text=summary(record, unfused)),
                table(["Network", "Model", "dtype", "Images/s", "GFLOP/s",
                       "Share of peak"], rows, [22, 28, 10, 12, 12, 16])]


def profile_rows(record: dict) -> list[list[str]]:
    """Row, then ms per step and share of the step for each dtype."""
    runs = list(record["runs"].values())
    rows = []
    for name in runs[0]["ms_per_step"]:
        row = [name]
        for r in runs:
            ms = r["ms_per_step"].get(name, 0.0)
            row += [f"{ms:.2f}", f"{100 * ms / r['step_ms_profiled']:.1f}%"]
        rows.append(row)
    rows.append(["whole step"] + [c for r in runs for c in
                                  (f"{r['step_ms_profiled']:.2f}", "100%")])
    return rows


def profile_summary(record: dict) -> str:
    env, runs = record["environment"], record["runs"]
    first = next(iter(runs.values()))

    def conv(r):
        ms = r["ms_per_step"]
        return 100 * ((ms["forward: convolution"]
                       + ms["backward: convolution"]) / r["step_ms_profiled"])
    return (f"One training step of {record['model']} (batch "
            f"{first['batch']}, the chapters' data path and update), "
            f"profiled with torch.profiler on {env['hardware']}, torch "
            f"{env['torch']}, {record['date'][:10]}: the median of "
            f"{first['repeats']} runs of {first['steps']} steps. "
            "Convolution takes " + " and ".join(
                f"{conv(r):.0f}% of the step in {d}"
                for d, r in runs.items()) + "; without the profiler the "
            "steps ran at " + " and ".join(
                f"{r['images_per_s']:,.0f} images/s in {d}"
                for d, r in runs.items()) + ".")


class ProxyProfileDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        path = Path(self.env.srcdir) / PROFILE
        mark_generated(self.env)
        if not path.is_file():
            return [nodes.paragraph(text="No proxy profile yet: run "
                                         "benchmarks/run_quiet.sh.")]
        record = json.loads(path.read_text())
        head = ["Where the time goes"]
        for d in record["runs"]:
            head += [f"{d}, ms", "share"]
        rows = [[[nodes.Text(c)] for c in r] for r in profile_rows(record)]
        widths = [40] + [15, 15] * len(record["runs"])
        return [nodes.paragraph(text=profile_summary(record)),
                table(head, rows, widths[:len(head)])]


def setup(app: Sphinx) -> dict:
    app.setup_extension("book_deviations")  # shared re-read bookkeeping
    app.add_directive("cpu-speed", CpuSpeedDirective)
    app.add_directive("proxy-profile", ProxyProfileDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

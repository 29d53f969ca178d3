"""benchmarks/gpu_check.sh: its dry run walks every step on a CPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _run(args, out: Path, timeout: int):
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_dry_run_walks_every_step(tmp_path):
    out = tmp_path / "check"
    proc = _run(["--dry-run"], out, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [line.split("\t") for line in
             (out / "steps.tsv").read_text().splitlines()]
    assert [s[0] for s in steps] == ["tests", "bench", "train"]
    assert all(s[1] in ("0", "skipped") for s in steps), steps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert summary["environment"]["dry_run"] is True
    bench = json.loads((out / "imagenet_scale.json").read_text())
    names = {r["name"] for r in bench["training_step"]}
    assert names == {"torchvision alexnet fp32 eager",
                     "paper AlexNet fp32 eager",
                     "paper AlexNet bf16 + channels_last",
                     "paper AlexNet bf16 + channels_last + compile"}
    assert bench["targets"]["ratio"] > 0
    assert bench["projection"]["hours"] > 0
    assert any("images_per_s" in r for r in bench["input_pipeline"])
    run = out / "imagenette_run"
    assert (run / "checkpoint.pt").exists()
    assert (run / "metrics.jsonl").read_text().strip()
    text = (out / "summary.md").read_text()
    assert text.startswith("# GPU check (dry run on a CPU)")
    assert "| train | 0 |" in text


def test_bad_argument_says_what_to_use(tmp_path):
    proc = _run(["--fast"], tmp_path / "x", timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "gpu_check.sh: unknown argument '--fast': use --dry-run or no "
        "argument (--help says more)")


def test_without_cuda_it_points_to_the_dry_run(tmp_path):
    import torch
    if torch.cuda.is_available():
        return  # the message is for CPU-only machines
    proc = _run([], tmp_path / "x", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "gpu_check.sh: no CUDA device is visible; on a CPU run "
        "benchmarks/gpu_check.sh --dry-run")

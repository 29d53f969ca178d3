"""§5's initialisation at full size: the README's training command with
four initialisations, and the record that §5 shows.

    python tools/init_comparison.py --data PATH/imagenette2-224 [--seed 0]

Each condition is ``python -m alexnet_lib train --model alexnet --profile
cpu`` (the paper's network at 224x224, 3 epochs of 5,000 Imagenette
images, 1,000 validation images) with one ``--model-option``:

  paper      §5: weights N(0, 0.01), biases 1 in conv2/4/5, fc6, fc7
  bias 0.1   the same weights, those biases 0.1 (one number changed)
  caffe      bvlc_alexnet: biases 0.1 and fc6/fc7 weights N(0, 0.005)
  torch      PyTorch's default initialisation

Runs are named folders under the cache (``runs/init224-*``) and resume
when interrupted; a finished one is read, not rerun. Writes
``results/init_comparison_224.json``. About 5 minutes a condition on two
CPU cores with bf16.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONDITIONS = {  # name: --model-option values
    "paper": ["init=paper"],
    "bias 0.1": ["init=paper", "bias=0.1"],
    "caffe": ["init=caffe"],
    "torch": ["init=torch"],
}


def folder_name(condition: str, seed: int) -> str:
    return f"init224-{condition.replace(' ', '').replace('.', '')}-seed{seed}"


def run(condition: str, data: str, seed: int) -> dict:
    from alexnet_lib import runlog
    from alexnet_lib.runs import run_folder
    out = run_folder(folder_name(condition, seed))
    rows = runlog.read_metrics(out) if out.exists() else []
    if not any(r.get("kind") == "epoch" and r.get("epoch") == 2
               for r in rows):
        args = [sys.executable, "-m", "alexnet_lib", "train", "--model",
                "alexnet", "--data", data, "--profile", "cpu", "--seed",
                str(seed), "--out", str(out), "--no-progress"]
        for option in CONDITIONS[condition]:
            args += ["--model-option", option]
        print(" ".join(args[1:]), flush=True)
        subprocess.run(args, check=True)
        rows = runlog.read_metrics(out)
    env = json.loads((out / "env.json").read_text()) \
        if (out / "env.json").exists() else {}
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    return {"model_options": CONDITIONS[condition],
            "train_loss": [round(r["train_loss"], 4) for r in epochs],
            "train_error": [round(r["train_error"], 4) for r in epochs],
            "val_top1_error": [round(r["val_top1_error"], 4)
                               for r in epochs],
            "val_top5_error": [round(r["val_top5_error"], 4)
                               for r in epochs],
            "images_per_s": [round(r["images_per_s"], 1) for r in epochs],
            "wall_time_s": round(epochs[-1]["wall_time_s"], 1),
            "env": {k: env[k] for k in ("hardware", "torch") if k in env}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True,
                   help="an Imagenette folder (train/ and val/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=list(CONDITIONS), nargs="*")
    args = p.parse_args(argv)
    from alexnet_lib.results import record_result
    start = time.perf_counter()
    curves = {c: run(c, args.data, args.seed)
              for c in (args.only or CONDITIONS)}
    if args.only:
        return 0
    final = {c: v["val_top1_error"][-1] for c, v in curves.items()}
    record_result(
        "init_comparison_224", chapter="5_details_of_learning",
        claim="the paper's initialisation (N(0, 0.01), biases 1) trains "
              "the full-size network (§5)",
        paper="trains (ImageNet, 1000 classes)",
        ours="val top-1 error after 3 epochs: " + ", ".join(
            f"{c} {e:.3f}" for c, e in final.items()),
        profile="cpu",
        data=f"Imagenette ({Path(args.data).name}), 5,000 training and "
             f"1,000 validation images, 224x224",
        wall_time_s=sum(v["wall_time_s"] for v in curves.values()),
        details={"seed": args.seed, "epochs": 3, "conditions": curves,
                 "chance_top1_error": 0.9,
                 "session_wall_s": round(time.perf_counter() - start, 1)})
    print(json.dumps(final, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

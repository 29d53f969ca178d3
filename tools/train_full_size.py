"""The full-size run of §6: the paper's AlexNet at 224x224 on Imagenette,
on the CPU, as a named run that resumes wherever it stopped.

    python tools/train_full_size.py --data PATH/imagenette2-224 [--seed 0]
        [--groups 2] [--dry-run] [--record]

The plan is ``alexnet_lib.runs.FULL_SIZE`` (the §5 recipe with biases of
0.1, bf16 where the CPU has it); the run folder is
``run_folder(full_size_name(seed, groups))`` under the cache. Run the
same command again after an interruption: it continues from the last
checkpoint (epoch ends, and every 30 minutes). Output goes to
``train.log`` in the run folder as well as to the terminal. With
``--record``, a finished run's numbers (per-epoch curves, centre-patch
and ten-patch errors, rate, wall time, hardware) are written to
``results/full_size_imagenette_seed<S>.json`` instead of training.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True,
                   help="an Imagenette folder (train/ and val/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--groups", type=int, default=2, choices=(1, 2))
    p.add_argument("--dry-run", action="store_true",
                   help="print the command and the folder, run nothing")
    p.add_argument("--record", action="store_true",
                   help="write the finished run's record to results/")
    args = p.parse_args(argv)
    from alexnet_lib.runs import (FULL_SIZE, full_size_name, run_folder,
                                  train_command)
    out = run_folder(full_size_name(args.seed, args.groups))
    cmd = [sys.executable, "-m", "alexnet_lib",
           *train_command(FULL_SIZE, out, "cpu", args.seed, args.groups),
           "--data", args.data]
    print(" ".join(cmd[1:]), flush=True)
    if args.dry_run:
        return 0
    if args.record:
        return record(out, args)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            log.flush()
        return proc.wait()


def record(out: Path, args) -> int:
    """Write results/full_size_imagenette_seed<S>.json from the run."""
    import json
    import statistics
    from alexnet_lib import runlog
    from alexnet_lib.results import record_result
    from alexnet_lib.runs import is_finished, wall_time_s
    if not is_finished(out):
        print(f"error: the run in {out} has not finished; run this "
              f"command without --record to continue it", file=sys.stderr)
        return 2
    rows = runlog.read_metrics(out)
    epochs = [r for r in rows if r["kind"] == "epoch"]
    ten = [r for r in rows if r["kind"] == "ten_crop"][-1]
    env = json.loads((out / "env.json").read_text())
    last = epochs[-1]
    centre = (100 * last["val_top1_error"], 100 * last["val_top5_error"])
    tens = (100 * ten["top1_error"], 100 * ten["top5_error"])
    groups = "" if args.groups == 2 else f"_groups{args.groups}"
    # wall_time_s counts from the start of each segment (each resume):
    # the run's time is the sum of the segments' last records
    ends = {}
    for r in rows:
        ends[r["segment"]] = max(ends.get(r["segment"], 0.0),
                                 r["wall_time_s"])
    wall = wall_time_s(rows)
    record_result(
        f"full_size_imagenette_seed{args.seed}{groups}",
        chapter="6_results",
        claim="one CNN makes 40.7% top-1 and 18.2% top-5 errors on "
              "ILSVRC-2012 val with ten patches (§6)",
        paper="40.7/18.2 (ILSVRC-2012 val, 1000 classes, ten patches)",
        ours=f"{centre[0]:.2f}/{centre[1]:.2f} centre patch, "
             f"{tens[0]:.2f}/{tens[1]:.2f} ten patches (Imagenette, 10 "
             f"classes, full-size network, seed {args.seed})",
        unit="top-1/top-5 error, %", profile="cpu",
        data=f"Imagenette ({Path(args.data).name}): every training "
             f"image, {epochs[0]['step']} batches of 128 per epoch; "
             f"{ten['n']:,} validation images",
        wall_time_s=wall,
        details={
            "run": out.name, "seed": args.seed, "groups": args.groups,
            "epochs": len(epochs), "updates": last["step"],
            "stopped": "plateau" if last["lr_drops"] >= 3 else "epochs",
            "hardware": env.get("hardware"), "torch": env.get("torch"),
            "keep_freed_memory": env.get("keep_freed_memory"),
            "median_images_per_s": round(statistics.median(
                r["images_per_s"] for r in epochs), 1),
            "segments": sorted(ends),
            "segment_wall_time_s": {s: round(t, 1) for s, t in
                                    sorted(ends.items())},
            "curves": {k: [round(r[k], 4) for r in epochs] for k in (
                "train_loss", "train_error", "val_top1_error",
                "val_top5_error", "lr")},
            "ten_patch": {"top1_error": round(ten["top1_error"], 4),
                          "top5_error": round(ten["top5_error"], 4),
                          "n": ten["n"]}})
    print(f"recorded {out.name}: centre {centre[0]:.2f}/{centre[1]:.2f}, "
          f"ten patches {tens[0]:.2f}/{tens[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The full-size run of §6: the paper's AlexNet at 224x224 on Imagenette,
on the CPU, as a named run that resumes wherever it stopped.

    python tools/train_full_size.py --data PATH/imagenette2-224 [--seed 0]
        [--groups 2] [--dry-run]

The plan is ``alexnet_lib.runs.FULL_SIZE`` (the §5 recipe with biases of
0.1, bf16 where the CPU has it); the run folder is
``run_folder(full_size_name(seed, groups))`` under the cache. Run the
same command again after an interruption: it continues from the last
checkpoint (epoch ends, and every 30 minutes). Output goes to
``train.log`` in the run folder as well as to the terminal.
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
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            log.flush()
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())

"""What ran a result: hardware, versions and the project's commit."""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

import alexnet_lib


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_summary() -> str:
    """One line, e.g. '2 CPU threads (AMD EPYC ...)' or '1x NVIDIA H100'."""
    cpu = f"{torch.get_num_threads()} CPU threads ({cpu_name()})"
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n}x {torch.cuda.get_device_name(0)}; {cpu}"
    return cpu


def git_commit(short: bool = True) -> str | None:
    """The checkout's commit, or None outside a git checkout."""
    root = Path(alexnet_lib.__file__).resolve().parents[1]
    args = ["git", "-C", str(root), "rev-parse"]
    args += ["--short", "HEAD"] if short else ["HEAD"]
    try:
        out = subprocess.run(args, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Versions and hardware, as written to a run's env.json."""
    import torchvision
    return {
        "alexnet_lib": alexnet_lib.__version__,
        "commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hardware": hardware_summary(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        # speed.keep_freed_memory: large freed blocks stay in the process
        "keep_freed_memory": _malloc_kept(),
    }


def _malloc_kept() -> bool:
    from alexnet_lib.speed import _MALLOC_STATE
    return bool(_MALLOC_STATE.get("applied"))

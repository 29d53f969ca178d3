"""Small JSON records of each experiment: the numbers the book quotes.

Every experiment writes ``results/<experiment>.json`` with its numbers,
profile, data, hardware, commit and date. The scorecard page is generated
from these files. A run under a smaller profile never replaces a record
made under a larger one, so running the notebooks in CI (profile ``ci``)
leaves the committed ``cpu``/``gpu`` results alone.
"""
from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from alexnet_lib.config import PROFILES, get_profile
from alexnet_lib.sysinfo import git_commit, hardware_summary

RESULTS_ENV = "ALEXNET_RESULTS"  # overrides where records are written
# Larger profiles do more of the paper's work; their records win.
PROFILE_RANK = {name: i for i, name in enumerate(PROFILES)}


def results_dir() -> Path:
    """$ALEXNET_RESULTS, else the ``results/`` of the enclosing book."""
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in [here, *here.parents]:
        if (folder / "_toc.yml").is_file():
            return folder / "results"
    return here / "results"


def record_result(experiment: str, *, chapter: str, claim: str,
                  paper: Any, ours: Any, profile: str, data: str,
                  wall_time_s: float, unit: str = "",
                  details: dict | None = None,
                  folder: Path | None = None) -> Path:
    """Write (or keep) the record of one experiment; returns its path."""
    if not experiment.replace("-", "_").isidentifier():
        raise ValueError(
            f"experiment name {experiment!r} must be letters, digits, "
            "'_' or '-' (it becomes the file name)")
    get_profile(profile)
    path = (folder or results_dir()) / f"{experiment}.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if PROFILE_RANK.get(old.get("profile"), -1) > PROFILE_RANK[profile]:
            return path  # keep the larger run's numbers
    record = {
        "experiment": experiment, "chapter": chapter, "claim": claim,
        "paper": paper, "ours": ours, "unit": unit, "profile": profile,
        "data": data, "hardware": hardware_summary(),
        "wall_time_s": round(float(wall_time_s), 1),
        "commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "details": details or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_results(folder: Path | None = None) -> list[dict]:
    """All records, sorted by chapter then experiment."""
    folder = folder or results_dir()
    records = [json.loads(p.read_text())
               for p in sorted(Path(folder).glob("*.json"))]
    return sorted(records, key=lambda r: (r["chapter"], r["experiment"]))

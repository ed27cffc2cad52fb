"""Pieces tools/compare.py and tools/ablate.py share: reading KEY VALUE overrides off the command
line, writing results, and the exit status."""
import json
import os
import re
import sys
import tempfile
from typing import Any, List, Optional, Sequence, Tuple

from .configs import ExperimentInputError
from .runner import CONSOLE_FILE, FAILED, RunRecord

__all__ = [
    "check_seeds",
    "exit_status",
    "failure_report",
    "seed_overrides",
    "split_paths_and_overrides",
    "user_overrides",
    "write_json",
    "write_text",
]

# A config key as written on the command line: upper-case words joined by dots (SOLVER.BASE_LR, SEED).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")


def split_paths_and_overrides(items: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Split ``--configs A.yaml B.yaml KEY VALUE ...`` into the paths before the first config key and
    the rest (the overrides)."""
    for i, item in enumerate(items):
        if _KEY.match(item):
            return list(items[:i]), list(items[i:])
    return list(items), []


def user_overrides(items: Sequence[str]) -> List[str]:
    """The ``KEY VALUE`` pairs given on the command line, checked to be pairs of a key and a value
    (ExperimentInputError otherwise); unknown keys are caught when the configs are merged."""
    items = list(items)
    if items and items[0] == "--":
        items = items[1:]
    if len(items) % 2:
        raise ExperimentInputError(f"Config overrides must be KEY VALUE pairs; got an odd number of items: {items}.")
    for key in items[0::2]:
        if not _KEY.match(key):
            raise ExperimentInputError(
                f"{key!r} is not a config key (KEY VALUE overrides look like SOLVER.BASE_LR 0.01); "
                "options go before the overrides."
            )
    return items


def check_seeds(seeds: Optional[Sequence[int]], overrides: Sequence[str]) -> None:
    """ExperimentInputError unless ``seeds`` (from --seeds; None when not given) are distinct numbers
    >= 0 and the KEY VALUE ``overrides`` leave SEED to them."""
    if seeds is None:
        return
    if any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ExperimentInputError(f"--seeds must be distinct numbers >= 0; got {list(seeds)}.")
    if "SEED" in list(overrides)[0::2]:
        raise ExperimentInputError("--seeds sets SEED for every run; leave SEED out of the KEY VALUE overrides.")


def seed_overrides(name: str, seed: Optional[int]) -> Tuple[str, List[str]]:
    """The run name and extra overrides of one seed of a run called ``name``: ``("<name> (seed S)",
    ["SEED", "S"])``, or ``(name, [])`` for None (the config's own SEED)."""
    if seed is None:
        return name, []
    return f"{name} (seed {seed})", ["SEED", str(seed)]


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON at ``path`` (NaN is written as null by the caller's to_dict)."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def failure_report(records: Sequence[RunRecord]) -> str:
    """For each failed record: its name, message, console file and log tail; "" when none failed."""
    parts = []
    for r in records:
        if r.status == FAILED:
            parts.append(f"Run {r.name} failed: {r.message} (full output: {os.path.join(r.output_dir, CONSOLE_FILE)}). "
                         f"Last lines:\n{r.log_tail}\n")
    return "\n".join(parts)


def exit_status(records: Sequence[RunRecord]) -> int:
    """0 when every run finished or diverged, 1 when one failed (its failure printed to stderr)."""
    report = failure_report(records)
    if report:
        print(report, file=sys.stderr)
        return 1
    return 0

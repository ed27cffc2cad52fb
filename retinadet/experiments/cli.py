"""What the compare and ablate commands share: their common arguments, reading KEY VALUE overrides
off the command line, planning one run per seed, the plan-train-report skeleton of ``main`` (bad
input: status 2; a failed run: status 1), writing results and the exit status."""
import argparse
import json
import os
import re
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

from retinadet.utils.file_io import atomic_write_text

from .configs import ExperimentInputError
from .runner import CONSOLE_FILE, FAILED, PlannedRun, RunRecord, RunSpec, describe, plan_run, run_all

__all__ = [
    "BAD_INPUT_EXIT_CODE",
    "add_run_arguments",
    "check_seeds",
    "exit_status",
    "failure_report",
    "finish",
    "plan_seeds",
    "run_tool",
    "seed_overrides",
    "split_paths_and_overrides",
    "tool_parser",
    "train",
    "user_overrides",
    "write_json",
]

# The exit status of a command refused before anything trained (argparse uses it too).
BAD_INPUT_EXIT_CODE = 2

def tool_parser(doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser for a command whose help is the module docstring ``doc``: its first paragraph
    is the description, the rest the epilog (layout kept)."""
    description, _, epilog = doc.strip().partition("\n\n")
    return argparse.ArgumentParser(description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_run_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    """Add the arguments compare and ablate share to ``parser``: --seeds (one run per seed of every
    ``unit``, e.g. "config" or "cell"), --output-dir, --force, --dry-run and the KEY VALUE overrides."""
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help=f"train every {unit} once per seed (SEED S) and report mean ± std (default: one run, "
                             "the config's SEED)")
    parser.add_argument("--output-dir", default=None, help="folder of the results and runs")
    parser.add_argument("--force", action="store_true", help="train again even where a finished run exists")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their overrides, train nothing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every run, KEY VALUE pairs (e.g. DATASETS.ROOT /data)")


def run_tool(argv: Optional[List[str]], parser: argparse.ArgumentParser,
             plan: Callable[[argparse.Namespace], dict],
             execute: Callable[[argparse.Namespace, dict], int]) -> int:
    """The ``main`` of compare and ablate: parse ``argv`` (None: sys.argv) with ``parser``, ``plan(args)``
    (checks every input, trains nothing), then ``execute(args, planned)``. Returns its exit status, or
    2 with "error: <message>" on stderr when planning raised ExperimentInputError."""
    args = parser.parse_args(argv)
    try:
        planned = plan(args)
    except ExperimentInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return BAD_INPUT_EXIT_CODE
    return execute(args, planned)


def _say(line: str) -> None:
    print(line, flush=True)


def train(runs: Sequence[PlannedRun], force: bool) -> List[RunRecord]:
    """``run_all(runs)`` with a progress line per run on stdout; ``force`` trains finished runs again.
    Returns one RunRecord per run."""
    return run_all(runs, reuse=not force, progress=_say)


def plan_seeds(name: str, config_file: str, overrides: Sequence[str], seeds: Optional[Sequence[int]],
               output_dir: str) -> List[Tuple[PlannedRun, List[str]]]:
    """One planned run of ``config_file`` with ``overrides`` per seed of ``seeds`` (None: one run with
    the config's SEED), each with the overrides the seed adds; runs go under ``output_dir``."""
    planned = []
    for seed in seeds if seeds is not None else [None]:
        seed_name, seed_keys = seed_overrides(name, seed)
        planned.append((plan_run(RunSpec(seed_name, config_file, (*overrides, *seed_keys)), output_dir), seed_keys))
    return planned


def finish(records: Sequence[RunRecord], output_dir: str, files: str) -> int:
    """Print one line per record and where the results (``files``, e.g. "results.json") are; returns
    ``exit_status(records)``."""
    for r in records:
        print(f"{r.name}: {describe(r)}")
    print(f"Results in {output_dir}: {files}.")
    return exit_status(records)


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


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON at ``path``, atomically (NaN is written as null by the caller's to_dict)."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


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

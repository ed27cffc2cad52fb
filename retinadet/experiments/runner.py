"""Running one config (with overrides) as a ``python -m retinadet.engine.train_net`` subprocess and
recording what it gave: final COCO metrics, training speed, inference time, peak memory, or how it
diverged or failed. The child runs the same interpreter and imports the same retinadet as this process.

Each run gets the folder ``<output root>/<name>-<hash>``, the hash being that of the merged config
(``configs.config_hash``). The folder holds the run's OUTPUT_DIR files, ``console.txt`` (its stdout
and stderr) and, once it has ended, ``run.json`` (its RunRecord). A later call with the same config
and overrides finds ``run.json`` and reuses the result instead of training again; a run without it
(interrupted) or one that failed is started afresh."""
import dataclasses
import glob
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import retinadet
from retinadet.utils.file_io import atomic_write_json
from retinadet.utils.writers import read_metrics

from . import outputs
from .configs import config_hash, load_config

__all__ = [
    "CONSOLE_FILE",
    "DIVERGED",
    "FAILED",
    "OK",
    "PlannedRun",
    "RECORD_FILE",
    "RunRecord",
    "RunSpec",
    "TRAIN_MODULE",
    "child_env",
    "describe",
    "plan_run",
    "run_all",
    "run_one",
    "summarize_run",
    "train_command",
]

logger = logging.getLogger("retinadet.experiments")

# The training entry point the runs start: `python -m retinadet.engine.train_net`.
TRAIN_MODULE = "retinadet.engine.train_net"
RECORD_FILE = "run.json"
CONSOLE_FILE = "console.txt"
_LOG_TAIL_LINES = 40

# Statuses of a run: it trained and was evaluated; its loss or its AP became non-finite; anything else.
OK, DIVERGED, FAILED = "ok", "diverged", "failed"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run to make: a display ``name``, an existing ``config_file`` and the ``overrides`` as
    command-line KEY VALUE strings (later ones win)."""

    name: str
    config_file: str
    overrides: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A RunSpec with its merged config checked: its ``hash``, ``output_dir`` and the few settings
    the result depends on (SOLVER.MAX_ITER, TRAIN.LOG_PERIOD, whether DATASETS.TEST is set)."""

    spec: RunSpec
    hash: str
    output_dir: str
    max_iter: int
    log_period: int
    evaluates: bool


@dataclasses.dataclass
class RunRecord:
    """What one run gave. ``status``: "ok", "diverged" (``diverged_at``: the iteration whose loss was
    non-finite, or None when the final AP was NaN) or "failed" (``message`` and ``log_tail`` say
    why). ``metrics``: AP, AP50, AP75, APs, APm, APl in percent (NaN where undefined; empty without
    an evaluation); ``train_its``: training iterations per second; ``inference_ms``: milliseconds
    per image of the model alone (``inference_total_ms`` with loading and the evaluator);
    ``peak_memory_mib``: the training log's max_mem. ``reused``: read from an earlier call."""

    name: str
    config_file: str
    overrides: List[str]
    hash: str
    output_dir: str
    status: str
    max_iter: int
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    train_its: Optional[float] = None
    inference_ms: Optional[float] = None
    inference_total_ms: Optional[float] = None
    peak_memory_mib: Optional[float] = None
    diverged_at: Optional[int] = None
    message: str = ""
    returncode: Optional[int] = None
    log_tail: str = ""
    wall_s: float = 0.0
    reused: bool = False

    @property
    def ap(self) -> float:
        """The final AP (NaN when there is none)."""
        return self.metrics.get("AP", float("nan"))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict (NaN metrics become None)."""
        d = dataclasses.asdict(self)
        d["metrics"] = {k: (None if v is None or math.isnan(v) else v) for k, v in self.metrics.items()}
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RunRecord":
        """The inverse of ``to_dict`` (unknown keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in fields}
        kwargs["metrics"] = {k: float("nan") if v is None else float(v) for k, v in (d.get("metrics") or {}).items()}
        return cls(**kwargs)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "run"


def plan_run(spec: RunSpec, output_root: str) -> PlannedRun:
    """Merge ``spec``'s config and overrides (raising configs.ExperimentInputError on a bad key or
    value) and choose its folder: an existing ``<output_root>/*-<hash>`` folder (the same run under
    another name) or ``<output_root>/<name>-<hash>``."""
    cfg = load_config(spec.config_file, spec.overrides, source=f"run {spec.name!r}")
    digest = config_hash(cfg)
    existing = sorted(glob.glob(os.path.join(glob.escape(output_root), f"*-{digest}")))
    output_dir = existing[0] if existing else os.path.join(output_root, f"{_slug(spec.name)}-{digest}")
    return PlannedRun(spec=spec, hash=digest, output_dir=os.path.abspath(output_dir), max_iter=int(cfg.SOLVER.MAX_ITER),
                      log_period=int(cfg.TRAIN.LOG_PERIOD), evaluates=bool(cfg.DATASETS.TEST))


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def summarize_run(planned: PlannedRun, returncode: int, console: str, wall_s: float = 0.0) -> RunRecord:
    """The RunRecord of a ``planned`` run that exited with ``returncode`` and printed ``console``,
    from its OUTPUT_DIR/metrics.json and the console text.

    A non-zero exit with a non-finite-loss error is "diverged" at that iteration; any other
    non-zero exit is "failed". A zero exit whose final AP is NaN is "diverged" (``diverged_at``
    None); one without the evaluation its config asks for, or that stopped before SOLVER.MAX_ITER
    (interrupted), is "failed"."""
    metrics_file = os.path.join(planned.output_dir, "metrics.json")
    lines = read_metrics(metrics_file) if os.path.exists(metrics_file) else []
    spec = planned.spec
    record = RunRecord(
        name=spec.name, config_file=spec.config_file, overrides=list(spec.overrides), hash=planned.hash,
        output_dir=planned.output_dir, status=OK, max_iter=planned.max_iter, returncode=returncode,
        wall_s=float(wall_s),
    )
    record.metrics = outputs.final_metrics(lines) or {}
    record.train_its = outputs.train_iters_per_second(lines, planned.log_period)
    inference = outputs.inference_seconds_per_image(console)
    if inference is not None:
        record.inference_ms = inference["model"] * 1000
        record.inference_total_ms = inference["total"] * 1000
    record.peak_memory_mib = outputs.peak_memory_mib(console)

    if returncode != 0:
        record.diverged_at = outputs.divergence_iteration(console)
        if record.diverged_at is not None:
            record.status = DIVERGED
            record.message = f"loss became non-finite at iteration {record.diverged_at}"
        else:
            record.status = FAILED
            record.message = f"training ({TRAIN_MODULE}) exited with status {returncode}"
            record.log_tail = _tail(console)
        return record

    last = outputs.last_iteration(lines)
    if last is not None and last + 1 < planned.max_iter:
        record.status = FAILED
        record.message = f"training stopped after {last + 1} of {planned.max_iter} iterations"
        record.log_tail = _tail(console)
    elif planned.evaluates and not record.metrics:
        record.status = FAILED
        record.message = f"no evaluation results in {metrics_file}"
        record.log_tail = _tail(console)
    elif planned.evaluates and outputs.is_nan(record.metrics.get("AP")):
        record.status = DIVERGED
        record.message = "final AP is NaN"
    return record


def _load_record(planned: PlannedRun) -> Optional[RunRecord]:
    path = os.path.join(planned.output_dir, RECORD_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            record = RunRecord.from_dict(json.load(f))
    except (OSError, ValueError, TypeError) as e:
        logger.warning("Ignoring unreadable %s: %s", path, e)
        return None
    if record.hash != planned.hash or record.status not in (OK, DIVERGED):
        return None
    record.reused = True
    record.name = planned.spec.name
    return record


def _save_record(record: RunRecord) -> None:
    atomic_write_json(os.path.join(record.output_dir, RECORD_FILE), record.to_dict(), indent=1, sort_keys=True)


def train_command() -> List[str]:
    """The command that trains one run, before its arguments: this interpreter, ``-m retinadet.engine.train_net``."""
    return [sys.executable, "-m", TRAIN_MODULE]


def child_env(cwd: Optional[str] = None) -> Dict[str, str]:
    """The environment of a training child run in ``cwd`` (default: the working directory): this
    process's, unbuffered. ``python -m`` puts the child's working directory first on its sys.path;
    when that folder holds another ``retinadet`` package than the one running here (a checkout next
    to an installed copy), PYTHONSAFEPATH=1 leaves it off, so the child imports this retinadet."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    here = os.path.dirname(os.path.dirname(os.path.realpath(retinadet.__file__)))
    there = os.path.realpath(cwd or os.getcwd())
    if here != there and os.path.isfile(os.path.join(there, "retinadet", "__init__.py")):
        env["PYTHONSAFEPATH"] = "1"
    return env


def run_one(planned: PlannedRun, reuse: bool = True, command: Optional[Sequence[str]] = None,
            cwd: Optional[str] = None) -> RunRecord:
    """Train and evaluate ``planned`` with ``<command> --config-file C <overrides> OUTPUT_DIR <its
    folder>`` (``command`` default ``train_command()``; run in ``cwd``, default the working directory)
    and return its record, also written to ``run.json`` in the folder. With ``reuse``, a finished
    ("ok" or "diverged") record of the same hash is returned without training. An interrupt
    (KeyboardInterrupt) stops the child and propagates, leaving no record."""
    if reuse:
        record = _load_record(planned)
        if record is not None:
            return record
    if os.path.isdir(planned.output_dir):
        # A run that was interrupted or failed: metrics.json is appended to, so start clean.
        shutil.rmtree(planned.output_dir)
    os.makedirs(planned.output_dir)
    spec = planned.spec
    argv = [*(command or train_command()), "--config-file", spec.config_file, *spec.overrides,
            "OUTPUT_DIR", planned.output_dir]
    console_path = os.path.join(planned.output_dir, CONSOLE_FILE)
    start = time.perf_counter()
    # The child's live output, streamed as it comes (a log, not a result: not written atomically).
    with open(console_path, "w") as console:
        console.write("$ " + " ".join(argv) + "\n")
        console.flush()
        # Its own session: a Ctrl-C reaches this process only, which then stops the child.
        proc = subprocess.Popen(argv, stdout=console, stderr=subprocess.STDOUT, cwd=cwd, env=child_env(cwd),
                                start_new_session=True)
        try:
            returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    wall = time.perf_counter() - start
    with open(console_path, errors="replace") as f:
        text = f.read()
    record = summarize_run(planned, returncode, text, wall)
    _save_record(record)
    return record


def _stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` and its children (its own process group), killing them after 10 s."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_all(planned_runs: Sequence[PlannedRun], reuse: bool = True,
            progress: Optional[Callable[[str], None]] = None, **run_kwargs: Any) -> List[RunRecord]:
    """``run_one`` for each of ``planned_runs`` in order, once per hash (a repeated hash gets the
    first one's record under its own name). ``progress`` receives a line before and after each."""
    say = progress or logger.info
    done: Dict[str, RunRecord] = {}
    records: List[RunRecord] = []
    unique = len({p.hash for p in planned_runs})
    for planned in planned_runs:
        if planned.hash in done:
            records.append(dataclasses.replace(done[planned.hash], name=planned.spec.name))
            continue
        number = len(done) + 1
        record = _load_record(planned) if reuse else None
        if record is None:
            say(f"[{number}/{unique}] {planned.spec.name}: training {planned.max_iter} iterations in {planned.output_dir}")
            record = run_one(planned, reuse=False, **run_kwargs)
        say(f"[{number}/{unique}] {planned.spec.name}: {describe(record)}")
        done[planned.hash] = record
        records.append(record)
    return records


def describe(record: RunRecord) -> str:
    """One line on ``record``: its AP and speed, its divergence or its failure."""
    prefix = "reused, " if record.reused else ""
    if record.status == OK:
        its = f"{record.train_its:.2f} it/s" if record.train_its else "? it/s"
        return f"{prefix}AP {record.ap:.2f}, {its}, {record.wall_s:.0f} s"
    if record.status == DIVERGED:
        return f"{prefix}diverged ({record.message})"
    return f"FAILED ({record.message}); see {os.path.join(record.output_dir, CONSOLE_FILE)}"

"""Experiments over configs: run each as a tools/train_net.py subprocess, collect its metrics and
speed, reuse finished runs, and report tables and plots (tools/compare.py, tools/ablate.py)."""
from .configs import ExperimentInputError, load_config, resolve_config_path, schedule_overrides
from .presets import ABLATION_PRESETS, COMPARE_PRESETS
from .runner import PlannedRun, RunRecord, RunSpec, plan_run, run_all, run_one

__all__ = [
    "ABLATION_PRESETS",
    "COMPARE_PRESETS",
    "ExperimentInputError",
    "PlannedRun",
    "RunRecord",
    "RunSpec",
    "load_config",
    "plan_run",
    "resolve_config_path",
    "run_all",
    "run_one",
    "schedule_overrides",
]

"""Experiments over configs: run each as a ``python -m retinadet.engine.train_net`` subprocess, collect
its metrics and speed, reuse finished runs, and report tables and plots: the commands
``retinadet.experiments.compare`` and ``retinadet.experiments.ablate`` (retinadet-compare,
retinadet-ablate; tools/compare.py and tools/ablate.py run the same)."""
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

"""Train and evaluate several configs on the same data with the same iteration budget; write a table,
a speed-vs-accuracy plot and results.json.

    retinadet-compare --configs A.yaml B.yaml [--iters N] [--output-dir D] [KEY VALUE ...]
    retinadet-compare --preset two-stage                  # RetinaNet vs Faster R-CNN on the shapes set
    retinadet-compare --preset two-stage --seeds 0 1      # each config twice: mean ± std per row

(retinadet-compare, python -m retinadet.experiments.compare and python tools/compare.py are the same.)
A config is a file (relative to the working directory) or a model-zoo name such as
shapes/retinanet_R_18_FPN.yaml (retinadet.model_zoo: the configs that ship with retinadet).

Same budget: every config trains for the same SOLVER.MAX_ITER, --iters N or else the first config's.
A config trained for another number of iterations than its own MAX_ITER gets SOLVER.STEPS and
SOLVER.WARMUP_ITERS scaled by the same factor (rounded), so its schedule keeps its shape. Every run
also gets SOLVER.CHECKPOINT_PERIOD beyond MAX_ITER, TEST.EVAL_PERIOD 0, TEST.VIS_IMAGES 0 and
TRAIN.LOSS_CURVE False (KEY VALUE overrides may undo them); the overrides apply to every config.

Leaves in --output-dir (default output/compare/<preset or "custom">): comparison.md, speed_vs_accuracy.png,
results.json and one folder per run, <config>-<hash of the merged config>. Runs finished before (same
config and overrides) are reused, so an interrupted comparison continues; --force trains them again.
Train it/s leaves out the first steps; inference ms/img is the model alone (the evaluation loop's
timing); peak memory is the training log's max_mem (CUDA memory on a GPU, resident memory on CPU).
A run whose loss becomes non-finite is reported as diverged; a run that fails otherwise is reported
with its last log lines and the exit status is 1.

--seeds S [S ...] trains every config once per seed (SEED S: model initialisation, data order and
augmentation), names the runs "<config> (seed S)" and reports one row per config: the mean and the
sample standard deviation of each metric over its finished seeds; results.json keeps every run.
"""
import argparse
import os
import sys
from typing import List, Optional

from retinadet.utils.file_io import atomic_write_text

from . import cli, configs
from .presets import COMPARE_PRESETS, get_preset
from .report import comparison_markdown, seed_comparison_markdown, speed_accuracy_plot
from .runner import PlannedRun

__all__ = ["build_parser", "main", "plan"]


def _names(paths: List[str]) -> List[str]:
    """Config file names without .yaml; the parent folder joins them where two names clash."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    names = []
    for path, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{os.path.basename(os.path.dirname(path))}/{stem}"
        while name in names:
            name += "'"
        names.append(name)
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line of compare (see the module docstring)."""
    parser = cli.tool_parser(__doc__)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--configs", nargs="+", metavar="YAML",
                       help="config files or model-zoo names (e.g. shapes/retinanet_R_18_FPN.yaml) to compare")
    which.add_argument("--preset", help=f"a preset list of configs: {', '.join(sorted(COMPARE_PRESETS))}")
    parser.add_argument("--iters", type=int, default=None,
                        help="SOLVER.MAX_ITER of every run (default: the first config's)")
    cli.add_run_arguments(parser, unit="config")
    return parser


def plan(args: argparse.Namespace) -> dict:
    """Check every input of parsed ``args`` and plan the runs, training nothing. Returns {"runs":
    [PlannedRun], "max_iter": N, "output_dir": D, "configs": [absolute paths], "overrides": [...],
    "ims_per_batch", "seeds", "groups": [(config name, [PlannedRun per seed])]}. Raises
    ExperimentInputError naming the bad input."""
    paths, extra = cli.split_paths_and_overrides(args.configs) if args.configs else ([], [])
    overrides = cli.user_overrides(extra + list(args.opts or []))
    if args.preset is not None:
        paths = list(get_preset(args.preset, COMPARE_PRESETS))
        files = [configs.model_zoo_config_path(p, what=f"config of preset {args.preset!r}") for p in paths]
    elif not paths:
        raise configs.ExperimentInputError("--configs needs at least one config file or model-zoo name.")
    else:
        files = [configs.resolve_config_path(p, what="--configs file") for p in paths]
    names = _names(paths)
    cfgs = [configs.load_config(f, overrides, source="the command line") for f in files]
    configs.check_same_datasets(list(zip(files, cfgs)))
    if args.iters is not None and args.iters <= 0:
        raise configs.ExperimentInputError(f"--iters must be a positive number of iterations; got {args.iters}.")
    max_iter = args.iters if args.iters is not None else int(cfgs[0].SOLVER.MAX_ITER)
    output_dir = args.output_dir or os.path.join("output", "compare", args.preset or "custom")
    cli.check_seeds(args.seeds, overrides)
    runs: List[PlannedRun] = []
    groups: List[tuple] = []
    for name, path, cfg in zip(names, files, cfgs):
        run_overrides = [*configs.SPEED_OVERRIDES, *overrides, *configs.schedule_overrides(cfg, max_iter)]
        group = [run for run, _ in cli.plan_seeds(name, path, run_overrides, args.seeds, output_dir)]
        runs.extend(group)
        if args.seeds is not None:
            groups.append((name, group))
    batch_sizes = {name: int(cfg.SOLVER.IMS_PER_BATCH) for name, cfg in zip(names, cfgs)}
    return {"runs": runs, "max_iter": max_iter, "output_dir": output_dir, "configs": files, "overrides": overrides,
            "ims_per_batch": batch_sizes, "seeds": args.seeds, "groups": groups}


def _execute(args: argparse.Namespace, planned: dict) -> int:
    """Print the plan, then (unless --dry-run) train the planned runs and write the results; returns
    the exit status (0, or 1 when a run failed)."""
    runs, max_iter, output_dir = planned["runs"], planned["max_iter"], planned["output_dir"]
    if len(set(planned["ims_per_batch"].values())) > 1:
        print(f"note: the configs train on different batch sizes (SOLVER.IMS_PER_BATCH {planned['ims_per_batch']}); "
              "the same MAX_ITER then means different numbers of images.")
    seeds = f", seeds {planned['seeds']} ({len(runs)} runs)" if planned["seeds"] is not None else ""
    print(f"Comparing {len(planned['configs'])} configs for SOLVER.MAX_ITER {max_iter} each{seeds}, in {output_dir}.")
    if args.dry_run:
        for run in runs:
            print(f"  {run.spec.name}: {run.spec.config_file} {' '.join(run.spec.overrides)} -> {run.output_dir}")
        return 0
    records = cli.train(runs, args.force)
    if planned["seeds"] is None:
        table = comparison_markdown(records, max_iter=max_iter)
    else:
        by_hash = {r.hash: r for r in records}
        table = seed_comparison_markdown([(name, [by_hash[p.hash] for p in group]) for name, group in planned["groups"]],
                                         max_iter=max_iter)
    atomic_write_text(os.path.join(output_dir, "comparison.md"), "# Comparison\n\n" + table + "\n")
    speed_accuracy_plot(records, os.path.join(output_dir, "speed_vs_accuracy.png"),
                        title=f"Speed vs. accuracy ({max_iter} iterations each)")
    cli.write_json(os.path.join(output_dir, "results.json"), {
        "tool": "compare", "preset": args.preset, "max_iter": max_iter, "configs": planned["configs"],
        "seeds": planned["seeds"],
        "overrides": planned["overrides"], "runs": [r.to_dict() for r in records],
    })
    print("\n" + table + "\n")
    return cli.finish(records, output_dir, "comparison.md, speed_vs_accuracy.png, results.json")


def main(argv: Optional[List[str]] = None) -> int:
    """Run compare on ``argv`` (None: sys.argv[1:]); returns the exit status: 0, 1 when a run failed,
    2 on bad input (nothing trained)."""
    return cli.run_tool(argv, build_parser(), plan, _execute)


if __name__ == "__main__":
    sys.exit(main())

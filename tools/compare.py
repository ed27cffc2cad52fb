#!/usr/bin/env python
"""Train and evaluate several configs on the same data with the same iteration budget; write a table,
a speed-vs-accuracy plot and results.json.

    python tools/compare.py --configs A.yaml B.yaml [--iters N] [--output-dir D] [KEY VALUE ...]
    python tools/compare.py --preset two-stage          # RetinaNet vs Faster R-CNN on the shapes set
    python tools/compare.py --preset two-stage --seeds 0 1   # each config twice: mean ± std per row

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

from retinadet.experiments import cli
from retinadet.experiments.configs import (
    SPEED_OVERRIDES,
    ExperimentInputError,
    check_same_datasets,
    load_config,
    resolve_config_path,
    schedule_overrides,
)
from retinadet.experiments.presets import COMPARE_PRESETS, get_preset
from retinadet.experiments.report import comparison_markdown, seed_comparison_markdown, speed_accuracy_plot
from retinadet.experiments.runner import PlannedRun, RunSpec, describe, plan_run, run_all


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--configs", nargs="+", metavar="YAML", help="config files to compare")
    which.add_argument("--preset", help=f"a preset list of configs: {', '.join(sorted(COMPARE_PRESETS))}")
    parser.add_argument("--iters", type=int, default=None,
                        help="SOLVER.MAX_ITER of every run (default: the first config's)")
    parser.add_argument("--output-dir", default=None, help="folder of the results and runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S",
                        help="train every config once per seed (SEED S) and report mean ± std (default: one run, "
                             "the config's SEED)")
    parser.add_argument("--force", action="store_true", help="train again even where a finished run exists")
    parser.add_argument("--dry-run", action="store_true", help="print the runs and their overrides, train nothing")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every config, KEY VALUE pairs (e.g. DATASETS.ROOT /data)")
    return parser


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


def plan(args: argparse.Namespace) -> dict:
    """Check every input and plan the runs, training nothing: {"runs": [PlannedRun], "max_iter": N,
    "output_dir": D, "configs": [...], "overrides": [...]}. Raises ExperimentInputError."""
    paths, extra = cli.split_paths_and_overrides(args.configs) if args.configs else ([], [])
    overrides = cli.user_overrides(extra + list(args.opts or []))
    if args.preset is not None:
        paths = list(get_preset(args.preset, COMPARE_PRESETS))
    if not paths:
        raise ExperimentInputError("--configs needs at least one config file.")
    files = [resolve_config_path(p) for p in paths]
    names = _names(paths)
    cfgs = [load_config(f, overrides, source="the command line") for f in files]
    check_same_datasets(list(zip(files, cfgs)))
    if args.iters is not None and args.iters <= 0:
        raise ExperimentInputError(f"--iters must be a positive number of iterations; got {args.iters}.")
    max_iter = args.iters if args.iters is not None else int(cfgs[0].SOLVER.MAX_ITER)
    output_dir = args.output_dir or os.path.join("output", "compare", args.preset or "custom")
    seeds = args.seeds
    cli.check_seeds(seeds, overrides)
    runs: List[PlannedRun] = []
    groups: List[tuple] = []
    for name, path, cfg in zip(names, files, cfgs):
        run_overrides = [*SPEED_OVERRIDES, *overrides, *schedule_overrides(cfg, max_iter)]
        if seeds is None:
            runs.append(plan_run(RunSpec(name, path, tuple(run_overrides)), output_dir))
            continue
        group = []
        for seed in seeds:
            seed_name, seed_keys = cli.seed_overrides(name, seed)
            group.append(plan_run(RunSpec(seed_name, path, (*run_overrides, *seed_keys)), output_dir))
        runs.extend(group)
        groups.append((name, group))
    batch_sizes = {name: int(cfg.SOLVER.IMS_PER_BATCH) for name, cfg in zip(names, cfgs)}
    return {"runs": runs, "max_iter": max_iter, "output_dir": output_dir, "configs": files, "overrides": overrides,
            "ims_per_batch": batch_sizes, "seeds": seeds, "groups": groups}


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        planned = plan(args)
    except ExperimentInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    records = run_all(runs, reuse=not args.force, progress=lambda line: print(line, flush=True))
    os.makedirs(output_dir, exist_ok=True)
    if planned["seeds"] is None:
        table = comparison_markdown(records, max_iter=max_iter)
    else:
        by_hash = {r.hash: r for r in records}
        table = seed_comparison_markdown([(name, [by_hash[p.hash] for p in group]) for name, group in planned["groups"]],
                                         max_iter=max_iter)
    cli.write_text(os.path.join(output_dir, "comparison.md"), "# Comparison\n\n" + table + "\n")
    speed_accuracy_plot(records, os.path.join(output_dir, "speed_vs_accuracy.png"),
                        title=f"Speed vs. accuracy ({max_iter} iterations each)")
    cli.write_json(os.path.join(output_dir, "results.json"), {
        "tool": "compare", "preset": args.preset, "max_iter": max_iter, "configs": planned["configs"],
        "seeds": planned["seeds"],
        "overrides": planned["overrides"], "runs": [r.to_dict() for r in records],
    })
    print("\n" + table + "\n")
    for r in records:
        print(f"{r.name}: {describe(r)}")
    print(f"Results in {output_dir}: comparison.md, speed_vs_accuracy.png, results.json.")
    return cli.exit_status(records)


if __name__ == "__main__":
    sys.exit(main())

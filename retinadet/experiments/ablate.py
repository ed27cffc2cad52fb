"""Reproduce the focal-loss paper's ablations (Lin et al. 2017, Table 1) with RetinaNet on the embedded
shapes data set, and write the tables, plots and results.json.

    retinadet-ablate --preset focal [--seeds S ...] [--budget F] [--base-config C] [--tables a,b,c,d]
                     [KEY VALUE ...]

(retinadet-ablate, python -m retinadet.experiments.ablate and python tools/ablate.py are the same.)

Tables of the focal preset: (a) gamma in {0, .5, 1, 2, 5} x alpha in {.25, .5, .75} (gamma 0 is
alpha-balanced CE); (b) FL vs. OHEM (128 anchors per image, NMS .5) and 1:3 sampling (256 anchors
per image) with plain CE; (c) 1 anchor per location vs. 9; (d) the pi = .01 prior on the class bias
vs. none (pi = .5, bias 0), for FL and for plain CE. Every row starts from the reference (FL, gamma 2,
alpha .25, every anchor, the prior, 9 anchors), so a setting in several tables is trained once
(21 runs for all four tables).

Backbone: the preset first trains one run of its pretraining config (for focal, the demo,
shapes/retinanet_R_18_FPN.yaml) and every row then starts from that run's ResNet (its EMA weights,
MODEL.BACKBONE.WEIGHTS) with a fresh FPN and heads, as every row of the paper starts from one
ImageNet ResNet; --pretrain-config none trains the rows from scratch (the default with --base-config).
The pretraining run is reused like the rows.

Configs (--base-config, --pretrain-config) are files (relative to the working directory) or model-zoo
names such as shapes/retinanet_R_18_FPN.yaml (retinadet.model_zoo: the configs that ship with retinadet).

Seeds: --seeds S [S ...] trains every cell once per seed (SEED S: the rows' initialisation, data order
and augmentation; the pretraining run is one run) and shows each cell as the mean ± the sample
standard deviation over its seeds; without it every cell is one run with the config's SEED.

Budget: every run trains for round(F x SOLVER.MAX_ITER of the base config) iterations (--budget F,
default 1), with SOLVER.STEPS and SOLVER.WARMUP_ITERS scaled by the same factor. The base config
(--base-config, default shapes/retinanet_R_18_ablation.yaml) is sized for about 80 s a run on a
2-core CPU and the pretraining run for about 8 minutes, so one seed of the preset takes about 35
minutes and two seeds about an hour (ablation.md states the time its runs took).
Every run also gets SOLVER.CHECKPOINT_PERIOD beyond MAX_ITER, TEST.EVAL_PERIOD 0, TEST.VIS_IMAGES 0,
TRAIN.LOSS_CURVE False; KEY VALUE overrides apply to every run (the tables' own settings win).

Leaves in --output-dir (default output/ablate/<preset>): ablation.md, ap_vs_gamma.png,
focal_loss_curve.png (the paper's Figure 1, from the library's sigmoid_focal_loss), results.json and
one folder per run, <name>-<hash of the merged config>. Finished runs are reused when the tool runs
again (an interrupted ablation continues); --force trains them again. A run whose loss becomes
non-finite is reported as diverged at that iteration; a run that fails otherwise is reported with its
last log lines and the exit status is 1.
"""
import argparse
import dataclasses
import os
import sys
from typing import Dict, List, Optional

from retinadet import model_zoo
from retinadet.utils.file_io import atomic_write_text

from . import cli
from .configs import (
    SPEED_OVERRIDES,
    ExperimentInputError,
    load_config,
    model_zoo_config_path,
    overrides_from_dict,
    resolve_config_path,
    schedule_overrides,
)
from .pretraining import BACKBONE_FILE, export_backbone_weights
from .presets import ABLATION_PRESETS, get_preset, row_overrides, run_name, select_tables
from .report import ablation_markdown, ap_vs_gamma_plot, focal_loss_curve_plot, seed_statistics
from .runner import OK, PlannedRun, RunRecord, RunSpec, describe, plan_run

__all__ = ["build_parser", "main", "plan"]


def build_parser() -> argparse.ArgumentParser:
    """The command line of ablate (see the module docstring)."""
    parser = cli.tool_parser(__doc__)
    parser.add_argument("--preset", required=True, help=f"the ablation: {', '.join(sorted(ABLATION_PRESETS))}")
    parser.add_argument("--base-config", default=None,
                        help="config file or model-zoo name every run starts from (default: the preset's)")
    parser.add_argument("--pretrain-config", default=None,
                        help="config of the run whose backbone every row starts from; 'none' for rows from "
                             "scratch (default: the preset's, or none with --base-config)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="factor on the base config's SOLVER.MAX_ITER (default 1)")
    parser.add_argument("--tables", default=None, help="comma-separated tables to run, e.g. a,c (default: all)")
    cli.add_run_arguments(parser, unit="cell")
    return parser


def plan(args: argparse.Namespace) -> dict:
    """Check every input of parsed ``args`` and plan the runs, training nothing. Returns {"preset",
    "tables", "cells": {table key: [[PlannedRun per seed] per row]}, "runs": [unique PlannedRun],
    "max_iter", "seeds", "base_config", "output_dir", "overrides", ...}. Raises ExperimentInputError
    naming the bad input."""
    preset = get_preset(args.preset, ABLATION_PRESETS)
    keys = [k.strip() for k in args.tables.split(",") if k.strip()] if args.tables else None
    tables = select_tables(preset, keys)
    overrides = cli.user_overrides(list(args.opts or []))
    cli.check_seeds(args.seeds, overrides)
    if args.base_config is None:
        base = model_zoo_config_path(preset.base_config, what=f"base config of preset {preset.name!r}")
    else:
        base = resolve_config_path(args.base_config, what="--base-config")
    base_cfg = load_config(base, overrides, source="the command line")
    if not args.budget > 0:
        raise ExperimentInputError(f"--budget must be a positive factor; got {args.budget}.")
    max_iter = max(1, int(round(args.budget * base_cfg.SOLVER.MAX_ITER)))
    schedule = schedule_overrides(base_cfg, max_iter)
    output_dir = args.output_dir or os.path.join("output", "ablate", preset.name)
    pretrain = _plan_pretraining(args, preset, overrides, output_dir)
    backbone = ["MODEL.BACKBONE.WEIGHTS", os.path.join(pretrain.output_dir, BACKBONE_FILE)] if pretrain else []

    cells: Dict[str, List[List[PlannedRun]]] = {}
    unique: Dict[str, PlannedRun] = {}
    own: Dict[str, List[str]] = {}
    for table in tables:
        cells[table.key] = []
        for row in table.rows:
            run_overrides = [*SPEED_OVERRIDES, *overrides, *schedule, *backbone,
                             *overrides_from_dict(row_overrides(preset, row))]
            per_seed = []
            for planned, seed_keys in cli.plan_seeds(run_name(table, row), base, run_overrides, args.seeds, output_dir):
                planned = unique.setdefault(planned.hash, planned)
                own.setdefault(planned.hash, overrides_from_dict(row.overrides) + seed_keys)
                per_seed.append(planned)
            cells[table.key].append(per_seed)
    shadowed = sorted({k for k in overrides[0::2] for t in tables for r in t.rows if k in row_overrides(preset, r)})
    return {"preset": preset, "tables": tables, "cells": cells, "runs": list(unique.values()), "max_iter": max_iter,
            "seeds": args.seeds, "base_config": base, "output_dir": output_dir, "overrides": overrides, "shadowed": shadowed,
            "own_overrides": own, "schedule": schedule, "pretrain": pretrain}


def _plan_pretraining(args: argparse.Namespace, preset, overrides: List[str], output_dir: str) -> Optional[PlannedRun]:
    """The pretraining run (its config from --pretrain-config, else the preset's unless --base-config
    replaces the base), with the same budget factor and overrides as the rows; None for none."""
    path = args.pretrain_config
    if path is not None and path.lower() == "none":
        return None
    if path is not None:
        path = resolve_config_path(path, what="--pretrain-config")
    elif preset.pretrain_config is not None and args.base_config is None:
        path = model_zoo_config_path(preset.pretrain_config, what=f"pretraining config of preset {preset.name!r}")
    else:
        return None
    cfg = load_config(path, overrides, source="the command line")
    max_iter = max(1, int(round(args.budget * cfg.SOLVER.MAX_ITER)))
    spec = RunSpec("pretrain", path, (*SPEED_OVERRIDES, *overrides, *schedule_overrides(cfg, max_iter)))
    return plan_run(spec, output_dir)


def _row_result(row, records: List[RunRecord]) -> dict:
    """A table row for results.json: its labels, each seed's run, and the mean and sample standard
    deviation of the metrics over the seeds that finished (``seed_statistics``)."""
    stats = seed_statistics(records)
    runs = [{"run": r.name, "hash": r.hash, "status": r.status, "metrics": r.to_dict()["metrics"],
             "diverged_at": r.diverged_at} for r in records]
    return {"labels": row.labels, "runs": runs, "finished": sum(r.status == OK for r in records),
            "mean": {k: v[0] for k, v in stats.items()},
            "std": {k: (None if v[2] < 2 else v[1]) for k, v in stats.items()}}


def _shown(path: str) -> str:
    """``path`` as the tables show it: its model-zoo name when it is one, else as given."""
    return model_zoo.relative_name(path) or path


def _print_dry_run(planned: dict) -> None:
    """The overrides every run gets, the pretraining run and each run's own overrides."""
    common = [*SPEED_OVERRIDES, *planned["overrides"], *planned["schedule"]]
    if planned["pretrain"] is not None:
        pre = planned["pretrain"]
        print(f"First: pretrain [{pre.hash}] {pre.spec.config_file}, {pre.max_iter} iterations; every row then "
              f"loads its backbone (MODEL.BACKBONE.WEIGHTS {os.path.join(pre.output_dir, BACKBONE_FILE)}).")
    print(f"Every run: {' '.join(common)}\nthen the reference: {' '.join(overrides_from_dict(planned['preset'].reference))}")
    for run in planned["runs"]:
        print(f"  {run.spec.name} [{run.hash}]: {' '.join(planned['own_overrides'][run.hash]) or '(the reference)'}")


def _execute(args: argparse.Namespace, planned: dict) -> int:
    """Print the plan, then (unless --dry-run) train the pretraining run and the rows and write the
    results; returns the exit status (0, or 1 when a run failed)."""
    preset, tables, runs, output_dir = planned["preset"], planned["tables"], planned["runs"], planned["output_dir"]
    cells_total = sum(len(t.rows) for t in tables)
    seeds = f", seeds {planned['seeds']}" if planned["seeds"] is not None else ""
    print(f"Ablation {preset.name!r} from {planned['base_config']}: {cells_total} table cells{seeds}, {len(runs)} "
          f"distinct runs of {planned['max_iter']} iterations, in {output_dir}.")
    if planned["shadowed"]:
        print(f"note: the tables set {', '.join(planned['shadowed'])} themselves; their values replace the command line's.")
    if args.dry_run:
        _print_dry_run(planned)
        return 0
    pretrain = planned["pretrain"]
    pretrain_record = None
    if pretrain is not None:
        print(f"Pretraining the rows' backbone: {pretrain.spec.config_file}, {pretrain.max_iter} iterations.")
        pretrain_record = cli.train([pretrain], args.force)[0]
        if pretrain_record.status != OK:
            print(f"error: the pretraining run did not finish ({describe(pretrain_record)}); no row can start. "
                  f"Its log: {pretrain.output_dir}", file=sys.stderr)
            return 1
        export_backbone_weights(pretrain.output_dir)
    records = cli.train(runs, args.force)
    text = _write_results(args, planned, records, pretrain_record)
    print("\n" + text)
    return cli.finish(records, output_dir, "ablation.md, results.json and the plots")


def _write_results(args: argparse.Namespace, planned: dict, records: List[RunRecord],
                   pretrain_record: Optional[RunRecord]) -> str:
    """Write ablation.md, results.json and the preset's plots into the output folder; returns the
    text of ablation.md."""
    preset, output_dir, pretrain = planned["preset"], planned["output_dir"], planned["pretrain"]
    by_hash = {r.hash: r for r in records}
    sections = []
    results_tables = {}
    for table in planned["tables"]:
        table_records = [[by_hash[p.hash] for p in per_seed] for per_seed in planned["cells"][table.key]]
        sections.append(ablation_markdown(table, table_records))
        results_tables[table.key] = {"title": table.title,
                                     "rows": [_row_result(row, rows) for row, rows in zip(table.rows, table_records)]}
        if table.key == "a" and "ap_vs_gamma" in preset.plots:
            ap_vs_gamma_plot(table, table_records, os.path.join(output_dir, "ap_vs_gamma.png"))
    if "focal_loss_curve" in preset.plots:
        focal_loss_curve_plot(os.path.join(output_dir, "focal_loss_curve.png"))
    header = (f"# Ablation: {preset.description}\n\nBase config {_shown(planned['base_config'])}, SOLVER.MAX_ITER "
              f"{planned['max_iter']} for every run; AP in percent on the test set.\n\n")
    if planned["seeds"] is not None:
        header += (f"Every cell trained once per seed {', '.join(map(str, planned['seeds']))} (SEED: the rows' "
                   "initialisation, data order and augmentation): mean ± sample standard deviation.\n\n")
    train_s = sum(r.wall_s for r in records) + (pretrain_record.wall_s if pretrain_record is not None else 0.0)
    header += (f"Training and evaluation time of the {len(records)} runs"
               f"{' and the pretraining run' if pretrain_record is not None else ''}: {train_s / 60:.0f} min "
               "(each run's own wall time, reused runs included).\n\n")
    if pretrain_record is not None:
        header += (f"Every run starts from the backbone of one pretraining run ({_shown(pretrain.spec.config_file)}, "
                   f"{pretrain.max_iter} iterations, {describe(dataclasses.replace(pretrain_record, reused=False))}); "
                   "FPN and heads start from scratch.\n\n")
    text = header + "\n".join(sections)
    atomic_write_text(os.path.join(output_dir, "ablation.md"), text)
    cli.write_json(os.path.join(output_dir, "results.json"), {
        "tool": "ablate", "preset": preset.name, "base_config": planned["base_config"],
        "max_iter": planned["max_iter"], "budget": args.budget, "seeds": planned["seeds"],
        "overrides": planned["overrides"], "train_minutes": round(train_s / 60, 1),
        "tables": results_tables, "runs": [r.to_dict() for r in records],
        "pretrain": pretrain_record.to_dict() if pretrain_record is not None else None,
    })
    return text


def main(argv: Optional[List[str]] = None) -> int:
    """Run ablate on ``argv`` (None: sys.argv[1:]); returns the exit status: 0, 1 when a run failed,
    2 on bad input (nothing trained)."""
    return cli.run_tool(argv, build_parser(), plan, _execute)


if __name__ == "__main__":
    sys.exit(main())

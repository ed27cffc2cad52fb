"""Markdown tables and pictures of experiment results: the comparison table and its speed-vs-accuracy
plot, the ablation tables, AP vs gamma, and the focal loss as a function of p_t (the paper's Fig. 1)."""
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from retinadet.utils.file_io import save_figure

from .outputs import METRIC_NAMES
from .presets import AblationTable
from .runner import DIVERGED, OK, RunRecord

__all__ = [
    "ablation_markdown",
    "ap_vs_gamma_plot",
    "comparison_markdown",
    "seed_cell",
    "seed_comparison_markdown",
    "seed_statistics",
    "focal_loss_curve_plot",
    "focal_loss_curves",
    "markdown_table",
    "result_cell",
    "save_figure",
    "speed_accuracy_plot",
]

FOCAL_CURVE_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table: ``header`` and ``rows`` of cells (each turned into text with str)."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: Optional[float], digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def result_cell(record: Optional[RunRecord]) -> str:
    """An AP cell: the AP with one decimal, "diverged (it N)", "diverged (AP NaN)", "failed" or
    "not run" (no record)."""
    if record is None:
        return "not run"
    if record.status == OK:
        return _number(record.ap)
    if record.status == DIVERGED:
        return f"diverged (it {record.diverged_at})" if record.diverged_at is not None else "diverged (AP NaN)"
    return "failed"


def _metric_cells(record: Optional[RunRecord], names: Sequence[str]) -> List[str]:
    """AP cell (with the status) then the other ``names`` metrics, "-" where there is no number."""
    first = result_cell(record)
    if record is None or record.status != OK:
        return [first] + ["-"] * (len(names) - 1)
    return [first] + [_number(record.metrics.get(n)) for n in names[1:]]


def comparison_markdown(records: Sequence[RunRecord], max_iter: Optional[int] = None) -> str:
    """The comparison table: one row per record with AP, AP50, AP75, APs, APm, APl (percent), train
    it/s, inference ms/img (model alone), peak memory MiB; failed and diverged runs say so in AP."""
    header = ["config", *METRIC_NAMES, "train it/s", "inference ms/img", "peak memory MiB"]
    rows = []
    for r in records:
        rows.append([r.name, *_metric_cells(r, METRIC_NAMES), _number(r.train_its, 2), _number(r.inference_ms, 1),
                     _number(r.peak_memory_mib, 0)])
    budget = f"Same budget: SOLVER.MAX_ITER {max_iter} for every config.\n\n" if max_iter is not None else ""
    return budget + markdown_table(header, rows)


def seed_statistics(records: Sequence[RunRecord], name: Optional[str] = None) -> Dict[str, Tuple[float, float, int]]:
    """{metric: (mean, sample standard deviation, n)} over the records that finished ("ok") with a
    finite value of the metric: the AP metrics, train_its, inference_ms and peak_memory_mib. The
    deviation is NaN with one value; a metric no record has is left out. ``name``, when given, is only
    checked: every record must be a seed of it (``RunRecord.name`` is "<name> (seed S)")."""
    stats: Dict[str, Tuple[float, float, int]] = {}
    for r in records:
        if name is not None and not r.name.startswith(name):
            raise ValueError(f"Run {r.name!r} is not a seed of {name!r}.")
    ok = [r for r in records if r.status == OK]
    columns = {m: [r.metrics.get(m) for r in ok] for m in METRIC_NAMES}
    columns.update(train_its=[r.train_its for r in ok], inference_ms=[r.inference_ms for r in ok],
                   peak_memory_mib=[r.peak_memory_mib for r in ok])
    for key, values in columns.items():
        finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if finite:
            std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
            stats[key] = (float(np.mean(finite)), std, len(finite))
    return stats


def _mean_spread(stat: Optional[Tuple[float, float, int]], digits: int = 1) -> str:
    if stat is None:
        return "-"
    mean, std, n = stat
    return _number(mean, digits) if n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def seed_comparison_markdown(groups: Sequence[Tuple[str, Sequence[RunRecord]]], max_iter: Optional[int] = None) -> str:
    """The comparison table over repeated seeds: one row per (config name, its seed records) with
    "mean ± std" (sample standard deviation over the finished seeds) of AP, AP50, AP75, APs, APm, APl,
    the mean train it/s, inference ms/img and peak memory, and "finished/total" seeds. A config none of
    whose seeds finished shows the first record's status."""
    header = ["config", "seeds", *METRIC_NAMES, "train it/s", "inference ms/img", "peak memory MiB"]
    rows = []
    for name, records in groups:
        stats = seed_statistics(records, name)
        finished = sum(r.status == OK for r in records)
        if finished == 0:
            rows.append([name, f"0/{len(records)}", result_cell(records[0] if records else None)]
                        + ["-"] * (len(header) - 3))
            continue
        rows.append([name, f"{finished}/{len(records)}", *[_mean_spread(stats.get(m)) for m in METRIC_NAMES],
                     _number(stats.get("train_its", (None,))[0], 2), _number(stats.get("inference_ms", (None,))[0], 1),
                     _number(stats.get("peak_memory_mib", (None,))[0], 0)])
    budget = f"Same budget: SOLVER.MAX_ITER {max_iter} for every config.\n\n" if max_iter is not None else ""
    note = "Metrics: mean ± sample standard deviation over the finished seeds.\n\n"
    return budget + note + markdown_table(header, rows)


def speed_accuracy_plot(records: Sequence[RunRecord], path: str, title: str = "Speed vs. accuracy") -> int:
    """Write ``path`` (PNG): inference ms/img (x) against AP (y), one labelled point per record that
    finished with both numbers. Returns the number of points drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    drawn = 0
    for r in records:
        if r.status != OK or r.inference_ms is None or math.isnan(r.ap):
            continue
        ax.scatter([r.inference_ms], [r.ap], s=40)
        ax.annotate(r.name, (r.inference_ms, r.ap), textcoords="offset points", xytext=(6, 4), fontsize=8)
        drawn += 1
    left_out = [r.name for r in records if r.status != OK]
    if left_out:
        title += f"\n(not shown: {', '.join(left_out)})"
    ax.set_xlabel("inference time (ms / image)")
    ax.set_ylabel("COCO AP")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)
    save_figure(fig, path)
    return drawn


# One ablation cell's runs: a record, the records of its seeds, or None (not run).
CellRuns = Union[None, RunRecord, Sequence[RunRecord]]


def _cell_records(runs: CellRuns) -> List[RunRecord]:
    if runs is None:
        return []
    if isinstance(runs, RunRecord):
        return [runs]
    return list(runs)


def seed_cell(runs: CellRuns, metric: str = "AP") -> str:
    """One ablation cell over the seeds of its setting: ``result_cell`` for a single run (or "not run");
    for several, "mean ± std" of ``metric`` over the finished seeds (sample standard deviation) with
    "(k/n finished)" when some did not finish, or the first unfinished run's status when none did."""
    records = _cell_records(runs)
    if len(records) <= 1:
        record = records[0] if records else None
        if metric == "AP" or record is None or record.status != OK:
            return result_cell(record)
        return _number(record.metrics.get(metric))
    stat = seed_statistics(records).get(metric)
    finished = sum(r.status == OK for r in records)
    if finished == 0:
        return result_cell(next(r for r in records if r.status != OK))
    text = _mean_spread(stat)
    return text if finished == len(records) else f"{text} ({finished}/{len(records)} finished)"


def _seed_metric_cells(runs: CellRuns, names: Sequence[str]) -> List[str]:
    """The AP cell of ``runs`` (``seed_cell``, with its status) then the other ``names`` metrics as
    "mean ± std" over the finished seeds, "-" where no seed finished."""
    first = seed_cell(runs, names[0])
    if not any(r.status == OK for r in _cell_records(runs)):
        return [first] + ["-"] * (len(names) - 1)
    stats = seed_statistics([r for r in _cell_records(runs) if r.status == OK])
    return [first] + [_mean_spread(stats.get(n)) for n in names[1:]]


def _grid_markdown(table: AblationTable, records: Sequence[CellRuns]) -> str:
    row_key, col_key = table.grid
    row_values: List[Any] = []
    col_values: List[Any] = []
    cells: Dict[tuple, CellRuns] = {}
    for row, record in zip(table.rows, records):
        r, c = row.labels[row_key], row.labels[col_key]
        if r not in row_values:
            row_values.append(r)
        if c not in col_values:
            col_values.append(c)
        cells[(r, c)] = record
    header = [f"{row_key} \\ {col_key}"] + [f"{col_key}={_label(c)}" for c in col_values]
    rows = [[_label(r)] + [seed_cell(cells.get((r, c))) if (r, c) in cells else "" for c in col_values]
            for r in row_values]
    return markdown_table(header, rows)


def ablation_markdown(table: AblationTable, records: Sequence[CellRuns]) -> str:
    """One ablation table under its title (``records[i]``: the run of ``table.rows[i]``, the runs of
    its seeds, or None if not run): a matrix of AP for a grid table, else label columns then AP, AP50,
    AP75; a cell of several seeds shows "mean ± std" (``seed_cell``)."""
    if len(records) != len(table.rows):
        raise ValueError(f"Table ({table.key}) has {len(table.rows)} rows but {len(records)} records were given.")
    if table.grid is not None:
        body = _grid_markdown(table, records)
    else:
        labels = list(table.rows[0].labels)
        names = ("AP", "AP50", "AP75")
        rows = [[_label(row.labels[k]) for k in labels] + _seed_metric_cells(rec, names)
                for row, rec in zip(table.rows, records)]
        body = markdown_table(labels + list(names), rows)
    return f"### {table.title}\n\n{body}\n"


def ap_vs_gamma_plot(table: AblationTable, records: Sequence[CellRuns], path: str,
                     gamma_key: str = "gamma", alpha_key: str = "alpha") -> int:
    """Write ``path`` (PNG): AP against gamma, one line per alpha, from a gamma x alpha ``table`` and
    its ``records`` (per row: a run, its seeds' runs, or None); a cell of several seeds is drawn at
    its mean AP with a bar of one sample standard deviation. Cells with no finished run are left
    out (and named in the title). Returns the number of points drawn."""
    plt = _pyplot()
    by_alpha: Dict[Any, List[tuple]] = {}
    left_out = []
    for row, runs in zip(table.rows, records):
        g, a = row.labels[gamma_key], row.labels[alpha_key]
        stat = seed_statistics([r for r in _cell_records(runs) if r.status == OK]).get("AP")
        if stat is not None:
            spread = 0.0 if math.isnan(stat[1]) else stat[1]
            by_alpha.setdefault(a, []).append((g, stat[0], spread))
        else:
            left_out.append(f"g={_label(g)} a={_label(a)}")
    fig, ax = plt.subplots(figsize=(6, 4.5))
    drawn = 0
    for a, points in by_alpha.items():
        points.sort()
        ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                    capsize=3, label=f"alpha = {_label(a)}")
        drawn += len(points)
    title = "AP vs. gamma"
    if left_out:
        title += f"\n(no AP: {', '.join(left_out)})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("gamma")
    ax.set_ylabel("COCO AP")
    ax.grid(True, alpha=0.3)
    if by_alpha:
        ax.legend()
    save_figure(fig, path)
    return drawn


def focal_loss_curves(p_t: np.ndarray, gammas: Sequence[float] = FOCAL_CURVE_GAMMAS) -> Dict[float, np.ndarray]:
    """The focal loss (no alpha weighting) of a ground-truth class predicted with probability
    ``p_t`` (1-D array in (0, 1]) for each gamma, computed by ``sigmoid_focal_loss`` on the logits
    ``log(p_t / (1 - p_t))`` with target 1 (in float64; p_t = 1 is taken as 1 - 1e-12)."""
    import torch

    from retinadet.modeling.losses import sigmoid_focal_loss

    p = torch.as_tensor(np.asarray(p_t, dtype=np.float64)).clamp(max=1 - 1e-12)
    if (p <= 0).any():
        raise ValueError("p_t must lie in (0, 1].")
    logits = torch.logit(p)
    targets = torch.ones_like(logits)
    return {float(g): sigmoid_focal_loss(logits, targets, alpha=-1, gamma=g).numpy() for g in gammas}


def focal_loss_curve_plot(path: str, gammas: Sequence[float] = FOCAL_CURVE_GAMMAS, num: int = 500) -> Dict[float, np.ndarray]:
    """Write ``path`` (PNG): loss against the probability of the ground-truth class, one curve per
    gamma, as the paper's Figure 1. Returns the curves (``focal_loss_curves`` on ``num`` points)."""
    plt = _pyplot()
    p = np.linspace(1.0 / num, 1.0, num)
    curves = focal_loss_curves(p, gammas)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g, loss in curves.items():
        name = "CE" if g == 0 else "FL"
        ax.plot(p, loss, label=f"gamma = {_label(g)} ({name})")
    ax.axvspan(0.6, 1.0, color="0.9", zorder=0)
    ax.text(0.8, 4.6, "well-classified\nexamples", ha="center", va="top", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.set_xlabel("probability of ground truth class p_t")
    ax.set_ylabel("loss")
    ax.set_title("Focal loss FL(p_t) = -(1 - p_t)^gamma log(p_t)", fontsize=10)
    ax.legend()
    save_figure(fig, path)
    return curves

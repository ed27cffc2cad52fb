"""The loss-curve picture of a run, drawn from its metrics.json."""
import os
from typing import Dict, List, Tuple

from .file_io import save_figure
from .writers import read_metrics

__all__ = ["plot_loss_curves"]


def _series(lines: List[Dict], predicate) -> Dict[str, Tuple[List[int], List[float]]]:
    series: Dict[str, Tuple[List[int], List[float]]] = {}
    for line in lines:
        for name, value in line.items():
            if name != "iteration" and predicate(name) and isinstance(value, (int, float)):
                xs, ys = series.setdefault(name, ([], []))
                xs.append(int(line["iteration"]) + 1)
                ys.append(float(value))
    return series


def plot_loss_curves(metrics_json: str, png_path: str) -> str:
    """Draw every ``loss*`` scalar of ``metrics_json`` against the iteration (log scale), and the
    evaluation APs (``*bbox/AP``, ``*bbox/AP50``) on a second axis; write ``png_path`` through a
    temporary file and a rename. Returns ``png_path``.

    Raises ValueError when the file holds no loss values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = read_metrics(metrics_json)
    losses = _series(lines, lambda n: "loss" in n and "/" not in n)
    if not losses:
        raise ValueError(f"{metrics_json} has no loss values to plot (no key containing 'loss').")
    aps = _series(lines, lambda n: n.endswith("bbox/AP") or n.endswith("bbox/AP50"))

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for name in sorted(losses):
        xs, ys = losses[name]
        ax.plot(xs, ys, label=name, linewidth=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (median over the logging window)")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if aps:
        ax2 = ax.twinx()
        for name in sorted(aps):
            xs, ys = aps[name]
            ax2.plot(xs, ys, marker="o", linestyle="--", label=name)
        ax2.set_ylabel("AP (%)")
        ax2.set_ylim(0, 100)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title(os.path.basename(os.path.dirname(os.path.abspath(metrics_json))) or "training")
    return save_figure(fig, png_path)

"""tools/benchmark.py's report as text and as a file: the markdown tables printed for a run, the summary
of a time-to-accuracy run, reading an earlier JSON report back (--relative-to) and writing one (--json)."""
import json
import os
from typing import Any, Dict, List, Optional

import torch

from retinadet.utils.file_io import atomic_write_json

from .options import BenchmarkError

__all__ = ["load_report", "markdown", "size_table", "time_to_accuracy_summary", "write_json"]


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def _millions(value: int) -> str:
    return f"{value / 1e6:.2f}M"


def _label(report: Dict[str, Any], name: str) -> str:
    if name == "ours":
        return f"ours ({os.path.basename(report['config_file'])})"
    if name.startswith("ours-"):  # a --backend of the eval task
        return f"ours, {name[len('ours-'):]}"
    return f"torchvision {report.get('torchvision_model') or ''}".strip()


def size_table(report: Dict[str, Any]) -> List[str]:
    """The lines of the parameters / FLOPs table of a train, eval or flops report, and the FLOP convention."""
    lines = [
        "| model | parameters | trainable | GFLOPs/image | FLOPs counted on | uncounted ops (calls) |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, f in report["models"].items():
        p, flops = f["parameters"], f["flops"]
        if flops is None:
            counted = "- | - | -"
        else:
            uncounted = ", ".join(f"{op} x{n}" for op, n in flops["uncounted_ops"].items()) or "none"
            counted = "{:.3f} | {}x{} | {}".format(flops["gflops_per_image"], *flops["image_size"], uncounted)
        lines.append(f"| {_label(report, name)} | {_millions(p['total'])} | {_millions(p['trainable'])} | {counted} |")
    lines += ["", f"FLOPs: {report['flop_convention']}."]
    return lines


def _data_table(report: Dict[str, Any]) -> List[str]:
    d = report["data"]
    low, high = d["s_per_batch_iqr"]
    return [
        "| data set | images/batch | batches/s | images/s | s/batch median (IQR) | peak RSS MiB (main process) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| {', '.join(report['datasets'])} | {d['images_per_batch']:.1f} | {d['batches_per_s']:.2f} "
        f"| {d['images_per_s']:.2f} | {d['s_per_batch']:.4f} ({low:.4f}-{high:.4f}) "
        f"| {_mib(d['peak_memory_mib'])} |",
    ]


def _speed_table(report: Dict[str, Any]) -> List[str]:
    lines = [
        "| model | images/iteration | iterations/s | images/s | s/iteration median (IQR) | s/image "
        "| peak memory MiB | step extra MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in report["models"].items():
        low, high = f["s_per_iteration_iqr"]
        lines.append(
            f"| {_label(report, name)} | {f['images_per_iteration']:.0f} | {f['iterations_per_s']:.3f} "
            f"| {f['images_per_s']:.3f} | {f['s_per_iteration']:.3f} ({low:.3f}-{high:.3f}) | {f['s_per_image']:.3f} "
            f"| {_mib(f['peak_memory_mib'])} | {_mib(f['step_extra_memory_mib'])} |"
        )
    return lines


def backend_cells(row: Dict[str, Any]) -> str:
    """The cells "s/image | x torchvision | detections | same | box diff | score diff" of one row of a
    report's "backends" table (dashes where a figure does not apply)."""
    speed = "-" if row["speedup_over_torchvision"] is None else f"{row['speedup_over_torchvision']:.2f}x"
    if "max_box_diff" in row:
        same = "yes" if row["same_count_and_labels"] else "no"
        diffs = f"{row['detections']} | {same} | {row['max_box_diff']:.2g} | {row['max_score_diff']:.2g}"
    else:
        diffs = "- | - | - | -"
    return f"{row['s_per_image']:.3f} | {speed} | {diffs}"


def _backend_table(report: Dict[str, Any]) -> List[str]:
    table = report.get("backends")
    if not table:
        return []
    lines = ["", "| model | s/image | x torchvision eager | detections | same count and labels as eager "
             "| max box diff px | max score diff |", "|---|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {_label(report, name)} | {backend_cells(row)} |" for name, row in table.items()]
    return lines


def _ratio_tables(report: Dict[str, Any]) -> List[str]:
    lines = []
    ratio = report.get("ours_over_torchvision")
    if ratio:
        low, high = ratio["time_iqr"]
        extra = "-" if ratio["step_extra_memory"] is None else f"{ratio['step_extra_memory']:.2f}"
        lines += [
            "",
            "| ours / torchvision | time per iteration (IQR of paired ratios) | peak memory | step extra memory |",
            "|---|---:|---:|---:|",
            f"| {report['task']} | {ratio['time']:.3f} ({low:.2f}-{high:.2f}) | {ratio['peak_memory']:.2f} | {extra} |",
        ]
    relative = report.get("relative")
    if relative:
        other = os.path.basename(relative["other_config_file"] or relative["other"])
        header = [f"s/iteration: this / {other}"] + [_label(report, name) for name in relative["time"]]
        values = [report["task"]] + [f"{v:.3f}" for v in relative["time"].values()]
        if "ours_over_torchvision" in relative:
            header.append("ours' ratio / torchvision's ratio")
            values.append(f"{relative['ours_over_torchvision']:.3f}")
        lines += ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
                  "| " + " | ".join(values) + " |"]
    return lines


def markdown(report: Dict[str, Any]) -> str:
    """The text printed for ``report`` (a train, eval, flops or data report): a header line (versions,
    device, threads, load average), the run's line, then its markdown tables."""
    load = report["load_average"]
    versions = f"torch {report['torch']}" + (f", torchvision {report['torchvision']}" if report["torchvision"] else "")
    timed = f", {report['iters']} timed iterations after {report['warmup']} warm-up"
    if report["task"] == "flops":
        timed = ""
    lines = [
        f"{versions}, device {report['device']}, {report['threads']} threads; 1-min load average "
        f"{load['before']:.2f} before, {load['after']:.2f} after",
        "",
        f"`{report['config_file']}`, task {report['task']}, input {report['input']}"
        + (" {}x{}".format(*report["image_size"]) if report.get("image_size") else "")
        + timed,
        "",
    ]
    if report["task"] == "data":
        return "\n".join(lines + _data_table(report))
    if report["task"] == "flops":
        return "\n".join(lines + size_table(report))
    lines += _speed_table(report) + _ratio_tables(report) + _backend_table(report) + [""] + size_table(report)
    last = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in f["last"].items()) for name, f in report["models"].items()
    )
    lines += ["", f"Last timed iteration: {last}."]
    return "\n".join(lines)


def time_to_accuracy_summary(report: Dict[str, Any], config_file: str) -> str:
    """The text printed for a time-to-accuracy ``report`` of ``config_file``: its setup time, the table of
    minutes -> iteration, images and AP, and the files written."""
    from retinadet.experiments.time_to_accuracy import markdown_table

    return "\n".join([
        f"Time to accuracy of {config_file} (torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"setup {report['setup_seconds']:.1f} s before minute 0):",
        markdown_table(report["points"]),
        f"Written: {report['json']} and {report['png']}",
    ])


def load_report(path: str, task: str) -> Dict[str, Any]:
    """The --json report at ``path``, for --relative-to; BenchmarkError unless it is readable and of ``task``
    (which must be train or eval)."""
    if task not in ("train", "eval"):
        raise BenchmarkError(f"--relative-to applies to --task train and --task eval, not {task}.")
    try:
        with open(path) as f:
            other = json.load(f)
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"--relative-to {path!r}: cannot read a JSON report ({e}).") from e
    if not isinstance(other, dict) or not isinstance(other.get("models"), dict):
        raise BenchmarkError(f"--relative-to {path!r} is not a report written by --json (no 'models').")
    if other.get("task") != task:
        raise BenchmarkError(f"--relative-to {path!r} has task {other.get('task')!r} but this run has {task!r}.")
    return other


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Write ``data`` to ``path`` as indented JSON, atomically (retinadet.utils.file_io)."""
    atomic_write_json(path, data, indent=2)

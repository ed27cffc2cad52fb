"""COCO box evaluation speed and memory: pycocotools, faster-coco-eval and retinadet's COCOeval, each
in a fresh process on the same ground truth and detections.

Two starting points (``mode``):
- ``list``: a results list (as read from a results json) -> loadRes -> evaluate -> accumulate ->
  summarize -> stats;
- ``memory``: detections already in memory, as a detector returns them (tensors; for pycocotools and
  faster-coco-eval their (N, 7) numpy form, which their loadRes takes) -> stats, no json.

Each run is one child process (``python -m retinadet.benchmark.coco_eval --child ...``), so its
peak RSS is its own: the inputs (ground truth index, results) plus what the evaluator adds.
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from retinadet.benchmark.memory import proc_status_mib
from retinadet.utils.file_io import atomic_write_json

__all__ = ["EVALUATORS", "CASES", "make_case", "run_once", "run_benchmark"]

# The evaluators compared, in table order. "retinadet-1t" is ours on one thread.
EVALUATORS = ("pycocotools", "faster-coco-eval", "retinadet-1t", "retinadet")
# name -> random_coco arguments. "coco": the size of COCO val2017 (5,000 images, about 35k objects and
# 280k detections, 80 categories); "shapes": the same counts over the shapes set's 6 categories.
CASES = {
    "coco": {"num_images": 5000, "num_categories": 80, "gt_per_image": 7.8, "dt_per_image": 63.0},
    "shapes": {"num_images": 5000, "num_categories": 6, "gt_per_image": 7.8, "dt_per_image": 63.0},
}
QUICK_IMAGES = 500


def make_case(folder: str, case: str, num_images: Optional[int] = None, seed: int = 0) -> Dict[str, Any]:
    """Write ``case``'s ground truth (gt.json), results (results.json) and their (N, 7) array
    (results.npy) into ``folder``, with ``num_images`` images instead of the case's when given;
    returns their paths and counts."""
    from retinadet.utils.random_coco import random_coco

    arguments = dict(CASES[case])
    if num_images:
        arguments["num_images"] = num_images
    dataset, results = random_coco(seed=seed, **arguments)
    os.makedirs(folder, exist_ok=True)
    paths = {name: os.path.join(folder, f"{case}_{name}") for name in ("gt.json", "results.json", "results.npy")}
    atomic_write_json(paths["gt.json"], dataset)
    atomic_write_json(paths["results.json"], results)
    rows = np.array([[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in results], dtype=np.float64)
    np.save(paths["results.npy"], rows)
    return {"paths": paths, "images": len(dataset["images"]), "objects": len(dataset["annotations"]),
            "detections": len(results), "categories": len(dataset["categories"])}


def _as_detector_output(rows: np.ndarray) -> Any:
    """(N, 7) [image_id, x, y, w, h, score, category_id] as a detector hands them over: tensors."""
    import torch

    rows = torch.from_numpy(rows)
    return rows[:, 0].long(), rows[:, 1:5].clone(), rows[:, 5].clone(), rows[:, 6].long()


def _tensors_to_rows(image_ids: Any, boxes: Any, scores: Any, category_ids: Any) -> np.ndarray:
    """The (N, 7) numpy form pycocotools' and faster-coco-eval's loadRes take, from tensors."""
    import torch

    return torch.cat([image_ids[:, None].double(), boxes.double(), scores[:, None].double(),
                      category_ids[:, None].double()], dim=1).numpy()


def run_once(evaluator: str, mode: str, gt_json: str, results_json: str, results_npy: str) -> Dict[str, Any]:
    """One measured evaluation in this process: seconds (load, evaluate + accumulate + summarize,
    total), the 12 stats, the RSS before and this process's peak RSS (MiB: VmHWM, which a child does
    not inherit from its parent, unlike ru_maxrss).

    In ``memory`` mode every evaluator starts from tensors (torch is loaded, as in a detector's
    process); pycocotools and faster-coco-eval get them as the (N, 7) array their loadRes takes.
    """
    with open(gt_json) as f:
        dataset = json.load(f)
    if mode == "list":
        with open(results_json) as f:
            results: Any = json.load(f)
    else:
        results = _as_detector_output(np.load(results_npy))
    with contextlib.redirect_stdout(io.StringIO()):
        if evaluator == "faster-coco-eval":
            from faster_coco_eval import COCO, COCOeval_faster

            gt = COCO(dataset)
            make = lambda dt: COCOeval_faster(gt, dt, "bbox", print_function=lambda *a: None)  # noqa: E731
        elif evaluator == "pycocotools":
            from pycocotools.cocoeval import COCOeval as ReferenceCOCOeval

            from retinadet.utils.random_coco import coco_from_dict

            gt = coco_from_dict(dataset)
            make = lambda dt: ReferenceCOCOeval(gt, dt, "bbox")  # noqa: E731
        else:
            from retinadet.evaluation import COCOeval, DetectionResults, load_results
            from retinadet.utils.random_coco import coco_from_dict

            gt = coco_from_dict(dataset)
            threads = 1 if evaluator == "retinadet-1t" else None
            make = lambda dt: COCOeval(gt, dt, "bbox", num_threads=threads)  # noqa: E731

        def load(res):
            if evaluator.startswith("retinadet"):
                return DetectionResults.from_arrays(gt, *res) if mode == "memory" else load_results(gt, res)
            return gt.loadRes(_tensors_to_rows(*res) if mode == "memory" else res)

        del dataset
        rss_before = proc_status_mib("VmRSS")
        start = time.perf_counter()
        detections = load(results)
        loaded = time.perf_counter()
        evaluation = make(detections)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        done = time.perf_counter()
    return {"load_s": loaded - start, "evaluate_s": done - loaded, "total_s": done - start,
            "stats": [float(v) for v in evaluation.stats], "rss_before_mib": rss_before,
            "peak_rss_mib": proc_status_mib("VmHWM")}


def _child(evaluator: str, mode: str, paths: Dict[str, str]) -> Dict[str, Any]:
    """``run_once`` in a fresh interpreter; its result, or {"error": ...}."""
    command = [sys.executable, "-m", "retinadet.benchmark.coco_eval", "--child", evaluator, mode,
               paths["gt.json"], paths["results.json"], paths["results.npy"]]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def available(evaluator: str) -> Optional[str]:
    """None when ``evaluator`` can run here, else why not."""
    if evaluator == "faster-coco-eval":
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError:
            return "not installed (pip install faster-coco-eval)"
    if evaluator.startswith("retinadet"):
        from retinadet.evaluation import compiled

        if not compiled.extension_loaded():
            return f"compiled evaluator not loaded: {compiled.extension_load_error()}"
    return None


def run_benchmark(folder: str, cases: Sequence[str], modes: Sequence[str], evaluators: Sequence[str],
                  rounds: int, num_images: Optional[int] = None) -> Dict[str, Any]:
    """Every (case, mode, evaluator), ``rounds`` times in alternating order; medians and peaks."""
    report: Dict[str, Any] = {"rounds": rounds, "cases": {}}
    for case in cases:
        data = make_case(folder, case, num_images=num_images)
        rows: List[Dict[str, Any]] = []
        for mode in modes:
            runs: Dict[str, List[Dict[str, Any]]] = {e: [] for e in evaluators if available(e) is None}
            for _ in range(rounds):
                for evaluator in runs:
                    runs[evaluator].append(_child(evaluator, mode, data["paths"]))
            for evaluator in evaluators:
                rows.append(_summarise(case, mode, evaluator, runs.get(evaluator), available(evaluator)))
        _add_ratios(rows)
        report["cases"][case] = {key: data[key] for key in ("images", "objects", "detections", "categories")}
        report["cases"][case]["rows"] = rows
    return report


def _summarise(case: str, mode: str, evaluator: str, runs: Optional[List[Dict[str, Any]]],
               unavailable: Optional[str]) -> Dict[str, Any]:
    row: Dict[str, Any] = {"case": case, "mode": mode, "evaluator": evaluator}
    if unavailable or not runs:
        row["error"] = unavailable or "no run"
        return row
    errors = [r["error"] for r in runs if "error" in r]
    if errors:
        row["error"] = str(errors[0])
        return row
    for key in ("load_s", "evaluate_s", "total_s"):
        row[key] = float(np.median([r[key] for r in runs]))
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    row["rss_before_mib"] = float(np.median([r["rss_before_mib"] for r in runs]))
    row["stats"] = runs[0]["stats"]
    row["stats_repeatable"] = all(r["stats"] == runs[0]["stats"] for r in runs)
    return row


def _add_ratios(rows: List[Dict[str, Any]]) -> None:
    """Each row's speed-up over pycocotools and over faster-coco-eval (same mode), and the largest
    difference of its stats from pycocotools'."""
    by_key = {(r["mode"], r["evaluator"]): r for r in rows if "total_s" in r}
    for row in rows:
        if "total_s" not in row:
            continue
        for reference in ("pycocotools", "faster-coco-eval"):
            other = by_key.get((row["mode"], reference))
            if other:
                row[f"speedup_vs_{reference}"] = other["total_s"] / row["total_s"]
        reference_row = by_key.get((row["mode"], "pycocotools"))
        if reference_row:
            row["max_stats_diff"] = float(np.max(np.abs(np.subtract(row["stats"], reference_row["stats"]))))


def markdown(report: Dict[str, Any]) -> str:
    """The report as one markdown table per case."""
    lines = []
    for case, data in report["cases"].items():
        lines += [f"\n{case}: {data['images']} images, {data['objects']} objects, {data['detections']} detections, "
                  f"{data['categories']} categories (median of {report['rounds']})\n",
                  "| start | evaluator | load s | evaluate s | total s | vs pycocotools | vs faster-coco-eval "
                  "| RSS before MiB | peak RSS MiB | stats - pycocotools |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in data["rows"]:
            if "error" in r:
                lines.append(f"| {r['mode']} | {r['evaluator']} | {r['error']} |||||||")
                continue
            speedups = [f"{r[key]:.1f}x" if key in r else "-"
                        for key in ("speedup_vs_pycocotools", "speedup_vs_faster-coco-eval")]
            diff = r.get("max_stats_diff")
            lines.append(f"| {r['mode']} | {r['evaluator']} | {r['load_s']:.2f} | {r['evaluate_s']:.2f} | "
                         f"{r['total_s']:.2f} | {speedups[0]} | {speedups[1]} | {r['rss_before_mib']:.0f} | "
                         f"{r['peak_rss_mib']:.0f} | {'-' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The child entry point: ``--child EVALUATOR MODE GT_JSON RESULTS_JSON RESULTS_NPY`` prints one json line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=5, required=True)
    args = parser.parse_args(argv)
    evaluator, mode, gt_json, results_json, results_npy = args.child
    print(json.dumps(run_once(evaluator, mode, gt_json, results_json, results_npy)))


if __name__ == "__main__":
    main()

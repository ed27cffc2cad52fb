#!/usr/bin/env python
"""CPU inference of a RetinaNet by every backend against torchvision's eager model, at two sizes, in one run.

For each size, tools/benchmark.py's eval task (retinadet.benchmark.tasks.run_benchmark) times the
whole detector (pre-processing, network, post-processing) run eagerly, by each --backend (exported at
start-up and checked against the eager model) and torchvision's retinanet_resnet50_fpn on the same
random images, in turns, and compares each backend's detections with the eager model's. Prints one
markdown table: s/image, speed over torchvision's eager model, peak RSS, and the detection differences.

    python benchmarks/inference.py                                    # R50-FPN, 512x512 and 800x1216
    python benchmarks/inference.py --sizes 512 512 --iters 3 --backend onnxruntime openvino
"""
import argparse
import sys

import torch

from retinadet.benchmark import BenchmarkOptions
from retinadet.benchmark.report import backend_cells
from retinadet.benchmark.tasks import run_benchmark
from retinadet.utils.file_io import atomic_write_json

DEFAULT_CONFIG = "configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml"
DEFAULT_BACKENDS = ["eager", "torchscript", "onnxruntime", "openvino", "openvino:bfloat16"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 512, 800, 1216],
                        help="H W pairs of the synthetic images (default 512 512 800 1216)")
    parser.add_argument("--backend", nargs="+", default=DEFAULT_BACKENDS, help="backends besides eager")
    parser.add_argument("--iters", type=int, default=6, help="timed images per model and size (default 6)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the reports here")
    args = parser.parse_args(argv)
    if len(args.sizes) % 2:
        parser.error(f"--sizes takes H W pairs; got {args.sizes}.")
    return args


def table(reports) -> str:
    """One markdown table of the reports' backend rows, size by size."""
    lines = ["| input | model | s/image | x torchvision eager | detections | same count and labels "
             "| max box diff px | max score diff | process peak RSS MiB |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    names = {"ours": "ours, eager", "torchvision": "torchvision eager"}
    for report in reports:
        size = "{}x{}".format(*report["image_size"])
        for name, row in report["backends"].items():
            label = names.get(name, name.replace("ours-", "ours, "))
            memory = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
            lines.append(f"| {size} | {label} | {backend_cells(row)} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    reports = []
    for h, w in zip(args.sizes[0::2], args.sizes[1::2]):
        options = BenchmarkOptions(config_file=args.config_file, task="eval", input="synthetic", size=(h, w),
                                   compare_torchvision=True, no_flops=True, iters=args.iters, warmup=args.warmup,
                                   backend=["eager"] + [b for b in args.backend if b != "eager"])
        reports.append(run_benchmark(options))
        print(f"{h}x{w} done", file=sys.stderr)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.iters} timed images per model and size "
          f"after {args.warmup} warm-up, models run in turns")
    print(table(reports))
    if args.json:
        atomic_write_json(args.json, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())

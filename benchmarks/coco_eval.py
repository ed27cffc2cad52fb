#!/usr/bin/env python
"""COCO box evaluation: pycocotools, faster-coco-eval and retinadet's COCOeval in the same run.

Each evaluation runs in a fresh process on the same random data (retinadet.utils.random_coco: crowd
regions, tiny and huge boxes, tied scores, images without objects or detections, categories
without objects), from a results list and from detections in memory, and reports seconds (median of
``--rounds``), peak RSS and the largest difference of its 12 stats from pycocotools'. faster-coco-eval
is installed for this benchmark only (``pip install faster-coco-eval``); without it its rows say so.

    python benchmarks/coco_eval.py                       # COCO's size and the shapes set's 6 classes
    python benchmarks/coco_eval.py --quick               # 500 images, seconds
    python benchmarks/coco_eval.py --cases coco --evaluators faster-coco-eval retinadet --rounds 5
"""
import argparse
import os
import sys
import tempfile

from retinadet.benchmark.coco_eval import CASES, EVALUATORS, QUICK_IMAGES, markdown, run_benchmark
from retinadet.utils.file_io import atomic_write_json


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["coco", "shapes"])
    parser.add_argument("--modes", nargs="+", choices=["list", "memory"], default=["list", "memory"],
                        help="start from a results list (loadRes included) or from detections in memory")
    parser.add_argument("--evaluators", nargs="+", choices=EVALUATORS, default=list(EVALUATORS))
    parser.add_argument("--rounds", type=int, default=3, help="runs of each evaluator, in alternating order")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_IMAGES} images instead of 5000")
    parser.add_argument("--json", help="also write the report here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        report = run_benchmark(folder, args.cases, args.modes, args.evaluators, args.rounds,
                               num_images=QUICK_IMAGES if args.quick else None)
    report["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(f"COCO evaluation, {os.cpu_count()} CPUs, 1-min load average {load_before:.2f} before, "
          f"{report['load_average']['after']:.2f} after")
    print(markdown(report))
    if args.json:
        atomic_write_json(args.json, report)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Speed, peak memory, parameters and FLOPs of a config's model, or speed of its training data loader.

Tasks:
  train             --warmup untimed, then --iters timed training steps (forward, summed loss_* terms,
                    backward, the config's optimizer at learning rate 0) on SOLVER.IMS_PER_BATCH images
  eval              the same for inference under no_grad on TEST.IMS_PER_BATCH images (MODEL.WEIGHTS if set)
  flops             parameters and FLOPs only, nothing timed
  data              --warmup, then --iters batches of the training loader (needs DATASETS.TRAIN)
  time-to-accuracy  trains as tools/train_net.py, evaluating DATASETS.TEST every --interval minutes

Train, eval and flops run on --input synthetic (random images of --size H W, default the config's test
size) or dataset (the config's loaders; the default when its data sets are registered), and also report
parameters and fvcore FLOPs per image (one multiply-add = one flop). --compare-torchvision times
torchvision's counterpart of an R50-FPN config on the same batches. Prints a header line and markdown
tables; --json OUT writes the figures. benchmarks/README.md explains every figure, the comparison and
--relative-to; the measurement code is in retinadet/benchmark/.
"""
import argparse
import sys
from dataclasses import fields
from typing import Optional, Sequence, Tuple

import torch

from retinadet.benchmark import BenchmarkError, BenchmarkOptions
from retinadet.benchmark.options import INPUTS, TASKS
from retinadet.benchmark.report import markdown, time_to_accuracy_summary, write_json
from retinadet.benchmark.tasks import run_benchmark, run_time_to_accuracy_task

EXAMPLES = """examples:
  python tools/benchmark.py --config-file configs/quick/retinanet_R_18_synthetic.yaml --task train
  python tools/benchmark.py --config-file configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml \\
      --task eval --compare-torchvision --iters 5 --warmup 1
  python tools/benchmark.py --config-file configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml --task eval \
      --input synthetic --size 512 512 --compare-torchvision --backend onnxruntime openvino
  python tools/benchmark.py --config-file configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml --task flops
  python tools/benchmark.py --config-file configs/shapes/retinanet_R_18_FPN.yaml --task data \\
      DATASETS.ROOT /tmp/datasets
  python tools/benchmark.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \\
      --task time-to-accuracy --interval 1

See benchmarks/README.md for what is measured and how."""


def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the YAML config")
    parser.add_argument("--task", required=True, choices=TASKS, help="what to time")
    parser.add_argument("--input", choices=INPUTS,
                        help="train/eval input (default: dataset when the config's data sets are registered)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="synthetic image size")
    parser.add_argument("--compare-torchvision", action="store_true",
                        help="also time torchvision's retinanet_resnet50_fpn (RetinaNet configs) or "
                        "fasterrcnn_resnet50_fpn (GeneralizedRCNN configs) on the same batches")
    parser.add_argument("--backend", nargs="+", default=["eager"], metavar="NAME",
                        help="eval: also time the model run by these (eager, compile, torchscript, onnxruntime, "
                        "openvino; ':bfloat16' after eager, compile or openvino), with their detections "
                        "compared with the eager model's")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count of train and eval")
    parser.add_argument("--relative-to", metavar="JSON",
                        help="an earlier --json report (same task, size, batch, device, threads) to divide "
                        "this run's seconds per iteration by")
    parser.add_argument("--device", help="cpu or cuda (default: MODEL.DEVICE)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    parser.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    parser.add_argument("--minutes", type=float,
                        help="time-to-accuracy: stop training after this many minutes (default: whole schedule)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="time-to-accuracy: minutes of training between evaluations (default 1)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.IMS_PER_BATCH 2")
    return parser, parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, run the task, print its tables (and write --json); returns 0, or exits with
    status 2 and a message for a request the benchmark cannot serve."""
    parser, args = parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error(f"--iters and --threads must be >= 1 and --warmup >= 0; got {args.iters}, {args.threads}, "
                     f"{args.warmup}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        options = BenchmarkOptions(**{f.name: getattr(args, f.name) for f in fields(BenchmarkOptions)})
        if options.task == "time-to-accuracy":
            report = run_time_to_accuracy_task(options)
            text = time_to_accuracy_summary(report, options.config_file)
        else:
            report = run_benchmark(options)
            text = markdown(report)
    except BenchmarkError as e:
        parser.error(str(e))
    print(text)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

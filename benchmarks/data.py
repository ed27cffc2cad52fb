#!/usr/bin/env python
"""Data path speed: training-loader throughput on the embedded shapes set, and COCO evaluation time.

1. Loader: ``build_detection_train_loader`` on the shapes set (``--split``, generated under
   ``--root`` on first use) with images resized to a 512 px short side (cap 853), batches of
   ``--batch`` images, with 0 and with 2 worker processes. After ``--warmup`` batches (worker
   start-up), ``--batches`` batches are timed; the figure is images per second.
2. Evaluation: ``COCOEvaluator`` on ``--eval-images`` synthetic images (7 gt boxes each, 6 classes)
   with 100 detections per image (jittered copies of the gt and random boxes): the time of
   ``process()`` for all images and of ``evaluate()`` (writing the results file, then evaluate,
   accumulate and summarize), with each backend (``TEST.EVALUATOR_BACKEND``: fast, pycocotools).
   benchmarks/coco_eval.py compares the evaluators themselves.

    python benchmarks/data.py                  # both parts
    python benchmarks/data.py --part loader    # one part
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch

from retinadet.benchmark.timing import SplitTimer, time_loader
from retinadet.config import get_cfg
from retinadet.data import MetadataCatalog, build_detection_train_loader
from retinadet.data.shapes import register_shapes
from retinadet.evaluation import COCOEvaluator
from retinadet.utils.file_io import atomic_write_json


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "loader", "eval"], default="all")
    parser.add_argument("--root", default="./datasets", help="DATASETS.ROOT holding (or receiving) the shapes set")
    parser.add_argument("--split", choices=["shapes_train", "shapes_val"], default="shapes_val")
    parser.add_argument("--batch", type=int, default=8, help="images per batch")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--batches", type=int, default=20, help="timed batches")
    parser.add_argument("--eval-images", type=int, default=5000, help="images in the evaluation case")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    return parser.parse_args(argv)


def loader_throughput(root: str, split: str, workers: int, batch: int, warmup: int, batches: int) -> float:
    """Images per second of the training loader (shapes set at 512 px) with ``workers`` processes."""
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.ROOT", root, "DATASETS.TRAIN", f"('{split}',)", "INPUT.MIN_SIZE_TRAIN", "(512,)",
                         "INPUT.MAX_SIZE_TRAIN", "853", "SOLVER.IMS_PER_BATCH", str(batch),
                         "DATALOADER.NUM_WORKERS", str(workers), "SEED", "0"])
    return time_loader(iter(build_detection_train_loader(cfg)), warmup, batches).items_per_s


def _coco_case(folder: str, num_images: int, seed: int = 0):
    """A gt json of ``num_images`` images and, per image, 100 detections as model outputs."""
    rng = np.random.default_rng(seed)
    images, annotations, inputs, outputs = [], [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 480, "width": 640})
        xy = rng.uniform(0, [560, 400], (7, 2))
        wh = rng.uniform(8, 160, (7, 2))
        labels = rng.integers(0, 6, 7)
        for k in range(7):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(labels[k]) + 1,
                                "bbox": [*xy[k].tolist(), *wh[k].tolist()], "area": float(wh[k].prod()), "iscrowd": 0})
        gt = np.concatenate([xy, xy + wh], axis=1)
        jitter = gt[rng.integers(0, 7, 60)] + rng.normal(0, 6, (60, 4))
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2])  # as a detector's boxes: x2 >= x1, y2 >= y1
        noise_xy = rng.uniform(0, [560, 400], (40, 2))
        noise = np.concatenate([noise_xy, noise_xy + rng.uniform(8, 160, (40, 2))], axis=1)
        boxes = torch.tensor(np.concatenate([jitter, noise]), dtype=torch.float32)
        inputs.append({"image_id": image_id})
        outputs.append({"boxes": boxes, "scores": torch.tensor(rng.uniform(0, 1, 100), dtype=torch.float32),
                        "labels": torch.tensor(np.concatenate([labels[rng.integers(0, 7, 60)],
                                                               rng.integers(0, 6, 40)]), dtype=torch.int64)})
    categories = [{"id": k + 1, "name": f"class{k}"} for k in range(6)]
    json_file = os.path.join(folder, "gt.json")
    atomic_write_json(json_file, {"images": images, "annotations": annotations, "categories": categories})
    return json_file, inputs, outputs


def evaluation_time(num_images: int, backend: str = "fast") -> dict:
    """Seconds of COCOEvaluator.process (all images) and evaluate on a synthetic case, with ``backend``."""
    with tempfile.TemporaryDirectory() as folder:
        json_file, inputs, outputs = _coco_case(folder, num_images)
        name = "benchmark_coco_eval"
        MetadataCatalog.remove(name)
        MetadataCatalog.get(name).set(json_file=json_file, thing_classes=[f"class{k}" for k in range(6)],
                                      thing_dataset_id_to_contiguous_id={k + 1: k for k in range(6)})
        evaluator = COCOEvaluator(name, output_dir=folder, distributed=False, backend=backend)
        evaluator.reset()
        timer = SplitTimer()
        with timer("process"):
            for item, output in zip(inputs, outputs):
                evaluator.process([item], [output])
        with timer("evaluate"):
            results = evaluator.evaluate()
    return {"process_s": timer.seconds["process"], "evaluate_s": timer.seconds["evaluate"],
            "AP": results["bbox"]["AP"]}


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}; {os.cpu_count()} CPUs; {args.threads} torch threads; "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.part in ("all", "loader"):
        register_shapes(args.root)
        print(f"\nTraining loader, {args.split} at 512 px, batches of {args.batch}:\n")
        print("| workers | images/s |\n|---:|---:|")
        for workers in (0, 2):
            rate = loader_throughput(args.root, args.split, workers, args.batch, args.warmup, args.batches)
            print(f"| {workers} | {rate:.1f} |")
    if args.part in ("all", "eval"):
        print(f"\nCOCOEvaluator on {args.eval_images} images x 100 detections:\n")
        print("| backend | process s | evaluate s (results file, evaluate, accumulate, summarize) | AP |\n"
              "|---|---:|---:|---:|")
        for backend in ("fast", "pycocotools"):
            timing = evaluation_time(args.eval_images, backend)
            print(f"| {backend} | {timing['process_s']:.2f} | {timing['evaluate_s']:.2f} | {timing['AP']:.3f} |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

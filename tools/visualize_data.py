#!/usr/bin/env python
"""Draw the ground truth of a data set into PNGs: as annotated, or as the training loader yields it.

    python tools/visualize_data.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \
        --source annotation --output-dir out/gt --num-images 10

--source annotation draws each image of DATASETS.TRAIN[0] (or --dataset) with its boxes as
loaded; --source dataloader draws the training loader's images after resizing and flipping, with
the boxes that follow them. Crowd regions are drawn with the caption "crowd".
"""
import argparse
import os
import sys
from typing import Optional, Sequence

import numpy as np

from retinadet.config import get_cfg
from retinadet.data import (
    DatasetCatalog, MetadataCatalog, build_detection_train_loader, read_image, register_builtin_datasets,
)
from retinadet.utils.visualizer import draw_boxes, save_png


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="YAML config naming the data sets")
    parser.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    parser.add_argument("--dataset", default=None, help="registered data set (default: DATASETS.TRAIN[0])")
    parser.add_argument("--output-dir", required=True, help="folder for the PNGs")
    parser.add_argument("--num-images", type=int, default=10, help="how many images to draw")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def _as_rgb(image: np.ndarray, image_format: str) -> np.ndarray:
    return image[:, :, ::-1].copy() if image_format == "BGR" else image


def draw_annotations(dataset_dicts, class_names, out_dir: str, limit: int) -> int:
    """Draw the first ``limit`` images of ``dataset_dicts`` with their boxes; returns how many."""
    for record in dataset_dicts[:limit]:
        crowd = record["iscrowd"].astype(bool)
        image = read_image(record["file_name"], "RGB")
        image = draw_boxes(image, record["boxes"][~crowd], record["labels"][~crowd].tolist(), None, class_names)
        if crowd.any():
            image = draw_boxes(image, record["boxes"][crowd], [0] * int(crowd.sum()), None, ["crowd"])
        save_png(image, os.path.join(out_dir, f"{record['image_id']}.png"))
    return min(limit, len(dataset_dicts))


def draw_loader(cfg, class_names, out_dir: str, limit: int) -> int:
    """Draw ``limit`` images as the training loader yields them; returns how many."""
    count = 0
    for batch in build_detection_train_loader(cfg):
        for item in batch:
            image = _as_rgb(item["image"].permute(1, 2, 0).numpy(), cfg.INPUT.FORMAT)
            image = draw_boxes(np.ascontiguousarray(image), item["boxes"].numpy(), item["labels"].tolist(),
                               None, class_names)
            save_png(image, os.path.join(out_dir, f"{item['image_id']}_{count}.png"))
            count += 1
            if count == limit:
                return count
    return count


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.config_file):
        sys.exit(f"--config-file {args.config_file} does not exist.")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    register_builtin_datasets(cfg)
    name = args.dataset or (cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else None)
    if name is None:
        sys.exit("No data set: pass --dataset or set DATASETS.TRAIN in the config.")
    dataset_dicts = DatasetCatalog.get(name)
    class_names = MetadataCatalog.get(name).get("thing_classes")
    os.makedirs(args.output_dir, exist_ok=True)
    if args.source == "annotation":
        count = draw_annotations(dataset_dicts, class_names, args.output_dir, args.num_images)
    else:
        cfg.DATASETS.TRAIN = (name,)
        count = draw_loader(cfg, class_names, args.output_dir, args.num_images)
    print(f"Drew {count} images of '{name}' ({args.source}) into {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

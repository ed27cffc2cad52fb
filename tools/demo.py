#!/usr/bin/env python
"""Run a detector on image files and draw its predictions (boxes, class names, scores) into PNGs.

    python tools/demo.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \
        --input img1.png img2.jpg --output out/ MODEL.WEIGHTS output/model_final.pth

Images are read like the data loader reads them (EXIF orientation, INPUT.FORMAT channel order)
and resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST; boxes are drawn on the original image.
Class names come from the metadata of DATASETS.TEST[0] (or DATASETS.TRAIN[0]) when registered.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch

from retinadet.config import get_cfg
from retinadet.data import MetadataCatalog, read_image, register_builtin_datasets
from retinadet.data.mapper import build_augmentations
from retinadet.modeling import build_model
from retinadet.utils.visualizer import draw_boxes, save_png


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="YAML config of the model")
    parser.add_argument("--input", nargs="+", required=True, help="image files")
    parser.add_argument("--output", required=True, help="folder for the drawn PNGs")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def class_names(cfg) -> Optional[List[str]]:
    """The class names of the config's first test (else training) data set, when it is registered."""
    register_builtin_datasets(cfg)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        names = MetadataCatalog.get(name).get("thing_classes")
        if names:
            return list(names)
    return None


def predict(model, cfg, path: str) -> dict:
    """Detections of one image file: {"boxes" (D, 4) xyxy original pixels, "scores", "labels"}."""
    image = read_image(path, cfg.INPUT.FORMAT)
    height, width = image.shape[:2]
    resized = image
    for augmentation in build_augmentations(cfg, is_train=False):
        resized = augmentation.get_transform((resized.shape[0], resized.shape[1]), np.random.default_rng(0)).apply_image(resized)
    tensor = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    with torch.no_grad():
        return model([{"image": tensor, "height": height, "width": width}])[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if not os.path.isfile(args.config_file):
        sys.exit(f"--config-file {args.config_file} does not exist.")
    missing = [p for p in args.input if not os.path.isfile(p)]
    if missing:
        sys.exit(f"--input: these files do not exist: {missing}")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    model = build_model(cfg).eval()
    names = class_names(cfg)
    os.makedirs(args.output, exist_ok=True)
    for path in args.input:
        detections = predict(model, cfg, path)
        keep = detections["scores"] >= args.confidence_threshold
        boxes = detections["boxes"][keep].cpu().numpy()
        labels = detections["labels"][keep].tolist()
        scores = detections["scores"][keep].tolist()
        drawn = draw_boxes(read_image(path, "RGB"), boxes, labels, scores, names)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        save_png(drawn, out)
        print(f"{path}: {len(boxes)} detections >= {args.confidence_threshold} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

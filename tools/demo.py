#!/usr/bin/env python
"""Run a detector on image files and draw its predictions (boxes, class names, scores) into PNGs.

    python tools/demo.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \
        --input img1.png img2.jpg --output out/ MODEL.WEIGHTS output/model_final.pth

Each image goes through retinadet.engine.DefaultPredictor: read like the data loader reads it (EXIF
orientation, INPUT.FORMAT channel order), resized to INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST; boxes are
drawn on the original image. Class names come from the checkpoint (else the config's data sets).
"""
import argparse
import os
import sys
from typing import Optional, Sequence

from retinadet.config import get_cfg
from retinadet.data import read_image
from retinadet.engine import DefaultPredictor
from retinadet.utils.visualizer import draw_boxes, save_png


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="YAML config of the model")
    parser.add_argument("--input", nargs="+", required=True, help="image files")
    parser.add_argument("--output", required=True, help="folder for the drawn PNGs")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="draw detections scoring at least this")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


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
    predictor = DefaultPredictor(cfg)
    os.makedirs(args.output, exist_ok=True)
    for path in args.input:
        detections = predictor(path)
        keep = detections["scores"] >= args.confidence_threshold
        boxes = detections["boxes"][keep].cpu().numpy()
        labels = detections["labels"][keep].tolist()
        scores = detections["scores"][keep].tolist()
        drawn = draw_boxes(read_image(path, "RGB"), boxes, labels, scores, predictor.class_names)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
        save_png(drawn, out)
        print(f"{path}: {len(boxes)} detections >= {args.confidence_threshold} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

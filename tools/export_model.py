#!/usr/bin/env python
"""Export a trained detector to TorchScript or ONNX: one graph from a uint8 image to detections.

    python tools/export_model.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \
        --format onnx --output exported/ MODEL.WEIGHTS output/model_final.pth

The graph takes one (3, H, W) uint8 image of any size in INPUT.FORMAT channel order and returns
boxes (D, 4) float32 xyxy in that image's pixels, scores (D,) and labels (D,) int64: the test-time
resize (bilinear), normalisation, padding, network, anchors, decoding and NMS are all in it.
OUTPUT/model.ts loads with torch.jit.load (torch and torchvision, no retinadet); OUTPUT/model.onnx
(opset 17, checked with onnx.checker) runs with onnxruntime or OpenVINO. OUTPUT/model.json holds the
class names, the channel order and how the file compared with the eager model.

Before it is kept, the file is run on sample images of two sizes (and a flat one, usually without
detections), or on --sample-image files, and must give the eager model's detections: same count and
labels, boxes within 1e-3 px, scores within 1e-4.
"""
import argparse
import os
import sys
from typing import List, Optional, Sequence

import numpy as np

from retinadet.config import get_cfg
from retinadet.data import read_image
from retinadet.export import EXPORT_FORMATS, ExportError, MissingPackageError, export_model
from retinadet.utils.logger import setup_logger


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The parsed command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="YAML config of the model")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="file format to write")
    parser.add_argument("--output", required=True, help="folder for model.ts / model.onnx and model.json")
    parser.add_argument("--sample-image", action="append", default=[], metavar="FILE",
                        help="an image to trace and check with (repeatable; default: generated images of two sizes)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def _read_samples(paths: List[str], channel_order: str) -> Optional[List[np.ndarray]]:
    if not paths:
        return None
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        sys.exit(f"--sample-image: these files do not exist: {missing}")
    return [np.ascontiguousarray(read_image(p, channel_order).transpose(2, 0, 1)) for p in paths]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Export as the command line asks; prints the file and its comparison with the eager model."""
    args = parse_args(argv)
    if not os.path.isfile(args.config_file):
        sys.exit(f"--config-file {args.config_file} does not exist.")
    setup_logger(name="retinadet")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    samples = _read_samples(args.sample_image, cfg.INPUT.FORMAT)
    try:
        result = export_model(cfg, args.format, args.output, images=samples)
    except (ExportError, MissingPackageError) as e:
        sys.exit(f"export failed: {e}")
    print(f"wrote {result.path} and {result.metadata_path}")
    for c in result.comparisons:
        print(f"  {c.image_size[0]}x{c.image_size[1]} image: {c.exported_count} detections, same as eager; "
              f"boxes within {c.max_box_diff:.2g} px, scores within {c.max_score_diff:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Build a detector from a config, train it for a few steps on a synthetic batch, run inference.

Prints the config file, the model's parameter count, the losses of every step and the best
detections of each image next to its ground truth.
"""
import argparse
import sys

import torch

from retinadet.benchmark.config import num_classes
from retinadet.benchmark.model_size import count_parameters
from retinadet.benchmark.steps import train_step
from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.utils.synthetic import make_synthetic_batch


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, help="YAML config (e.g. configs/quick/...)")
    parser.add_argument("--steps", type=int, default=1, help="training steps on the synthetic batch")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 320), metavar=("H", "W"))
    parser.add_argument("--images", type=int, default=2, help="images in the synthetic batch")
    parser.add_argument("--top", type=int, default=5, help="detections printed per image")
    parser.add_argument("--seed", type=int, default=2, help="seed of the synthetic batch")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    torch.manual_seed(max(cfg.SEED, 0))

    model = build_model(cfg)
    num_params = count_parameters(model)["total"]
    print(f"config: {args.config_file}  model: {cfg.MODEL.META_ARCHITECTURE}  parameters: {num_params:,}")
    batch = make_synthetic_batch(args.images, *args.size, num_classes=num_classes(cfg), seed=args.seed)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    model.train()
    for step in range(1, args.steps + 1):
        losses = train_step(model, optimizer, batch)
        terms = "  ".join(f"{k}={v:.4f}" for k, v in losses.items())
        print(f"step {step}: {terms}  total={sum(losses.values()):.4f}")

    model.eval()
    with torch.no_grad():
        detections = model(batch)
    for i, (image, det) in enumerate(zip(batch, detections)):
        print(f"image {i}: {len(det['boxes'])} detections; ground truth "
              f"{[(int(l), [round(float(c)) for c in b]) for b, l in zip(image['boxes'], image['labels'])]}")
        for box, score, label in list(zip(det["boxes"], det["scores"], det["labels"]))[: args.top]:
            print(f"  label {int(label)}  score {float(score):.3f}  box {[round(float(c), 1) for c in box]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

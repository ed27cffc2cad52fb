#!/usr/bin/env python
"""Remake tests/fixtures/detectron2/: what the real detectron2 produces, for tests that run without it.

    PYTHONPATH=/path/to/detectron2/install python tools/make_detectron2_fixtures.py [OUT_DIR]

Needs detectron2 importable (it builds from source with ``pip install --no-build-isolation`` in an
environment with ``setuptools<81``). For RetinaNet and Faster R-CNN it takes detectron2's own model-zoo
config (COCO-Detection/*_R_50_FPN_1x.yaml), narrows the ResNet-50 FPN to a few MB (stem 16, res2 32 with
bottleneck width 8, FPN 32 channels, 5 classes), initialises it with random weights rounded to float16
and random FrozenBN statistics, and writes, all produced by detectron2:

- ``<name>.yaml``: detectron2's dump of the full config (its format, all its keys);
- ``<name>.pth``: ``{"model": state dict}`` from detectron2's model (float16 tensors);
- ``<name>_detections.npz``: its detections on the two images of ``images.npz`` (sides not multiples of
  32, each asked to be reported at another size), up to 1,000 per image, scores from 0;
- ``model_zoo_configs.json``: detectron2's merged config of each COCO-Detection model-zoo file the
  issue names, for the recipe test.

Nothing of detectron2's source or files is copied: only values and tensors it computed.
"""
import json
import os
import sys

import numpy as np
import torch

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures", "detectron2")
MODELS = {
    "retinanet": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
    "faster_rcnn": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
}
ZOO = ["Base-RetinaNet.yaml", "Base-RCNN-FPN.yaml"] + [
    f"COCO-Detection/{name}.yaml" for name in (
        "retinanet_R_50_FPN_1x", "retinanet_R_50_FPN_3x", "retinanet_R_101_FPN_3x",
        "faster_rcnn_R_50_FPN_1x", "faster_rcnn_R_50_FPN_3x", "faster_rcnn_R_101_FPN_3x")
]
# (height, width) of the two input images and the (height, width) each asks its detections in.
IMAGES = [((250, 333), (375, 500)), ((301, 197), (200, 131))]
NARROW = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 32, "MODEL.RESNETS.WIDTH_PER_GROUP", 8, "MODEL.FPN.OUT_CHANNELS", 32,
    "MODEL.RETINANET.NUM_CLASSES", 5, "MODEL.ROI_HEADS.NUM_CLASSES", 5, "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
    "MODEL.RETINANET.SCORE_THRESH_TEST", 0.0, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
    "TEST.DETECTIONS_PER_IMAGE", 1000,
]


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Random weights that give varied detections: conv / linear weights N(0, 0.05) and biases
    N(0, 0.5) rounded to float16; FrozenBN weight ~ U(0.5, 1.5), bias, mean N(0, 0.2), var U(0.5, 2)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.startswith(("pixel_", "anchor_generator", "proposal_generator.anchor")):
                continue
            if name.endswith("running_var"):
                value = torch.rand(tensor.shape, generator=g) * 1.5 + 0.5
            elif tensor.dim() == 1 and ("norm" in name or name.endswith(("running_mean",))):
                value = (torch.rand(tensor.shape, generator=g) + 0.5 if name.endswith("weight")
                         else torch.randn(tensor.shape, generator=g) * 0.2)
            elif tensor.dim() == 1:
                value = torch.randn(tensor.shape, generator=g) * 0.5
            else:
                value = torch.randn(tensor.shape, generator=g) * 0.05
            tensor.copy_(value.half().float())


def _images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, ((h, w), _) in enumerate(IMAGES):
        # Smooth blobs over noise, so features vary across the image.
        base = torch.rand(3, max(1, h // 16), max(1, w // 16), generator=g)
        image = torch.nn.functional.interpolate(base[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        image = (image * 200 + torch.rand(3, h, w, generator=g) * 55).clamp(0, 255).to(torch.uint8)
        out[f"image{i}"] = image.numpy()
    return out


def _detectron2_config(name: str):
    from detectron2 import model_zoo
    from detectron2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(name))
    return cfg


def main() -> int:
    """Write the fixtures into sys.argv[1] (default tests/fixtures/detectron2)."""
    from detectron2.checkpoint import DetectionCheckpointer  # noqa: F401  (fails early without detectron2)
    from detectron2.modeling import build_model

    out = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    images = _images()
    np.savez_compressed(os.path.join(out, "images.npz"), **images,
                        sizes=np.array([[*ask] for _, ask in IMAGES], dtype=np.int64))
    for i, (name, zoo_file) in enumerate(MODELS.items()):
        cfg = _detectron2_config(zoo_file)
        cfg.merge_from_list([str(v) if not isinstance(v, str) else v for v in NARROW])
        cfg.freeze()
        with open(os.path.join(out, f"{name}.yaml"), "w") as f:
            f.write(cfg.dump())
        model = build_model(cfg).eval()
        _randomise(model, seed=10 + i)
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
        torch.save({"model": state}, os.path.join(out, f"{name}.pth"))
        inputs = [{"image": torch.from_numpy(images[f"image{j}"]), "height": ask[0], "width": ask[1]}
                  for j, (_, ask) in enumerate(IMAGES)]
        with torch.no_grad():
            outputs = model(inputs)
        arrays = {}
        for j, output in enumerate(outputs):
            instances = output["instances"]
            arrays[f"boxes{j}"] = instances.pred_boxes.tensor.numpy()
            arrays[f"scores{j}"] = instances.scores.numpy()
            arrays[f"classes{j}"] = instances.pred_classes.numpy()
            print(f"{name} image {j}: {len(instances)} detections")
        np.savez_compressed(os.path.join(out, f"{name}_detections.npz"), **arrays)
    zoo = {}
    for name in ZOO:
        cfg = _detectron2_config(name)
        zoo[name] = json.loads(json.dumps(cfg, default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
    with open(os.path.join(out, "model_zoo_configs.json"), "w") as f:
        json.dump(zoo, f, indent=1, sort_keys=True)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

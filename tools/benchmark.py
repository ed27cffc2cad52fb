#!/usr/bin/env python
"""Speed, peak memory, parameters and FLOPs of a config's model, or speed of its training data loader.

    python tools/benchmark.py --config-file F --task {train,eval,flops,data,time-to-accuracy} [options] [KEY VALUE ...]

Tasks:

- train: the model and optimizer built as DefaultTrainer builds them (random initial weights), then
  ``--warmup`` untimed and ``--iters`` timed steps: forward, sum of the ``loss_*`` terms, backward,
  optimizer step. The optimizer runs at learning rate 0 (as detectron2's benchmark does): it does
  all its arithmetic, but a random model cannot diverge to NaNs between steps. The batch holds
  SOLVER.IMS_PER_BATCH images (override it like any key, e.g. ``SOLVER.IMS_PER_BATCH 2``: the
  config's value is for all processes of a multi-GPU run). AMP and gradient clipping are not applied.
- eval: the model (with MODEL.WEIGHTS when set) in eval mode under no_grad, batches of
  TEST.IMS_PER_BATCH images. With random weights the number of scores above the threshold, and so
  the post-processing work, is not a trained model's; the output gives the detections per image.
- flops: parameters and FLOPs only (below), nothing timed.
- time-to-accuracy: trains the config as tools/train_net.py would (same trainer, hooks and
  OUTPUT_DIR) and evaluates DATASETS.TEST every ``--interval`` minutes of training wall-clock time
  (the clock stops while evaluating) and when training ends; ``--minutes M`` stops training after M
  minutes (default: the whole schedule). Prints minutes -> iteration, images seen, AP, AP50, AP75
  and writes OUTPUT_DIR/time_to_accuracy.json and time_to_accuracy.png (retinadet.experiments.
  time_to_accuracy). Data generation and model building come before minute 0 ("setup").
- data: ``--warmup`` then ``--iters`` batches from the training loader
  (``build_detection_train_loader``); needs DATASETS.TRAIN to be registered (the embedded shapes
  sets are, and are generated under DATASETS.ROOT on first use).

Parameters and FLOPs are part of every train, eval and flops report, for each model. Parameters:
the number of elements of ``model.parameters()`` (buffers such as FrozenBN statistics are not
parameters), and of those with ``requires_grad`` (trainable; frozen stages are not). FLOPs: fvcore's
``FlopCountAnalysis`` of the model's inference forward (eval mode, no_grad) on one image of the
benchmark's input size (the first image of the first batch), post-processing included, also for
``--task train``. fvcore's convention: one multiply-add counts as one flop (a k x k convolution with
C_in inputs and C_out outputs costs C_in x C_out x k x k per output position; its bias is not
counted); ops fvcore ignores by design (ReLU, reshapes, indexing, cat, ...) count 0, and every
other op it has no formula for (element-wise arithmetic, sigmoid, exp, top-k, max-pool, NMS,
ROIAlign, ...) counts 0 and is listed with its number of calls as "uncounted ops". Reported as
GFLOPs per image (1e9 flops). For a two-stage model the box head runs on the proposals the RPN
keeps for that one image, so its share depends on the weights; the model is built from the seed
SEED, so the figure repeats run to run. ``--no-flops`` skips the count (the tracing costs about
one inference forward); ``--task flops --no-flops`` gives the parameters alone.

Input of train, eval and flops (``--input``): ``synthetic`` random uint8 images, a few random boxes
each (``make_synthetic_batch``), all of one size: ``--size H W``, default MIN_SIZE_TEST x a 3:2
width rounded up to a multiple of 32 and capped at MAX_SIZE_TEST (800 x 1216 for 800 / 1333); or
``dataset``: batches from the config's loaders, collected before timing. The default is
``dataset`` when the config's data sets are registered and no ``--size`` is given, else
``synthetic``. Batches are moved to the device before timing.

``--compare-torchvision`` (train, eval and flops, with a ResNet-50 FPN) also builds torchvision's
counterpart of MODEL.META_ARCHITECTURE and times it on the same batches in the same process:
``retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=K)`` for RetinaNet
(K = MODEL.RETINANET.NUM_CLASSES), ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
num_classes=K + 1)`` for GeneralizedRCNN (K = MODEL.ROI_HEADS.NUM_CLASSES; torchvision counts the
background as class 0, so our labels are given to it plus one). Both keep torchvision's own
settings otherwise (thresholds, top-k, detections per image); configs/torchvision/*.yaml make ours
match them. Without weights torchvision builds trainable BatchNorm in every stage; its backbone is
set up like ours instead (frozen BatchNorm when MODEL.RESNETS.NORM is FrozenBN, the first
MODEL.BACKBONE.FREEZE_AT stages frozen), so both do the same kind of backward work. Its
``min_size`` / ``max_size`` are set per batch to the images' sides, so it does not resize them; its
step includes turning the uint8 images into 0-1 RGB floats, as ours does its normalisation. The
steps of the two models alternate, in alternating order, so a change in background load hits both
alike.

``--relative-to OTHER.json`` divides this run's seconds per iteration by those of an earlier
report of the same task, input size, batch, device and threads (e.g. a RetinaNet run against a
Faster R-CNN run), model by model; when both runs compared with torchvision it also gives ours'
ratio over torchvision's ratio, which equals this run's ours/torchvision time over the other's.

Figures: iterations/s = 1 / median seconds per iteration, images/s = iterations/s x images per
iteration, the interquartile range of the per-iteration times, and peak memory during the timed
steps: on CUDA ``torch.cuda.max_memory_allocated`` after a reset, on the CPU the process's peak RSS
(Linux: reset before each step through /proc/self/clear_refs, after glibc's malloc_trim has returned
the heap memory freed by the step before, so each model gets its own figure; elsewhere the process's
peak so far, from ``peak_memory_mb``). "step extra" is that peak minus the
memory in use when the step started. A markdown table is printed with a header line (torch version,
device, threads, load average before and after); ``--json OUT`` also writes the figures.

Examples::

    python tools/benchmark.py --config-file configs/quick/retinanet_R_18_synthetic.yaml --task train
    python tools/benchmark.py --config-file configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml \\
        --task eval --compare-torchvision --iters 5 --warmup 1
    python tools/benchmark.py --config-file configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml --task flops
    python tools/benchmark.py --config-file configs/shapes/retinanet_R_18_FPN.yaml --task data \\
        DATASETS.ROOT /tmp/datasets
    python tools/benchmark.py --config-file configs/shapes/retinanet_R_18_FPN.yaml \\
        --task time-to-accuracy --interval 1
"""
import argparse
import ctypes
import gc
import json
import math
import os
import statistics
import sys
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from retinadet.config import CfgNode, get_cfg
from retinadet.data import DatasetCatalog, build_detection_test_loader, build_detection_train_loader
from retinadet.data import register_builtin_datasets
from retinadet.engine import DefaultTrainer
from retinadet.modeling import build_model
from retinadet.solver import build_optimizer
from retinadet.utils.synthetic import make_synthetic_batch
from retinadet.utils.writers import peak_memory_mb

TASKS = ("train", "eval", "flops", "data", "time-to-accuracy")
Batch = List[Dict[str, Any]]


class BenchmarkError(Exception):
    """A request the benchmark cannot serve; main() reports it as a command-line error."""


# ---------------------------------------------------------------------------- set-up
def parse_args(argv: Optional[Sequence[str]] = None) -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="See the module docstring of tools/benchmark.py for what is measured and how.",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the YAML config")
    parser.add_argument("--task", required=True, choices=TASKS, help="what to time")
    parser.add_argument("--input", choices=("synthetic", "dataset"),
                        help="train/eval input (default: dataset when the config's data sets are registered)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="synthetic image size")
    parser.add_argument("--compare-torchvision", action="store_true",
                        help="also time torchvision's retinanet_resnet50_fpn (RetinaNet configs) or "
                        "fasterrcnn_resnet50_fpn (GeneralizedRCNN configs) on the same batches")
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


def load_config(args: argparse.Namespace) -> CfgNode:
    """get_cfg() <- --config-file <- KEY VALUE overrides <- --device; frozen."""
    if not os.path.isfile(args.config_file):
        raise BenchmarkError(f"--config-file {args.config_file!r} does not exist (cwd: {os.getcwd()}).")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(list(args.opts or []))
    except (KeyError, ValueError) as e:
        raise BenchmarkError(f"config: {e.args[0] if e.args else e}") from e
    if args.device:
        cfg.MODEL.DEVICE = args.device
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as e:
        raise BenchmarkError(f"device {cfg.MODEL.DEVICE!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchmarkError(f"device {cfg.MODEL.DEVICE!r} asked for, but CUDA is not available.")
    cfg.freeze()
    return cfg


def default_size(cfg: CfgNode) -> Tuple[int, int]:
    """(MIN_SIZE_TEST, a 3:2 width rounded up to a multiple of 32, capped at MAX_SIZE_TEST)."""
    height = cfg.INPUT.MIN_SIZE_TEST
    return height, min(cfg.INPUT.MAX_SIZE_TEST, math.ceil(1.5 * height / 32) * 32)


def registered(cfg: CfgNode, names: Sequence[str]) -> bool:
    """Whether ``names`` is non-empty and every name is registered (after the built-in sets)."""
    register_builtin_datasets(cfg)
    return bool(names) and all(name in DatasetCatalog for name in names)


def require_registered(cfg: CfgNode, key: str, what: str) -> None:
    """Raise BenchmarkError unless every name of DATASETS.<key> is registered."""
    names = list(getattr(cfg.DATASETS, key))
    if not registered(cfg, names):
        raise BenchmarkError(
            f"{what} needs the data sets of DATASETS.{key}, but it is {names} and the registered ones are "
            f"{DatasetCatalog.list()}. Use a config with data sets (e.g. configs/shapes/*.yaml) or --input synthetic."
        )


# The config keys (besides MODEL.META_ARCHITECTURE) that make a config torchvision's architecture, per
# meta-architecture with a torchvision counterpart, and that counterpart's name.
COMPARABLE: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "RetinaNet": ("retinanet_resnet50_fpn", {
        "MODEL.BACKBONE.NAME": "ResNet", "MODEL.RESNETS.DEPTH": 50, "MODEL.NECK.NAME": "FPN",
        "MODEL.HEAD.NAME": "RetinaNetHead",
    }),
    "GeneralizedRCNN": ("fasterrcnn_resnet50_fpn", {
        "MODEL.BACKBONE.NAME": "ResNet", "MODEL.RESNETS.DEPTH": 50, "MODEL.NECK.NAME": "FPN",
        "MODEL.PROPOSAL_GENERATOR.NAME": "RPN", "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNFCHead",
    }),
}
# The key holding the number of object classes K (no background), per meta-architecture.
NUM_CLASSES_KEY = {"RetinaNet": "MODEL.RETINANET.NUM_CLASSES", "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES"}


def _config_value(cfg: CfgNode, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def num_classes(cfg: CfgNode) -> int:
    """The config's number of object classes K: NUM_CLASSES_KEY of its meta-architecture
    (MODEL.RETINANET.NUM_CLASSES for one without an entry)."""
    return _config_value(cfg, NUM_CLASSES_KEY.get(cfg.MODEL.META_ARCHITECTURE, "MODEL.RETINANET.NUM_CLASSES"))


def check_comparable(cfg: CfgNode) -> str:
    """The name of torchvision's counterpart of the config's model; raises BenchmarkError unless the config
    is a meta-architecture of COMPARABLE with every key that entry requires (a ResNet-50 FPN)."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch not in COMPARABLE:
        known = ", ".join(f"{a} ({name})" for a, (name, _) in COMPARABLE.items())
        raise BenchmarkError(
            f"--compare-torchvision has a torchvision counterpart for MODEL.META_ARCHITECTURE {known}; this "
            f"config has MODEL.META_ARCHITECTURE {arch!r}."
        )
    name, required = COMPARABLE[arch]
    wrong = [f"{key} {_config_value(cfg, key)!r} (needs {value!r})" for key, value in required.items()
             if _config_value(cfg, key) != value]
    if wrong:
        raise BenchmarkError(
            f"--compare-torchvision times torchvision's {name} for {arch}, so it needs "
            + ", ".join(f"{key} {value!r}" for key, value in required.items())
            + f"; this config has {'; '.join(wrong)}."
        )
    return name


# ---------------------------------------------------------------------------- input
def choose_input(cfg: CfgNode, args: argparse.Namespace) -> str:
    """--input, else "dataset" when the task's data sets are registered and no --size is given, else
    "synthetic"."""
    if args.input:
        return args.input
    names = cfg.DATASETS.TRAIN if args.task == "train" else cfg.DATASETS.TEST
    return "dataset" if args.size is None and registered(cfg, names) else "synthetic"


def to_device(batch: Batch, device: torch.device) -> Batch:
    """A copy of ``batch`` with its tensors on ``device``."""
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in x.items()} for x in batch]


def synthetic_batches(cfg: CfgNode, count: int, batch_size: int, size: Tuple[int, int]) -> List[Batch]:
    """``count`` different batches of ``batch_size`` random images of ``size`` (seeded)."""
    return [
        make_synthetic_batch(batch_size, *size, num_classes=num_classes(cfg), seed=i)
        for i in range(count)
    ]


def dataset_batches(cfg: CfgNode, task: str, count: int) -> List[Batch]:
    """The first ``count`` batches of the training loader (train) or of DATASETS.TEST[0]'s (eval,
    cycling when the set is short)."""
    if task == "train":
        require_registered(cfg, "TRAIN", "--input dataset")
        batches = iter(build_detection_train_loader(cfg))
        return [next(batches) for _ in range(count)]
    require_registered(cfg, "TEST", "--input dataset")
    loader = build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])
    batches: List[Batch] = []
    while len(batches) < count:
        batches.extend(b for _, b in zip(range(count - len(batches)), loader))
    return batches


# ---------------------------------------------------------------------------- models
def _freeze_batch_norm(module: nn.Module, names: Optional[Sequence[str]] = None) -> None:
    """Replace, in place, every BatchNorm2d under ``module`` (under its children ``names`` only, when given)
    by a torchvision FrozenBatchNorm2d holding the same values."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if names is not None and name not in names:
            continue
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen)
        else:
            _freeze_batch_norm(child)


def torchvision_images(batch: Batch, bgr: bool) -> List[torch.Tensor]:
    """The batch's uint8 images as torchvision takes them: RGB floats in 0-1."""
    return [(x["image"].flip(0) if bgr else x["image"]).float() / 255.0 for x in batch]


class TorchvisionDetector(nn.Module):
    """A torchvision detection model behind our model contract: a list of dicts in (uint8 images in
    INPUT.FORMAT order, training adds "boxes" (N, 4) xyxy and "labels" (N,) in [0, K)), a dict of
    ``loss_*`` terms (training) or detections (inference) out. Its backbone is frozen like the config's.

    Subclasses give ``build(cfg) -> torchvision model``, ``label_offset`` (added to our labels) and
    ``rename_losses(losses) -> dict``.
    """

    label_offset = 0

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        check_comparable(cfg)
        self.model = self.build(cfg)
        body = self.model.backbone.body
        # Our FREEZE_AT k freezes the stem and res2..res{k}: torchvision's conv1/bn1 and layer1..layer{k-1}.
        frozen = (["conv1", "bn1"] if cfg.MODEL.BACKBONE.FREEZE_AT >= 1 else []) + [
            f"layer{i}" for i in range(1, cfg.MODEL.BACKBONE.FREEZE_AT)
        ]
        # Ours uses FrozenBN everywhere with NORM FrozenBN, and in the frozen stages with any other norm.
        _freeze_batch_norm(body, None if cfg.MODEL.RESNETS.NORM == "FrozenBN" else frozen)
        for name, param in body.named_parameters():
            if name.split(".")[0] in frozen:
                param.requires_grad_(False)
        self.bgr = cfg.INPUT.FORMAT == "BGR"
        self.to(torch.device(cfg.MODEL.DEVICE))

    def build(self, cfg: CfgNode) -> nn.Module:
        """The torchvision model for ``cfg``; each subclass names its own."""
        raise NotImplementedError(f"{type(self).__name__} does not say which torchvision model to build.")

    def rename_losses(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return losses

    def forward(self, batch: Batch):
        images = torchvision_images(batch, self.bgr)
        height, width = images[0].shape[-2:]
        # With these, torchvision's transform scales every image of the batch by exactly 1.
        self.model.transform.min_size = (min(height, width),)
        self.model.transform.max_size = max(height, width)
        if not self.training:
            return self.model(images)
        targets = [{"boxes": x["boxes"], "labels": x["labels"] + self.label_offset} for x in batch]
        return self.rename_losses(self.model(images, targets))


class TorchvisionRetinaNet(TorchvisionDetector):
    """torchvision's retinanet_resnet50_fpn(num_classes=MODEL.RETINANET.NUM_CLASSES) as our RetinaNet's
    counterpart; its losses are returned as "loss_cls" and "loss_box_reg"."""

    def build(self, cfg: CfgNode) -> nn.Module:
        from torchvision.models.detection import retinanet_resnet50_fpn

        return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=cfg.MODEL.RETINANET.NUM_CLASSES)

    def rename_losses(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"loss_cls": losses["classification"], "loss_box_reg": losses["bbox_regression"]}


class TorchvisionFasterRCNN(TorchvisionDetector):
    """torchvision's fasterrcnn_resnet50_fpn(num_classes=MODEL.ROI_HEADS.NUM_CLASSES + 1) as our
    GeneralizedRCNN's counterpart. torchvision's class 0 is the background, so our label k is its k + 1;
    its losses keep torchvision's names (loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg)."""

    label_offset = 1

    def build(self, cfg: CfgNode) -> nn.Module:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        return fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1
        )


# torchvision's counterpart per MODEL.META_ARCHITECTURE (the names and required keys are in COMPARABLE).
TORCHVISION_MODELS = {"RetinaNet": TorchvisionRetinaNet, "GeneralizedRCNN": TorchvisionFasterRCNN}


def build_torchvision_model(cfg: CfgNode) -> TorchvisionDetector:
    """torchvision's counterpart of the config's model, set up like ours; BenchmarkError when it has none."""
    check_comparable(cfg)
    return TORCHVISION_MODELS[cfg.MODEL.META_ARCHITECTURE](cfg)


def check_one_size_per_batch(batches: Sequence[Batch]) -> None:
    """Raise BenchmarkError when a batch mixes image sizes (torchvision would resize some of them)."""
    for batch in batches:
        sizes = {tuple(x["image"].shape[-2:]) for x in batch}
        if len(sizes) > 1:
            raise BenchmarkError(
                f"--compare-torchvision needs the images of a batch to share one size (torchvision would resize "
                f"the others); a batch holds {sorted(sizes)}. Use --input synthetic."
            )


def zero_lr_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
    """The config's optimizer (build_optimizer) with every learning rate set to 0.

    A random model at the config's LR can diverge within a few steps (the COCO config's std-1 input
    gives a random ResNet-50 activations near 1e6) and then time NaNs. At LR 0 SGD does the same
    arithmetic (weight decay, momentum, update) but the weights, and so the work, stay the initial ones.
    """
    optimizer = build_optimizer(cfg, model)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    return optimizer


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> Dict[str, float]:
    """One SimpleTrainer step: forward, sum of ``loss_*``, backward, optimizer step."""
    losses = {k: v for k, v in model(batch).items() if k.startswith("loss_")}
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in losses.items()}


@torch.no_grad()
def eval_step(model: nn.Module, batch: Batch) -> Dict[str, float]:
    """One inference call; returns the mean number of detections per image."""
    detections = model(batch)
    return {"detections_per_image": sum(len(d["boxes"]) for d in detections) / len(detections)}


def build_step(model: nn.Module, cfg: CfgNode, task: str) -> Callable[[Batch], Dict[str, float]]:
    """The per-batch callable of ``task`` for ``model``, set to train or eval mode."""
    if task == "eval":
        model.eval()
        return lambda batch: eval_step(model, batch)
    model.train()
    optimizer = zero_lr_optimizer(cfg, model)
    return lambda batch: train_step(model, optimizer, batch)


# ---------------------------------------------------------------------------- parameters and FLOPs
FLOP_CONVENTION = (
    "fvcore FlopCountAnalysis of the inference forward on one image: one multiply-add counts as one flop "
    "(convolutions, matrix products, norms, upsampling); ops fvcore ignores by design (ReLU, reshapes, "
    "indexing, cat) count 0; all other ops count 0 and are listed as uncounted ops"
)


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """{"total": elements of ``model.parameters()``, "trainable": those with requires_grad}; buffers are
    not parameters."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


class SingleImageInference(nn.Module):
    """``model`` (our list[dict] contract) behind a tensor-in, tensors-out forward that fvcore can trace:
    ``forward(image (3, H, W))`` runs the model on ``[{"image": image}]`` and returns the tensors of its
    output dicts, in key order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.model([{"image": image}])
        return tuple(v for d in outputs for _, v in sorted(d.items()) if isinstance(v, torch.Tensor))


def count_flops(model: nn.Module, image: torch.Tensor) -> Dict[str, Any]:
    """FLOPs of ``model``'s inference forward (eval mode, no_grad) on one ``image`` (3, H, W), 0-255, by
    fvcore's FlopCountAnalysis (one multiply-add = one flop). The model's train/eval mode is restored.

    Returns {"per_image": int, "gflops_per_image": float, "image_size": [H, W], "by_operator": {op: flops},
    "uncounted_ops": {op: calls} (ops fvcore has no formula for, counted as 0)}.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore.nn scripts its losses on import
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values: expected, not actionable
            analysis = FlopCountAnalysis(SingleImageInference(model), (image,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = int(analysis.total())
            by_operator = dict(analysis.by_operator())
            uncounted = dict(analysis.unsupported_ops())
    except BenchmarkError:
        raise
    except Exception as e:  # tracing runs the model's own code: any failure is reported the same way
        raise BenchmarkError(
            f"fvcore could not trace the inference forward of {type(model).__name__} on a {tuple(image.shape)} "
            f"image to count its FLOPs ({type(e).__name__}: {e}). Use --no-flops to time the model without it."
        ) from e
    finally:
        model.train(was_training)
    return {
        "per_image": total,
        "gflops_per_image": total / 1e9,
        "image_size": list(image.shape[-2:]),
        "by_operator": {k: int(v) for k, v in sorted(by_operator.items(), key=lambda kv: -kv[1])},
        "uncounted_ops": dict(sorted(uncounted.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def model_size(model: nn.Module, image: Optional[torch.Tensor]) -> Dict[str, Any]:
    """{"parameters": count_parameters, "flops": count_flops on ``image`` (None when ``image`` is None)}."""
    return {"parameters": count_parameters(model), "flops": None if image is None else count_flops(model, image)}


# ---------------------------------------------------------------------------- measuring
class PeakMemory:
    """Peak memory (MiB) between ``reset()`` and ``read()``, and the memory in use at ``reset()`` (``base``).

    CUDA: allocated memory. CPU on Linux: RSS; ``reset()`` first hands freed heap memory back to the
    system (glibc's malloc_trim), so that memory the allocator kept from an earlier step of the other
    model does not hide this step's growth, then resets the peak (VmHWM, through /proc/self/clear_refs).
    Elsewhere: the process's peak RSS so far, and no ``base``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.proc = not self.cuda and self._reset_rss_peak()
        self.base: Optional[float] = None
        try:
            self.malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            self.malloc_trim = None

    @staticmethod
    def _reset_rss_peak() -> bool:
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def _status_mib(field: str) -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) / 1024.0  # kB
        raise RuntimeError(f"/proc/self/status has no {field}.")

    def reset(self) -> None:
        """Start a new peak here."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.proc:
            if self.malloc_trim is not None:
                self.malloc_trim(0)
            self._reset_rss_peak()
            self.base = self._status_mib("VmRSS")

    def read(self) -> float:
        """Peak since the last reset (the process's peak so far when it cannot be reset)."""
        if self.proc:
            return self._status_mib("VmHWM")
        return peak_memory_mb(self.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(
    steps: Dict[str, Callable[[Batch], Dict[str, float]]], batches: Sequence[Batch], warmup: int, iters: int,
    device: torch.device,
) -> Dict[str, Dict[str, Any]]:
    """Run every step on batches 0..warmup-1 untimed, then on the next ``iters`` batches timed, the steps
    alternating in alternating order. Returns per step name: "times" (s), "images" (per iteration),
    "peak_mib", "extra_mib" (None when unknown) and the last step's output ("last")."""
    names = list(steps)
    for i in range(warmup):
        for name in names:
            steps[name](batches[i])
    _sync(device)
    gc.collect()
    memory = PeakMemory(device)
    runs = {name: {"times": [], "images": [], "peak_mib": 0.0, "extra_mib": None, "last": {}} for name in names}
    for i in range(iters):
        batch = batches[warmup + i]
        for name in names if i % 2 == 0 else names[::-1]:
            run = runs[name]
            memory.reset()
            start = time.perf_counter()
            run["last"] = steps[name](batch)
            _sync(device)
            run["times"].append(time.perf_counter() - start)
            run["images"].append(len(batch))
            peak = memory.read()
            run["peak_mib"] = max(run["peak_mib"], peak)
            if memory.base is not None:
                run["extra_mib"] = max(run["extra_mib"] or 0.0, peak - memory.base)
    return runs


def quartiles(values: Sequence[float]) -> Tuple[float, float]:
    """The 25th and 75th percentiles, linearly interpolated between the sorted values."""
    ordered = sorted(values)

    def at(q: float) -> float:
        position = q * (len(ordered) - 1)
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return at(0.25), at(0.75)


def figures(run: Dict[str, Any]) -> Dict[str, Any]:
    """iterations/s, images/s, s/iteration (median, IQR), s/image and memory of one timed run."""
    median = statistics.median(run["times"])
    images = sum(run["images"]) / len(run["images"])
    return {
        "iterations_per_s": 1.0 / median,
        "images_per_s": images / median,
        "images_per_iteration": images,
        "s_per_iteration": median,
        "s_per_iteration_iqr": list(quartiles(run["times"])),
        "s_per_image": median / images,
        "peak_memory_mib": run["peak_mib"],
        "step_extra_memory_mib": run["extra_mib"],
        "times": run["times"],
        "last": run["last"],
    }


def compare(ours: Dict[str, Any], reference: Dict[str, Any]) -> Dict[str, Any]:
    """ours / torchvision: median time, the IQR of the paired per-iteration ratios, memory."""
    paired = [o / r for o, r in zip(ours["times"], reference["times"])]
    extra = (ours["step_extra_memory_mib"], reference["step_extra_memory_mib"])
    return {
        "time": ours["s_per_iteration"] / reference["s_per_iteration"],
        "time_iqr": list(quartiles(paired)),
        "peak_memory": ours["peak_memory_mib"] / reference["peak_memory_mib"],
        "step_extra_memory": extra[0] / extra[1] if None not in extra and extra[1] > 0 else None,
    }


# ---------------------------------------------------------------------------- tasks
def input_batches(
    cfg: CfgNode, args: argparse.Namespace, count: int
) -> Tuple[str, Optional[Tuple[int, int]], List[Batch]]:
    """(source, synthetic size or None, ``count`` batches on MODEL.DEVICE) for train, eval or flops."""
    source = choose_input(cfg, args)
    if source == "synthetic":
        size = tuple(args.size) if args.size else default_size(cfg)
        batch_size = cfg.SOLVER.IMS_PER_BATCH if args.task == "train" else cfg.TEST.IMS_PER_BATCH
        batches = synthetic_batches(cfg, count, batch_size, size)
    else:
        if args.size:
            raise BenchmarkError("--size sets the synthetic image size; it does not apply to --input dataset.")
        size = None
        batches = dataset_batches(cfg, "train" if args.task == "train" else "eval", count)
    if args.compare_torchvision:
        check_one_size_per_batch(batches)
    device = torch.device(cfg.MODEL.DEVICE)
    return source, size, [to_device(b, device) for b in batches]


def build_models(cfg: CfgNode, args: argparse.Namespace) -> Dict[str, nn.Module]:
    """{"ours": the config's model, "torchvision": its counterpart (with --compare-torchvision)}, seeded with
    SEED; built as DefaultTrainer does for train (no MODEL.WEIGHTS), else by build_model."""
    torch.manual_seed(max(cfg.SEED, 0))
    models = {"ours": DefaultTrainer.build_model(cfg) if args.task == "train" else build_model(cfg)}
    if args.compare_torchvision:
        models["torchvision"] = build_torchvision_model(cfg)
    return models


def benchmark_model(cfg: CfgNode, args: argparse.Namespace) -> Dict[str, Any]:
    """Parameters and FLOPs, and for train and eval the timed steps, of our model (and torchvision's);
    returns the JSON's task part."""
    if args.compare_torchvision:
        check_comparable(cfg)
    count = 1 if args.task == "flops" else args.warmup + args.iters
    source, size, batches = input_batches(cfg, args, count)
    models = build_models(cfg, args)
    image = None if args.no_flops else batches[0][0]["image"]
    sizes = {name: model_size(model, image) for name, model in models.items()}
    result: Dict[str, Any] = {"input": source, "image_size": list(size) if size else None,
                              "flop_convention": FLOP_CONVENTION}
    if args.task == "flops":
        result["models"] = sizes
        return result
    steps = {name: build_step(model, cfg, args.task) for name, model in models.items()}
    runs = time_steps(steps, batches, args.warmup, args.iters, torch.device(cfg.MODEL.DEVICE))
    result["models"] = {name: {**figures(run), **sizes[name]} for name, run in runs.items()}
    if args.compare_torchvision:
        result["ours_over_torchvision"] = compare(result["models"]["ours"], result["models"]["torchvision"])
    return result


def load_report(path: str, task: str) -> Dict[str, Any]:
    """The --json report at ``path`` for --relative-to; BenchmarkError unless it is readable and of ``task``
    (train or eval)."""
    if task not in ("train", "eval"):
        raise BenchmarkError(f"--relative-to applies to --task train and --task eval, not {task}.")
    try:
        with open(path) as f:
            other = json.load(f)
    except (OSError, ValueError) as e:
        raise BenchmarkError(f"--relative-to {path!r}: cannot read a JSON report ({e}).") from e
    if not isinstance(other, dict) or not isinstance(other.get("models"), dict):
        raise BenchmarkError(f"--relative-to {path!r} is not a report written by --json (no 'models').")
    if other.get("task") != task:
        raise BenchmarkError(f"--relative-to {path!r} has task {other.get('task')!r} but this run has {task!r}.")
    return other


def relative_speed(report: Dict[str, Any], other: Dict[str, Any], path: str) -> Dict[str, Any]:
    """This report's seconds per iteration over those of ``other`` (the report read from ``path``), per
    model both hold, and (when both hold ours and torchvision's) ours' ratio over torchvision's ratio.

    Raises BenchmarkError unless ``other`` has the same task, image size, images per iteration, device
    and threads."""
    for key in ("task", "image_size", "device", "threads"):
        if other.get(key) != report[key]:
            raise BenchmarkError(
                f"--relative-to {path!r} has {key} {other.get(key)!r} but this run has {report[key]!r}; compare "
                f"runs of the same task, --size, device and --threads."
            )
    names = [name for name in report["models"] if name in other["models"]]
    if not names:
        raise BenchmarkError(f"--relative-to {path!r} holds models {list(other['models'])}, none of this run's "
                             f"{list(report['models'])}.")
    time = {}
    for name in names:
        this, that = report["models"][name], other["models"][name]
        if "s_per_iteration" not in that:
            raise BenchmarkError(f"--relative-to {path!r} has no timing for {name!r} (a --task flops report?).")
        if that["images_per_iteration"] != this["images_per_iteration"]:
            raise BenchmarkError(
                f"--relative-to {path!r} ran {name} on {that['images_per_iteration']} images per iteration, this "
                f"run on {this['images_per_iteration']}; give both the same batch size."
            )
        time[name] = this["s_per_iteration"] / that["s_per_iteration"]
    result = {"other": path, "other_config_file": other.get("config_file"), "time": time}
    if "ours" in time and "torchvision" in time:
        result["ours_over_torchvision"] = time["ours"] / time["torchvision"]
    return result


def benchmark_data(cfg: CfgNode, args: argparse.Namespace) -> Dict[str, Any]:
    """Time ``--iters`` batches of the training loader after ``--warmup``; returns the JSON's task part.

    Rates are over the whole timed span (the loader's workers prefetch, so single batches vary)."""
    if args.compare_torchvision:
        raise BenchmarkError("--compare-torchvision applies to --task train, eval and flops.")
    require_registered(cfg, "TRAIN", "--task data")
    batches = iter(build_detection_train_loader(cfg))
    for _ in range(args.warmup):
        next(batches)
    times, images = [], 0
    start = time.perf_counter()
    for _ in range(args.iters):
        begin = time.perf_counter()
        images += len(next(batches))
        times.append(time.perf_counter() - begin)
    total = time.perf_counter() - start
    del batches  # stops the loader's workers
    return {"input": "dataset", "datasets": list(cfg.DATASETS.TRAIN), "data": {
        "batches_per_s": args.iters / total,
        "images_per_s": images / total,
        "images_per_batch": images / args.iters,
        "s_per_batch": statistics.median(times),
        "s_per_batch_iqr": list(quartiles(times)),
        "peak_memory_mib": peak_memory_mb(),
        "times": times,
    }}


# ---------------------------------------------------------------------------- output
def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def _millions(value: int) -> str:
    return f"{value / 1e6:.2f}M"


def _label(report: Dict[str, Any], name: str) -> str:
    if name == "ours":
        return f"ours ({os.path.basename(report['config_file'])})"
    return f"torchvision {report.get('torchvision_model') or ''}".strip()


def size_table(report: Dict[str, Any]) -> List[str]:
    """The parameters / FLOPs table of a train, eval or flops report, and the FLOP convention."""
    lines = [
        "| model | parameters | trainable | GFLOPs/image | FLOPs counted on | uncounted ops (calls) |",
        "|---|---:|---:|---:|---|---|",
    ]
    for name, f in report["models"].items():
        p, flops = f["parameters"], f["flops"]
        if flops is None:
            counted = "- | - | -"
        else:
            uncounted = ", ".join(f"{op} x{n}" for op, n in flops["uncounted_ops"].items()) or "none"
            counted = "{:.3f} | {}x{} | {}".format(flops["gflops_per_image"], *flops["image_size"], uncounted)
        lines.append(f"| {_label(report, name)} | {_millions(p['total'])} | {_millions(p['trainable'])} | {counted} |")
    lines += ["", f"FLOPs: {report['flop_convention']}."]
    return lines


def markdown(report: Dict[str, Any]) -> str:
    """The header line and the markdown table(s) of ``report``."""
    load = report["load_average"]
    versions = f"torch {report['torch']}" + (f", torchvision {report['torchvision']}" if report["torchvision"] else "")
    timed = f", {report['iters']} timed iterations after {report['warmup']} warm-up"
    if report["task"] == "flops":
        timed = ""
    lines = [
        f"{versions}, device {report['device']}, {report['threads']} threads; 1-min load average "
        f"{load['before']:.2f} before, {load['after']:.2f} after",
        "",
        f"`{report['config_file']}`, task {report['task']}, input {report['input']}"
        + (" {}x{}".format(*report["image_size"]) if report.get("image_size") else "")
        + timed,
        "",
    ]
    if report["task"] == "data":
        d = report["data"]
        low, high = d["s_per_batch_iqr"]
        lines += [
            "| data set | images/batch | batches/s | images/s | s/batch median (IQR) | peak RSS MiB (main process) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| {', '.join(report['datasets'])} | {d['images_per_batch']:.1f} | {d['batches_per_s']:.2f} "
            f"| {d['images_per_s']:.2f} | {d['s_per_batch']:.4f} ({low:.4f}-{high:.4f}) "
            f"| {_mib(d['peak_memory_mib'])} |",
        ]
        return "\n".join(lines)
    if report["task"] == "flops":
        return "\n".join(lines + size_table(report))
    lines += [
        "| model | images/iteration | iterations/s | images/s | s/iteration median (IQR) | s/image "
        "| peak memory MiB | step extra MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in report["models"].items():
        low, high = f["s_per_iteration_iqr"]
        lines.append(
            f"| {_label(report, name)} | {f['images_per_iteration']:.0f} | {f['iterations_per_s']:.3f} "
            f"| {f['images_per_s']:.3f} | {f['s_per_iteration']:.3f} ({low:.3f}-{high:.3f}) | {f['s_per_image']:.3f} "
            f"| {_mib(f['peak_memory_mib'])} | {_mib(f['step_extra_memory_mib'])} |"
        )
    ratio = report.get("ours_over_torchvision")
    if ratio:
        low, high = ratio["time_iqr"]
        extra = "-" if ratio["step_extra_memory"] is None else f"{ratio['step_extra_memory']:.2f}"
        lines += [
            "",
            "| ours / torchvision | time per iteration (IQR of paired ratios) | peak memory | step extra memory |",
            "|---|---:|---:|---:|",
            f"| {report['task']} | {ratio['time']:.3f} ({low:.2f}-{high:.2f}) | {ratio['peak_memory']:.2f} | {extra} |",
        ]
    relative = report.get("relative")
    if relative:
        other = os.path.basename(relative["other_config_file"] or relative["other"])
        header = [f"s/iteration: this / {other}"] + [_label(report, name) for name in relative["time"]]
        values = [report["task"]] + [f"{v:.3f}" for v in relative["time"].values()]
        if "ours_over_torchvision" in relative:
            header.append("ours' ratio / torchvision's ratio")
            values.append(f"{relative['ours_over_torchvision']:.3f}")
        lines += ["", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1),
                  "| " + " | ".join(values) + " |"]
    lines += [""] + size_table(report)
    last = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v:.4g}" for k, v in f["last"].items()) for name, f in report["models"].items()
    )
    lines += ["", f"Last timed iteration: {last}."]
    return "\n".join(lines)


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def time_to_accuracy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """--task time-to-accuracy: train with timed evaluations, print the table, write json and png."""
    from retinadet.engine.defaults import default_setup
    from retinadet.experiments.time_to_accuracy import markdown_table, run_time_to_accuracy

    if args.interval <= 0 or (args.minutes is not None and args.minutes <= 0):
        parser.error(f"--interval and --minutes must be positive; got {args.interval}, {args.minutes}.")
    if args.compare_torchvision or args.relative_to:
        parser.error("--compare-torchvision and --relative-to apply to --task train and eval.")
    try:
        cfg = load_config(args)
    except BenchmarkError as e:
        parser.error(str(e))
    if not cfg.DATASETS.TEST:
        parser.error(f"--task time-to-accuracy evaluates on DATASETS.TEST; {args.config_file} has none.")
    default_setup(cfg)
    report = run_time_to_accuracy(cfg, args.interval, args.minutes, config_file=args.config_file)
    print(f"Time to accuracy of {args.config_file} (torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"setup {report['setup_seconds']:.1f} s before minute 0):")
    print(markdown_table(report["points"]))
    print(f"Written: {report['json']} and {report['png']}")
    if args.json:
        write_json(args.json, report)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, run the task, print the tables (and write --json); returns 0."""
    parser, args = parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error(f"--iters and --threads must be >= 1 and --warmup >= 0; got {args.iters}, {args.threads}, "
                     f"{args.warmup}.")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.task == "time-to-accuracy":
        return time_to_accuracy(parser, args)
    try:
        cfg = load_config(args)
        other = load_report(args.relative_to, args.task) if args.relative_to else None
        load_before = os.getloadavg()[0]
        result = benchmark_data(cfg, args) if args.task == "data" else benchmark_model(cfg, args)
    except BenchmarkError as e:
        parser.error(str(e))
    device = torch.device(cfg.MODEL.DEVICE)
    torchvision_version = torchvision_model = None
    if args.compare_torchvision:
        import torchvision

        torchvision_version = torchvision.__version__
        torchvision_model = COMPARABLE[cfg.MODEL.META_ARCHITECTURE][0]
    report = {
        "config_file": args.config_file,
        "task": args.task,
        "opts": list(args.opts or []),
        "torch": torch.__version__,
        "torchvision": torchvision_version,
        "torchvision_model": torchvision_model,
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "warmup": args.warmup,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        **result,
    }
    if args.relative_to:
        try:
            report["relative"] = relative_speed(report, other, args.relative_to)
        except BenchmarkError as e:
            parser.error(str(e))
    print(markdown(report))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers for tests of retinadet and of its plug-ins: configs by model-zoo name, a small RetinaNet and
its batches, temporary registrations, the repository's tools, random boxes.

Needs neither pytest nor a checkout, except ``load_tool`` (the scripts under ``tools/``).
"""
import contextlib
import importlib.util
import os
import subprocess
from types import ModuleType
from typing import Any, Dict, Iterator, List, Optional

import torch
from torch import Tensor, nn

__all__ = [
    "QUICK_CONFIG", "QUICK_NUM_CLASSES", "QUICK_SIZE",
    "config_file", "get_config", "solver_config", "quick_cfg", "quick_model", "quick_batch", "spread_scores", "hand_matched",
    "registered", "load_tool", "run_together", "random_boxes", "clustered_boxes",
]

# The small RetinaNet of the model tests: ResNet-18 with GroupNorm, a 64-channel FPN, K = 3 classes.
QUICK_CONFIG = "quick/retinanet_R_18_synthetic.yaml"
QUICK_NUM_CLASSES = 3
QUICK_SIZE = (64, 96)


def config_file(name: str) -> str:
    """The path of the model-zoo config ``name`` (``"quick/retinanet_R_18_shapes_tiny.yaml"``)."""
    from retinadet import model_zoo

    return model_zoo.get_config_file(name)


def get_config(name: str, *opts: Any):
    """``get_cfg()`` with the model-zoo config ``name`` merged, then ``KEY VALUE`` overrides ``opts``."""
    from retinadet.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config_file(name))
    cfg.merge_from_list([str(o) for o in opts])
    return cfg


def solver_config(**solver: Any):
    """The default config with the given ``SOLVER.<KEY>=value`` set (no checks: tests set any value)."""
    from retinadet.config import get_cfg

    cfg = get_cfg()
    for key, value in solver.items():
        setattr(cfg.SOLVER, key, value)
    return cfg


def quick_cfg(*opts: Any):
    """The quick RetinaNet config (QUICK_CONFIG) with ``KEY VALUE`` overrides."""
    return get_config(QUICK_CONFIG, *opts)


def quick_model(*opts: Any, seed: int = 0) -> nn.Module:
    """The quick RetinaNet, built after seeding torch with ``seed``."""
    from retinadet.modeling import build_model

    torch.manual_seed(seed)
    return build_model(quick_cfg(*opts))


def quick_batch(num_images: int = 2, height: int = QUICK_SIZE[0], width: int = QUICK_SIZE[1],
                seed: int = 0) -> List[Dict[str, Tensor]]:
    """A synthetic batch (``make_synthetic_batch``) of the quick config's classes."""
    from retinadet.utils.synthetic import make_synthetic_batch

    return make_synthetic_batch(num_images, height, width, num_classes=QUICK_NUM_CLASSES, seed=seed)


def spread_scores(model: nn.Module, seed: int = 0) -> None:
    """Make a RetinaNet's class logits vary from anchor to anchor (scores 0.05 - 0.7), as after some
    training; with the prior bias alone every score is 0.01, below the 0.05 test threshold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bias = model.head.cls_score.bias
        bias.copy_(torch.rand(bias.shape, generator=g) * 4.0 - 3.0)
        model.head.cls_score.weight.mul_(30.0)


def hand_matched(model: nn.Module, batch: List[Dict[str, Tensor]]) -> List[Dict[str, Any]]:
    """Per image, from a RetinaNet's dense outputs and its matcher alone (not its loss code): a dict
    with "logits" (R, K), "deltas" (R, 4), "anchors" (R, 4) xyxy, "labels" (R,) matcher labels,
    "valid" (R,) bool (not IGNORE), "targets" (R, K) one-hot classes of the POSITIVE anchors,
    "box" the smooth-L1 (beta 0.1) sum over the foreground's encoded gt boxes, "num_pos"."""
    from retinadet.modeling.losses import smooth_l1_loss
    from retinadet.modeling.matchers import IGNORE, POSITIVE

    with torch.no_grad():
        logits, deltas, anchors = model.forward_features(model.preprocess_image(batch))
    logits, deltas, anchors = torch.cat(logits, 1), torch.cat(deltas, 1), torch.cat(anchors)
    images = []
    for i, item in enumerate(batch):
        matched_idxs, labels = model.matcher(item["boxes"], anchors)
        pos = labels == POSITIVE
        targets = torch.zeros_like(logits[i])
        targets[pos.nonzero()[:, 0], item["labels"][matched_idxs[pos]]] = 1.0
        gt_deltas = model.box_coder.encode(item["boxes"][matched_idxs[pos]], anchors[pos])
        images.append({
            "logits": logits[i], "deltas": deltas[i], "anchors": anchors, "labels": labels,
            "valid": labels != IGNORE, "targets": targets, "num_pos": int(pos.sum()),
            "box": smooth_l1_loss(deltas[i][pos], gt_deltas, beta=0.1).sum().item(),
        })
    return images


@contextlib.contextmanager
def registered(registry: Any, obj: Any, name: Optional[str] = None) -> Iterator[str]:
    """Register ``obj`` in ``registry`` under ``name`` (default: its ``__name__``) for the duration of
    the block, then remove it (registries are global). Yields the name."""
    name = name or obj.__name__
    if name in registry:
        raise KeyError(f"'{name}' is already registered in the {registry._name} registry; pick another name.")
    registry._obj_map[name] = obj
    try:
        yield name
    finally:
        registry._obj_map.pop(name, None)


def load_tool(name: str) -> ModuleType:
    """The script ``tools/<name>.py`` of this checkout, imported from its file (``sys.path`` untouched)
    so a test can call its functions. FileNotFoundError outside a checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "tools", f"{name}.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tools/{name}.py not found at {path}: load_tool needs a source checkout.")
    spec = importlib.util.spec_from_file_location(f"retinadet_tools_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_together(commands: Dict[str, List[str]], cwd: Optional[str] = None,
                 envs: Optional[Dict[str, Dict[str, str]]] = None, timeout: float = 300) -> Dict[str, tuple]:
    """Start every ``commands[name]`` (an argv) at once, each with ``envs[name]`` when given (else this
    process's environment), and wait for all: {name: (exit status, stdout, stderr)}. Commands that each
    spend seconds importing torch overlap their start-up."""
    processes = {
        name: subprocess.Popen(argv, cwd=cwd, env=(envs or {}).get(name), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, argv in commands.items()
    }
    results = {}
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=timeout)
        results[name] = (process.returncode, stdout, stderr)
    return results


def random_boxes(generator: torch.Generator, n: int, extent: float = 100.0, max_size: float = 40.0,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` random ``(n, 4)`` xyxy boxes with corners in [0, extent) and sides in [0, max_size)."""
    xy = torch.rand(n, 2, generator=generator, dtype=torch.float64) * extent
    wh = torch.rand(n, 2, generator=generator, dtype=torch.float64) * max_size
    return torch.cat([xy, xy + wh], dim=1).to(dtype)


def clustered_boxes(generator: torch.Generator, n: int, clusters: int, jitter: float = 3.0,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` ``(n, 4)`` xyxy boxes jittered around ``clusters`` centres on a 1/4-pixel grid, so NMS
    suppresses most of them and many IoUs tie exactly."""
    centres = random_boxes(generator, clusters, extent=400.0, max_size=60.0, dtype=torch.float64) + 5.0
    pick = torch.randint(clusters, (n,), generator=generator)
    noise = torch.randn(n, 4, generator=generator, dtype=torch.float64) * jitter
    boxes = torch.round((centres[pick] + noise) * 4) / 4
    return boxes.to(dtype)

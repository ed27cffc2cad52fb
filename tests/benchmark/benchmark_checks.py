"""The configs the benchmark tests run, and checks of the figures a report holds for one model."""
import statistics
import sys
from pathlib import Path

import pytest

from retinadet.config import get_cfg

REPO = Path(__file__).resolve().parents[2]
QUICK = str(REPO / "configs" / "quick" / "retinanet_R_18_synthetic.yaml")
SHAPES_TINY = str(REPO / "configs" / "quick" / "retinanet_R_18_shapes_tiny.yaml")
RCNN_TINY = str(REPO / "configs" / "quick" / "faster_rcnn_R_18_shapes_tiny.yaml")
COCO = str(REPO / "configs" / "COCO-Detection" / "retinanet_R_50_FPN_1x.yaml")
TORCHVISION = str(REPO / "configs" / "torchvision" / "retinanet_R_50_FPN.yaml")
RCNN_TORCHVISION = str(REPO / "configs" / "torchvision" / "faster_rcnn_R_50_FPN.yaml")


def frozen_config(path, *opts):
    """The config at ``path`` with KEY VALUE ``opts``, frozen."""
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def check_model_size(f, model=None, image_size=(64, 96)):
    """The parameter and FLOP entries of one model (its counts when ``model`` is given)."""
    params = f["parameters"]
    assert 0 < params["trainable"] <= params["total"]
    if model is not None:
        assert params == {"total": sum(p.numel() for p in model.parameters()),
                          "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    flops = f["flops"]
    assert flops["image_size"] == list(image_size)
    assert flops["per_image"] == sum(flops["by_operator"].values()) > 0
    assert flops["gflops_per_image"] == pytest.approx(flops["per_image"] / 1e9)
    assert flops["by_operator"]["conv"] > 0 and all(n > 0 for n in flops["uncounted_ops"].values())


def size_row(label, f):
    """The start of the markdown row the size table prints for one model."""
    p, flops = f["parameters"], f["flops"]
    return (f"| {label} | {p['total'] / 1e6:.2f}M | {p['trainable'] / 1e6:.2f}M | {flops['gflops_per_image']:.3f} "
            "| {}x{} | ".format(*flops["image_size"]))


def check_model_figures(f, images_per_iteration, iters=2):
    """The figures of one model agree with its per-iteration times."""
    times = f["times"]
    assert len(times) == iters and all(t > 0 for t in times)
    median = statistics.median(times)
    assert f["images_per_iteration"] == images_per_iteration
    assert f["s_per_iteration"] == pytest.approx(median)
    assert f["iterations_per_s"] == pytest.approx(1.0 / median)
    assert f["images_per_s"] == pytest.approx(f["iterations_per_s"] * images_per_iteration)
    assert f["s_per_image"] == pytest.approx(median / images_per_iteration)
    low, high = f["s_per_iteration_iqr"]
    assert min(times) <= low <= median <= high <= max(times)
    assert f["peak_memory_mib"] > 0
    if sys.platform.startswith("linux"):  # the peak RSS is reset per step, so the step's growth is known
        assert 0 <= f["step_extra_memory_mib"] < f["peak_memory_mib"]

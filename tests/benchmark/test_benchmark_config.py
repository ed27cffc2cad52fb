"""retinadet.benchmark.config: loading a benchmark's config, its number of classes and default image size."""
import pytest
import torch

from retinadet.benchmark import BenchmarkError
from retinadet.benchmark.config import config_value, default_size, load_config, num_classes, registered
from tests.benchmark.benchmark_checks import COCO, QUICK, RCNN_TINY, SHAPES_TINY, frozen_config


def test_default_synthetic_size():
    # COCO: 800 x ceil(1.5 * 800 / 32) * 32 = 800 x 1216, under the 1333 cap; quick: 384 capped at 320.
    assert default_size(frozen_config(COCO)) == (800, 1216)
    assert default_size(frozen_config(QUICK)) == (256, 320)


def test_num_classes_follows_the_meta_architecture():
    # The quick RetinaNet's K is MODEL.RETINANET.NUM_CLASSES; the Faster R-CNN's MODEL.ROI_HEADS.NUM_CLASSES.
    assert num_classes(frozen_config(QUICK, "MODEL.RETINANET.NUM_CLASSES", "7")) == 7
    rcnn = frozen_config(RCNN_TINY, "MODEL.ROI_HEADS.NUM_CLASSES", "5", "MODEL.RETINANET.NUM_CLASSES", "9")
    assert num_classes(rcnn) == 5
    assert config_value(rcnn, "MODEL.META_ARCHITECTURE") == "GeneralizedRCNN"


def test_load_config_applies_overrides_and_device_then_freezes():
    cfg = load_config(QUICK, ["SOLVER.IMS_PER_BATCH", "3"], device="cpu")
    assert cfg.SOLVER.IMS_PER_BATCH == 3 and cfg.MODEL.DEVICE == "cpu" and cfg.is_frozen()


@pytest.mark.parametrize("config_file, opts, device, message", [
    ("configs/nope.yaml", [], None, "--config-file 'configs/nope.yaml' does not exist"),
    (QUICK, ["MODEL.RETINANET.NUM_CLASSE", "5"], None, "Did you mean 'MODEL.RETINANET.NUM_CLASSES'"),
    (QUICK, [], "gpu", "device 'gpu': "),
    (QUICK, [], "cuda:0", "asked for, but CUDA is not available"),
])
def test_load_config_errors_name_the_value(config_file, opts, device, message):
    if device == "cuda:0" and torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(BenchmarkError) as error:
        load_config(config_file, opts, device)
    assert message in str(error.value)


def test_registered_needs_every_name(tmp_path):
    cfg = frozen_config(SHAPES_TINY, "DATASETS.ROOT", str(tmp_path))
    assert registered(cfg, ["shapes_train_tiny"])
    assert not registered(cfg, []) and not registered(cfg, ["shapes_train_tiny", "nope"])

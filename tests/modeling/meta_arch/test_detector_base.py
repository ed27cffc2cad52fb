"""What RetinaNet and GeneralizedRCNN share (meta_arch/base.py): parts built backbone -> neck -> the
rest, the batch padded to the backbone's size_divisibility, detections rescaled to the inputs' sizes."""
from pathlib import Path

import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling.meta_arch import GeneralizedRCNN, RetinaNet
from retinadet.modeling.meta_arch.base import DetectorBase
from retinadet.modeling.meta_arch.postprocess import rescale_to_inputs
from retinadet.utils.testing import quick_cfg

RCNN_TINY = str(Path(__file__).resolve().parents[3] / "configs" / "quick" / "faster_rcnn_R_18_shapes_tiny.yaml")


def _rcnn_cfg():
    cfg = get_cfg()
    cfg.merge_from_file(RCNN_TINY)
    return cfg


@pytest.mark.parametrize("cls, cfg_fn", [(RetinaNet, quick_cfg), (GeneralizedRCNN, _rcnn_cfg)])
def test_padding_follows_the_backbones_size_divisibility(cls, cfg_fn):
    args = cls.from_config(cfg_fn())
    assert list(args)[:4] == ["backbone", "neck", "pixel_mean", "pixel_std"]
    args["backbone"].size_divisibility = 64  # an instance value, read when the detector is built
    model = cls(**args)
    assert isinstance(model, DetectorBase) and model.size_divisibility == 64
    images = model.preprocess_image([{"image": torch.zeros(3, 65, 96, dtype=torch.uint8)}])
    assert images.tensor.shape[-2:] == (128, 128) and images.image_sizes == [(65, 96)]


def test_retinanet_refuses_no_candidates_or_detections():
    for key in ("MODEL.RETINANET.TOPK_CANDIDATES_TEST", "MODEL.RETINANET.DETECTIONS_PER_IMAGE"):
        args = RetinaNet.from_config(quick_cfg(key, 0))
        with pytest.raises(ValueError, match=r"RetinaNet topk_candidates = .* must both be >= 1"):
            RetinaNet(**args)


def test_rescale_to_inputs():
    dets = [{"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0]])}, {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}]
    out = rescale_to_inputs(dets, [(50, 100), (8, 8)], [{"height": 100, "width": 50}, {}])
    assert out[0]["boxes"].tolist() == [[5.0, 40.0, 15.0, 80.0]]  # x halved, y doubled
    assert out[1] is dets[1]
    assert rescale_to_inputs(dets, [(50, 100), (8, 8)], None) == dets

"""The detectron2 COCO config builds detectron2's RetinaNet R50-FPN and takes its converted weights."""
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.checkpoint import convert_detectron2, load_model_weights
from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.losses import SmoothL1Loss

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs" / "COCO-Detection" / "retinanet_R_50_FPN_1x.yaml"


def _converter_tests_module():
    """tests/checkpoint/test_converters.py, loaded by path (test folders are not packages)."""
    path = REPO / "tests" / "checkpoint" / "test_converters.py"
    spec = importlib.util.spec_from_file_location("_detectron2_state_dict_source", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cfg():
    c = get_cfg()
    c.merge_from_file(str(CONFIG))
    c.freeze()
    return c


@pytest.fixture(scope="module")
def model(cfg):
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_config_values_are_detectron2s(cfg):
    assert cfg.INPUT.FORMAT == "BGR"
    assert cfg.MODEL.PIXEL_MEAN == [103.53, 116.28, 123.675]  # B, G, R
    assert cfg.MODEL.PIXEL_STD == [1.0, 1.0, 1.0]
    assert cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN"
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2
    assert cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE == "res5"
    assert cfg.MODEL.BOX_LOSS.NAME == "SmoothL1Loss" and cfg.MODEL.BOX_LOSS.BETA == 0.0  # plain L1, as Base-RetinaNet.yaml of detectron2 sets it
    assert cfg.MODEL.RETINANET.LOSS_NORMALIZER_MOMENTUM == 0.9
    assert cfg.MODEL.RETINANET.NORMALIZE_PER_IMAGE is False
    assert cfg.MODEL.RETINANET.NUM_CLASSES == 80
    assert cfg.MODEL.ANCHOR_GENERATOR.OFFSET == 0.0
    assert cfg.MODEL.MATCHER.THRESHOLDS == [0.4, 0.5]
    assert cfg.MODEL.MATCHER.ALLOW_LOW_QUALITY_MATCHES is True


def test_built_model_has_detectron2s_structure(model):
    backbone = model.backbone
    # MSRA ResNet: the stage's stride sits on the first 1x1 conv, the 3x3 keeps stride 1.
    assert backbone.layer2[0].conv1.stride == (2, 2)
    assert backbone.layer2[0].conv2.stride == (1, 1)
    assert backbone.layer3[0].conv1.stride == (2, 2) and backbone.layer4[0].conv1.stride == (2, 2)
    # P6 from C5: 2048 input channels (P5 would give 256).
    assert model.neck.top_convs[0].in_channels == 2048
    assert model.neck.top_convs[1].in_channels == 256
    assert isinstance(model.box_loss, SmoothL1Loss) and model.box_loss.beta == 0.0
    assert model.loss_normalizer_momentum == 0.9
    assert model.num_classes == 80
    assert model.head.cls_score.out_channels == 9 * 80
    assert torch.equal(model.pixel_mean.flatten(), torch.tensor([103.53, 116.28, 123.675]))
    assert torch.equal(model.pixel_std.flatten(), torch.ones(3))
    norms = [m for m in backbone.modules() if isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm))]
    assert norms == []  # every backbone norm is a FrozenBatchNorm2d
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules()) == 53
    # FREEZE_AT 2: stem and res2 frozen, res3 trainable.
    assert not any(p.requires_grad for p in backbone.layer1.parameters())
    assert not backbone.conv1.weight.requires_grad
    assert all(p.requires_grad for p in backbone.layer2.parameters())


def test_bgr_mean_is_subtracted_in_input_order(model):
    # An image whose channels hold exactly the BGR means normalises to 0 everywhere.
    image = torch.tensor([103.53, 116.28, 123.675]).view(3, 1, 1).expand(3, 64, 64)
    images = model.preprocess_image([{"image": image}])
    assert images.tensor.shape == (1, 3, 64, 64)
    assert images.tensor.abs().max() < 1e-4


def test_forward_shapes_on_a_small_image(model):
    image = torch.randint(0, 256, (3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        logits, deltas, anchors = model.forward_features(model.preprocess_image([{"image": image}]))
    # Locations per level: 8x8 + 4x4 + 2x2 + 1x1 + 1x1 = 86; R = 9 * 86 = 774.
    assert torch.cat(logits, 1).shape == (1, 774, 80)
    assert torch.cat(deltas, 1).shape == (1, 774, 4)
    assert torch.cat(anchors).shape == (774, 4)


def test_detectron2_weights_load_without_missing_or_unexpected_keys(model):
    state = _converter_tests_module().detectron2_retinanet_r50_state_dict(num_classes=80)
    converted = convert_detectron2(state)
    report = load_model_weights(model, converted)
    assert report["missing"] == [] and report["unexpected"] == [] and report["skipped_shape"] == []
    own = model.state_dict()
    # Every model tensor is filled; only pixel_mean/std and 5 cell-anchor buffers are dropped.
    assert set(own) == set(converted)
    assert len(converted) == len(state) - 7
    for key, value in converted.items():
        assert torch.equal(own[key], value), key
    # A few spot checks of the renaming through the loaded model.
    assert torch.equal(model.backbone.layer4[2].conv3.weight, state["backbone.bottom_up.res5.2.conv3.weight"])
    stem_var = state["backbone.bottom_up.stem.conv1.norm.running_var"]
    assert torch.equal(model.backbone.bn1.running_var, stem_var)
    assert torch.equal(model.neck.top_convs[0].weight, state["backbone.top_block.p6.weight"])
    assert torch.equal(model.head.cls_score.bias, state["head.cls_score.bias"])

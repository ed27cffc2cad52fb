"""Tests of the torchvision and detectron2 key converters."""
import pickle
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection import (
    RetinaNet,
    retinanet_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from retinadet.checkpoint import (
    convert_detectron2,
    convert_torchvision_resnet,
    convert_torchvision_retinanet,
    detect_format,
    load_checkpoint_file,
)

NUM_CLASSES = 5
NUM_ANCHORS = 9


def _torchvision_state_dict(builder) -> Dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = builder(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    return model.state_dict()


@pytest.fixture(scope="module")
def tv_v1() -> Dict[str, torch.Tensor]:
    return _torchvision_state_dict(retinanet_resnet50_fpn)


@pytest.fixture(scope="module")
def tv_v2() -> Dict[str, torch.Tensor]:
    return _torchvision_state_dict(retinanet_resnet50_fpn_v2)


def expected_neck_names(num_levels: int = 3, norm: bool = False) -> Set[str]:
    """retinadet FPN names: lateral/output convs per level (+ norms), P6/P7 convs."""
    names = set()
    for i in range(num_levels):
        for module in ("lateral", "output"):
            if norm:
                names |= {f"neck.{module}_convs.{i}.weight"}
                names |= {f"neck.{module}_norms.{i}.{p}" for p in ("weight", "bias")}
            else:
                names |= {f"neck.{module}_convs.{i}.{p}" for p in ("weight", "bias")}
    names |= {f"neck.top_convs.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    return names


def expected_head_names(num_convs: int = 4, norm: bool = False) -> Set[str]:
    """retinadet head names: nn.Sequential of [conv, (norm), relu] x num_convs per subnet.

    Without norm the convs sit at 0, 2, 4, 6 (with bias); with norm at 0, 3, 6, 9 (no bias,
    as torchvision's Conv2dNormActivation drops it) and the norms at 1, 4, 7, 10.
    """
    names = set()
    for subnet, out in (("cls_subnet", "cls_score"), ("bbox_subnet", "bbox_pred")):
        for k in range(num_convs):
            if norm:
                names.add(f"head.{subnet}.{3 * k}.weight")
                names |= {f"head.{subnet}.{3 * k + 1}.{p}" for p in ("weight", "bias")}
            else:
                names |= {f"head.{subnet}.{2 * k}.{p}" for p in ("weight", "bias")}
        names |= {f"head.{out}.{p}" for p in ("weight", "bias")}
    return names


def check_names(converted: Dict[str, torch.Tensor], body_keys: List[str], norm_head: bool) -> None:
    """The converted names are exactly backbone.<torchvision resnet name> + neck + head."""
    backbone = {k for k in converted if k.startswith("backbone.")}
    assert backbone == {"backbone." + k for k in body_keys}
    assert {k for k in converted if k.startswith("neck.")} == expected_neck_names()
    assert {k for k in converted if k.startswith("head.")} == expected_head_names(norm=norm_head)
    assert len(converted) == len(body_keys) + 16 + (28 if norm_head else 20)


def _body_keys(state_dict: Dict[str, torch.Tensor]) -> List[str]:
    prefix = "backbone.body."
    return [k[len(prefix) :] for k in state_dict if k.startswith(prefix)]


def _same_tensors(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> bool:
    return sorted(map(id, a.values())) == sorted(map(id, b.values()))


def test_torchvision_v1_names_and_values(tv_v1):
    out = convert_torchvision_retinanet(tv_v1)
    body = _body_keys(tv_v1)
    # torchvision's R50 body: stem conv + BN (1 + 5 tensors), 16 bottlenecks of 3 convs + 3 BNs
    # (18 tensors each), 4 downsample conv + BN (6 each): 6 + 288 + 24 = 318.
    assert len(body) == 318
    check_names(out, body, norm_head=False)
    assert _same_tensors(out, tv_v1)  # every tensor kept once, none copied or lost
    pairs = {
        "backbone.conv1.weight": "backbone.body.conv1.weight",
        "backbone.layer3.5.conv2.weight": "backbone.body.layer3.5.conv2.weight",
        "backbone.layer1.0.downsample.1.running_var": (
            "backbone.body.layer1.0.downsample.1.running_var"
        ),
        "neck.lateral_convs.2.weight": "backbone.fpn.inner_blocks.2.0.weight",
        "neck.output_convs.0.bias": "backbone.fpn.layer_blocks.0.0.bias",
        "neck.top_convs.0.weight": "backbone.fpn.extra_blocks.p6.weight",
        "neck.top_convs.1.bias": "backbone.fpn.extra_blocks.p7.bias",
        "head.cls_subnet.0.weight": "head.classification_head.conv.0.0.weight",
        "head.cls_subnet.6.bias": "head.classification_head.conv.3.0.bias",
        "head.cls_score.weight": "head.classification_head.cls_logits.weight",
        "head.bbox_subnet.4.weight": "head.regression_head.conv.2.0.weight",
        "head.bbox_pred.bias": "head.regression_head.bbox_reg.bias",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(out[ours], tv_v1[theirs]), ours
    assert out["neck.lateral_convs.2.weight"].shape == (256, 2048, 1, 1)
    assert out["head.cls_score.weight"].shape == (NUM_ANCHORS * NUM_CLASSES, 256, 3, 3)
    assert out["neck.top_convs.0.weight"].shape == (256, 256, 3, 3)  # v1: P6 from P5


def test_torchvision_v2_gn_head_indices(tv_v2):
    out = convert_torchvision_retinanet(tv_v2)
    check_names(out, _body_keys(tv_v2), norm_head=True)
    assert _same_tensors(out, tv_v2)
    subnets = (("cls_subnet", "classification_head"), ("bbox_subnet", "regression_head"))
    for k in range(4):
        for subnet, theirs in subnets:
            src = f"head.{theirs}.conv.{k}"
            assert out[f"head.{subnet}.{3 * k}.weight"] is tv_v2[f"{src}.0.weight"]
            assert out[f"head.{subnet}.{3 * k + 1}.weight"] is tv_v2[f"{src}.1.weight"]
            assert out[f"head.{subnet}.{3 * k + 1}.bias"] is tv_v2[f"{src}.1.bias"]
    assert out["neck.top_convs.0.weight"].shape == (256, 2048, 3, 3)  # v2: P6 from C5


def test_torchvision_old_head_and_fpn_layout_gives_same_result(tv_v1):
    # The layouts torchvision still upgrades on load: head conv.{2k}.* (nn.Sequential of conv,
    # relu) and FPN inner_blocks.{i}.* (a bare conv). See _v1_to_v2_weights in retinanet.py
    # and FeaturePyramidNetwork._load_from_state_dict.
    old = {}
    for key, value in tv_v1.items():
        for head in ("classification_head", "regression_head"):
            for k in range(4):
                key = key.replace(f"head.{head}.conv.{k}.0.", f"head.{head}.conv.{2 * k}.")
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(3):
                key = key.replace(f"backbone.fpn.{block}.{i}.0.", f"backbone.fpn.{block}.{i}.")
        old[key] = value
    assert "head.classification_head.conv.6.weight" in old
    assert "backbone.fpn.inner_blocks.1.weight" in old
    new_result = convert_torchvision_retinanet(tv_v1)
    old_result = convert_torchvision_retinanet(old)
    assert old_result.keys() == new_result.keys()
    assert all(old_result[k] is new_result[k] for k in new_result)


def test_torchvision_fpn_with_norm_maps_to_norm_lists():
    fpn = torchvision.ops.FeaturePyramidNetwork([512, 1024, 2048], 256, norm_layer=nn.BatchNorm2d)
    state = {"backbone.fpn." + k: v for k, v in fpn.state_dict().items()}
    out = convert_torchvision_retinanet(state)
    assert out["neck.lateral_convs.1.weight"] is state["backbone.fpn.inner_blocks.1.0.weight"]
    assert (
        out["neck.lateral_norms.1.running_mean"]
        is state["backbone.fpn.inner_blocks.1.1.running_mean"]
    )
    assert out["neck.output_norms.2.bias"] is state["backbone.fpn.layer_blocks.2.1.bias"]
    # 3 levels x 2 blocks x (conv weight + 5 BatchNorm tensors); torchvision drops the conv bias.
    assert len(out) == len(state) == 36


def test_torchvision_unknown_key_is_named(tv_v1):
    state = dict(tv_v1)
    state["head.classification_head.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"head\.classification_head\.extra\.weight"):
        convert_torchvision_retinanet(state)


def test_torchvision_resnet_drops_fc_and_prefixes():
    resnet = torchvision.models.resnet18().state_dict()
    out = convert_torchvision_resnet(resnet)
    assert set(out) == {"backbone." + k for k in resnet if not k.startswith("fc.")}
    assert len(out) == len(resnet) - 2
    assert out["backbone.layer2.0.downsample.0.weight"] is resnet["layer2.0.downsample.0.weight"]
    with pytest.raises(ValueError, match="avgpool.weight"):
        convert_torchvision_resnet({**resnet, "avgpool.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------- detectron2

# (blocks, bottleneck channels, output channels) of res2..res5.
_R50_STAGES = [(3, 64, 256), (4, 128, 512), (6, 256, 1024), (3, 512, 2048)]


def detectron2_retinanet_r50_state_dict(num_classes: int = 80) -> Dict[str, torch.Tensor]:
    """A synthetic detectron2 RetinaNet R50-FPN state dict (FrozenBN, no head norm).

    Names follow facebookresearch/detectron2: modeling/backbone/resnet.py (BasicStem "stem.conv1",
    stages "res2".."res5" of BottleneckBlock conv1..conv3 + "shortcut" on block 0),
    layers/wrappers.py (a conv's norm is its ".norm" child), layers/batch_norm.py
    (FrozenBatchNorm2d: weight, bias, running_mean, running_var), modeling/backbone/fpn.py
    (FPN "bottom_up", "fpn_lateral{3,4,5}", "fpn_output{3,4,5}", "top_block" = LastLevelP6P7
    p6 / p7 on C5), modeling/meta_arch/retinanet.py (RetinaNetHead cls_subnet / bbox_subnet as
    [conv, ReLU] x 4, cls_score, bbox_pred; RetinaNet pixel_mean / pixel_std buffers) and
    modeling/anchor_generator.py (cell_anchors BufferList, present in older checkpoints).
    """
    gen = torch.Generator().manual_seed(0)
    shapes: List[Tuple[str, Tuple[int, ...]]] = []

    def conv(name: str, out_c: int, in_c: int, k: int, norm: bool = True) -> None:
        shapes.append((f"{name}.weight", (out_c, in_c, k, k)))
        if norm:
            buffers = ("weight", "bias", "running_mean", "running_var")
            shapes.extend((f"{name}.norm.{p}", (out_c,)) for p in buffers)
        else:
            shapes.append((f"{name}.bias", (out_c,)))

    conv("backbone.bottom_up.stem.conv1", 64, 3, 7)
    in_c = 64
    for stage, (blocks, mid, out_c) in zip(range(2, 6), _R50_STAGES):
        for i in range(blocks):
            prefix = f"backbone.bottom_up.res{stage}.{i}"
            if i == 0:
                conv(f"{prefix}.shortcut", out_c, in_c, 1)
            conv(f"{prefix}.conv1", mid, in_c, 1)
            conv(f"{prefix}.conv2", mid, mid, 3)
            conv(f"{prefix}.conv3", out_c, mid, 1)
            in_c = out_c
    for level, channels in zip((3, 4, 5), (512, 1024, 2048)):
        conv(f"backbone.fpn_lateral{level}", 256, channels, 1, norm=False)
        conv(f"backbone.fpn_output{level}", 256, 256, 3, norm=False)
    conv("backbone.top_block.p6", 256, 2048, 3, norm=False)
    conv("backbone.top_block.p7", 256, 256, 3, norm=False)
    for subnet in ("cls_subnet", "bbox_subnet"):
        for k in range(4):
            conv(f"head.{subnet}.{2 * k}", 256, 256, 3, norm=False)
    conv("head.cls_score", NUM_ANCHORS * num_classes, 256, 3, norm=False)
    conv("head.bbox_pred", NUM_ANCHORS * 4, 256, 3, norm=False)
    shapes += [("pixel_mean", (3, 1, 1)), ("pixel_std", (3, 1, 1))]
    shapes += [(f"anchor_generator.cell_anchors.{i}", (NUM_ANCHORS, 4)) for i in range(5)]
    return {name: torch.randn(shape, generator=gen) for name, shape in shapes}


@pytest.fixture(scope="module")
def d2_state() -> Dict[str, torch.Tensor]:
    return detectron2_retinanet_r50_state_dict()


def _frozen_resnet50_backbone_shapes() -> Dict[str, Tuple[int, ...]]:
    """backbone.<name> -> shape of torchvision's resnet50 with FrozenBatchNorm2d, fc removed."""
    resnet = torchvision.models.resnet50(norm_layer=FrozenBatchNorm2d)
    return {
        f"backbone.{k}": tuple(v.shape)
        for k, v in resnet.state_dict().items()
        if not k.startswith("fc.")
    }


def test_detectron2_full_key_set_and_shapes(d2_state):
    out = convert_detectron2(d2_state)
    backbone = {k: tuple(v.shape) for k, v in out.items() if k.startswith("backbone.")}
    assert backbone == _frozen_resnet50_backbone_shapes()
    assert {k for k in out if k.startswith("neck.")} == expected_neck_names()
    assert {k for k in out if k.startswith("head.")} == expected_head_names()
    # Everything but pixel_mean, pixel_std and 5 cell-anchor buffers is kept.
    assert len(out) == len(d2_state) - 7
    assert out["backbone.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert out["neck.top_convs.0.weight"].shape == (256, 2048, 3, 3)
    assert out["neck.lateral_convs.0.weight"].shape == (256, 512, 1, 1)
    assert out["head.cls_score.weight"].shape == (720, 256, 3, 3)
    assert out["head.bbox_pred.weight"].shape == (36, 256, 3, 3)
    pairs = {
        "backbone.conv1.weight": "backbone.bottom_up.stem.conv1.weight",
        "backbone.bn1.running_var": "backbone.bottom_up.stem.conv1.norm.running_var",
        "backbone.layer4.2.conv3.weight": "backbone.bottom_up.res5.2.conv3.weight",
        "backbone.layer2.1.bn2.bias": "backbone.bottom_up.res3.1.conv2.norm.bias",
        "backbone.layer3.0.downsample.0.weight": "backbone.bottom_up.res4.0.shortcut.weight",
        "backbone.layer3.0.downsample.1.weight": "backbone.bottom_up.res4.0.shortcut.norm.weight",
        "neck.lateral_convs.0.bias": "backbone.fpn_lateral3.bias",
        "neck.output_convs.2.weight": "backbone.fpn_output5.weight",
        "neck.top_convs.1.weight": "backbone.top_block.p7.weight",
        "head.cls_subnet.6.weight": "head.cls_subnet.6.weight",
    }
    for ours, theirs in pairs.items():
        assert out[ours] is d2_state[theirs], ours


def test_detectron2_fpn_norm_goes_to_norm_lists():
    state = {
        "backbone.fpn_lateral3.weight": torch.zeros(256, 512, 1, 1),
        "backbone.fpn_lateral3.norm.weight": torch.ones(256),
        "backbone.fpn_output4.norm.bias": torch.ones(256),
    }
    out = convert_detectron2(state)
    assert set(out) == {
        "neck.lateral_convs.0.weight",
        "neck.lateral_norms.0.weight",
        "neck.output_norms.1.bias",
    }


def test_detectron2_unknown_key_is_named(d2_state):
    state = dict(d2_state)
    state["backbone.bottom_up.res5.0.conv2_offset.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"res5\.0\.conv2_offset\.weight"):
        convert_detectron2(state)


def test_detectron2_model_zoo_pkl_roundtrip(d2_state, tmp_path):
    path = tmp_path / "model_final.pkl"
    zoo = {
        "model": {k: v.numpy() for k, v in d2_state.items()},
        "__author__": "Detectron2 Model Zoo",
    }
    with open(path, "wb") as f:
        pickle.dump(zoo, f)
    loaded = load_checkpoint_file(str(path))
    assert detect_format(loaded) == "detectron2"
    assert loaded.keys() == d2_state.keys()
    for key, value in loaded.items():
        assert isinstance(value, torch.Tensor) and torch.equal(value, d2_state[key]), key
    out = convert_detectron2(loaded)
    source = d2_state["backbone.bottom_up.res5.2.conv3.weight"]
    assert torch.equal(out["backbone.layer4.2.conv3.weight"], source)
    assert out["backbone.layer4.2.conv3.weight"].dtype == torch.float32


def test_detect_format(tv_v1, d2_state):
    assert detect_format(tv_v1) == "torchvision"
    assert detect_format(d2_state) == "detectron2"
    assert detect_format(torchvision.models.resnet18().state_dict()) == "torchvision_resnet"
    assert detect_format(convert_torchvision_retinanet(tv_v1)) == "retinadet"
    with pytest.raises(ValueError, match="decoder.weight"):
        detect_format({"decoder.weight": torch.zeros(1)})


# ---------------------------------------------------------------------------- whole model

REPO = Path(__file__).resolve().parents[2]
_TV_CONFIG = REPO / "configs" / "torchvision" / "retinanet_R_50_FPN.yaml"


def _build_torchvision_config_model() -> nn.Module:
    if not _TV_CONFIG.exists():
        pytest.skip(f"{_TV_CONFIG} is not there")
    from retinadet.config import get_cfg
    from retinadet.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(_TV_CONFIG))
    cfg.MODEL.WEIGHTS = ""
    return build_model(cfg).eval()


def _torchvision_retinanet_frozen_bn(num_classes: int) -> nn.Module:
    """torchvision's retinanet_resnet50_fpn as its COCO weights were trained: FrozenBN backbone."""
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50",
        weights=None,
        norm_layer=FrozenBatchNorm2d,
        trainable_layers=3,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )
    return RetinaNet(backbone, num_classes=num_classes).eval()


def test_converted_torchvision_weights_load_strictly_and_match_outputs():
    torch.manual_seed(0)
    ours = _build_torchvision_config_model()
    theirs = _torchvision_retinanet_frozen_bn(num_classes=91)
    # FrozenBatchNorm2d starts as the identity; other values make a wrong mapping show.
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    converted = convert_torchvision_retinanet(theirs.state_dict())
    ours.load_state_dict(converted, strict=True)  # no missing, no unexpected keys

    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        tv_features = list(theirs.backbone(x).values())  # P3..P7
        our_features = list(ours.neck(ours.backbone(x)).values())
        assert len(our_features) == len(tv_features) == 5
        for ours_f, tv_f in zip(our_features, tv_features):
            torch.testing.assert_close(ours_f, tv_f, rtol=1e-4, atol=1e-4)
        tv_head = theirs.head(tv_features)
        logits_per_level, deltas_per_level = ours.head(our_features)
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat(logits_per_level, 1), tv_head["cls_logits"], **tol)
    torch.testing.assert_close(torch.cat(deltas_per_level, 1), tv_head["bbox_regression"], **tol)

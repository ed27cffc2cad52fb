"""torchvision Faster R-CNN weights -> retinadet's GeneralizedRCNN: names, background-last classifier,
format detection, tools/convert_weights.py, and errors on other state dicts."""
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn, retinanet_resnet50_fpn

from retinadet.checkpoint import (
    convert_torchvision_faster_rcnn,
    convert_torchvision_retinanet,
    detect_format,
    load_model_weights,
    load_weights,
)
from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.utils.testing import load_tool

REPO = Path(__file__).resolve().parents[2]
TV_CLASSES = 5  # torchvision: background + 4 classes; retinadet: 4 classes + background last


@pytest.fixture(scope="module")
def tv_state():
    torch.manual_seed(0)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=TV_CLASSES)
    return model.state_dict()


@pytest.fixture(scope="module")
def ours():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "torchvision" / "faster_rcnn_R_50_FPN.yaml"))
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", str(TV_CLASSES - 1)])
    torch.manual_seed(1)
    return build_model(cfg)


def test_names_are_exactly_the_models(tv_state, ours):
    converted = convert_torchvision_faster_rcnn(tv_state)
    ours_keys = set(ours.state_dict())
    # torchvision's nn.BatchNorm2d (weights=None) counts batches; our FrozenBN has no counter.
    counters = {k for k in converted if k.endswith("num_batches_tracked")}
    assert len(counters) == 53  # stem + 16 bottlenecks x 3 + 4 downsample norms
    assert set(converted) - counters == ours_keys
    pairs = {
        "backbone.layer4.2.conv3.weight": "backbone.body.layer4.2.conv3.weight",
        "neck.lateral_convs.0.weight": "backbone.fpn.inner_blocks.0.0.weight",
        "neck.output_convs.3.bias": "backbone.fpn.layer_blocks.3.0.bias",
        "proposal_generator.head.conv.weight": "rpn.head.conv.0.0.weight",
        "proposal_generator.head.objectness_logits.bias": "rpn.head.cls_logits.bias",
        "proposal_generator.head.anchor_deltas.weight": "rpn.head.bbox_pred.weight",
        "roi_heads.box_head.fc1.weight": "roi_heads.box_head.fc6.weight",
        "roi_heads.box_head.fc2.bias": "roi_heads.box_head.fc7.bias",
    }
    for mine, theirs in pairs.items():
        assert converted[mine] is tv_state[theirs], mine
    report = load_model_weights(ours, converted)
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"], report


def test_background_moves_last_and_its_boxes_go(tv_state):
    converted = convert_torchvision_faster_rcnn(tv_state)
    p = "roi_heads.box_predictor."
    cls_w, cls_b = tv_state[p + "cls_score.weight"], tv_state[p + "cls_score.bias"]
    box_w, box_b = tv_state[p + "bbox_pred.weight"], tv_state[p + "bbox_pred.bias"]
    assert cls_w.shape == (5, 1024) and box_w.shape == (20, 1024)
    new_w, new_b = converted[p + "cls_score.weight"], converted[p + "cls_score.bias"]
    new_box_w, new_box_b = converted[p + "bbox_pred.weight"], converted[p + "bbox_pred.bias"]
    for label in range(1, TV_CLASSES):  # torchvision label L is ours L - 1
        assert torch.equal(new_w[label - 1], cls_w[label])
        assert torch.equal(new_b[label - 1], cls_b[label])
        rows = slice(4 * (label - 1), 4 * label)
        assert torch.equal(new_box_w[rows], box_w[4 * label : 4 * label + 4])
        assert torch.equal(new_box_b[rows], box_b[4 * label : 4 * label + 4])
    assert torch.equal(new_w[TV_CLASSES - 1], cls_w[0]) and torch.equal(new_b[TV_CLASSES - 1], cls_b[0])
    assert new_box_w.shape == (16, 1024) and new_box_b.shape == (16,)
    assert tv_state[p + "cls_score.bias"] is cls_b  # the input is left as it was


def test_old_rpn_conv_name_is_accepted(tv_state):
    old = {("rpn.head.conv." + k[len("rpn.head.conv.0.0."):] if k.startswith("rpn.head.conv.0.0.") else k): v
           for k, v in tv_state.items()}
    assert "rpn.head.conv.weight" in old
    converted = convert_torchvision_faster_rcnn(old)
    assert converted["proposal_generator.head.conv.weight"] is tv_state["rpn.head.conv.0.0.weight"]
    assert set(converted) == set(convert_torchvision_faster_rcnn(tv_state))


def test_detect_format_and_load_weights_of_a_torchvision_file(tv_state, ours, tmp_path):
    assert detect_format(tv_state) == "torchvision_faster_rcnn"
    assert detect_format(ours.state_dict()) == "retinadet"  # our roi_heads.* names are not torchvision's
    path = tmp_path / "tv_frcnn.pth"
    torch.save(tv_state, path)
    report = load_weights(ours, str(path))
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"]
    assert torch.equal(ours.roi_heads.box_head.fc1.weight, tv_state["roi_heads.box_head.fc6.weight"])


def _tool():
    return load_tool("convert_weights")


def test_tool_converts_and_the_result_loads(tv_state, ours, tmp_path, capsys):
    src, out = tmp_path / "tv.pth", tmp_path / "ours.pth"
    torch.save({"model": tv_state}, src)
    tool = _tool()
    assert tool.main(["--source", "torchvision", "--input", str(src), "--output", str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["__source__"] == "torchvision"
    assert detect_format(saved["model"]) == "retinadet"
    report = load_weights(ours, str(out))
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"]
    background = tv_state["roi_heads.box_predictor.cls_score.bias"][0]
    assert torch.equal(ours.roi_heads.box_predictor.cls_score.bias[-1], background)
    # The wrong --source is refused with the layout it found.
    assert tool.main(["--source", "detectron2", "--input", str(src), "--output", str(tmp_path / "x.pth")]) == 1
    assert "torchvision_faster_rcnn layout" in capsys.readouterr().err


def test_errors_on_other_state_dicts(tv_state):
    torch.manual_seed(0)
    retinanet = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=3).state_dict()
    # RetinaNet's P6/P7 convs and its dense head are named.
    message = "24 key\\(s\\) of the torchvision Faster R-CNN state dict are not recognised: 'backbone.fpn.extra"
    with pytest.raises(ValueError, match=message):
        convert_torchvision_faster_rcnn(retinanet)
    with pytest.raises(ValueError, match="not recognised: 'rpn.head.conv.0.0.weight'"):
        convert_torchvision_retinanet(tv_state)
    # fasterrcnn_resnet50_fpn_v2 has a two-conv RPN head and a conv box head.
    v2_like = dict(tv_state)
    v2_like["rpn.head.conv.1.0.weight"] = v2_like["roi_heads.box_head.0.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="2 key\\(s\\) .* 'rpn.head.conv.1.0.weight', 'roi_heads.box_head.0.0.weight'"):
        convert_torchvision_faster_rcnn(v2_like)
    with pytest.raises(ValueError, match="Unrecognised checkpoint layout"):
        detect_format({"encoder.layer.0.weight": torch.zeros(1)})
    bad = dict(tv_state, **{"roi_heads.box_predictor.bbox_pred.bias": torch.zeros(6)})
    with pytest.raises(ValueError, match="bbox_pred.bias has 6 rows"):
        convert_torchvision_faster_rcnn(bad)

"""Tests of GeneralizedRCNN (Faster R-CNN + FPN): training and inference on the quick config, the
config files, input checks, and a seconds-long train_net run."""
import math
from pathlib import Path

import pytest
import torch

from retinadet.config import get_cfg
from retinadet.modeling import build_model
from retinadet.modeling.meta_arch import GeneralizedRCNN
from retinadet.utils.synthetic import make_synthetic_batch

REPO = Path(__file__).resolve().parents[3]
QUICK = str(REPO / "configs" / "quick" / "faster_rcnn_R_18_shapes_tiny.yaml")
NUM_CLASSES = 6
H, W = 128, 160


def _cfg(path=QUICK, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list([str(o) for o in opts])
    return cfg


def _model(*opts, seed=0):
    torch.manual_seed(seed)
    return build_model(_cfg(QUICK, *opts))


def _batch(num_images=2, seed=0):
    return make_synthetic_batch(num_images, H, W, num_classes=NUM_CLASSES, seed=seed)


def test_training_losses_finite_and_every_part_gets_gradients():
    model = _model().train()
    losses = model(_batch())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), (name, value)
    # Fresh heads: objectness ~0 gives BCE ~log 2, and a near-uniform softmax over K + 1 = 7 classes ~log 7.
    assert losses["loss_rpn_cls"].item() == pytest.approx(math.log(2.0), abs=0.05)
    assert losses["loss_cls"].item() == pytest.approx(math.log(NUM_CLASSES + 1), abs=0.2)
    sum(losses.values()).backward()
    for name in ("backbone.conv1.weight", "neck.lateral_convs.0.weight", "proposal_generator.head.conv.weight",
                 "proposal_generator.head.objectness_logits.weight", "proposal_generator.head.anchor_deltas.weight",
                 "roi_heads.box_head.fc1.weight", "roi_heads.box_predictor.cls_score.weight",
                 "roi_heads.box_predictor.bbox_pred.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_a_few_sgd_steps_lower_the_loss_on_one_batch():
    model = _model().train()
    batch = _batch()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(6):
        torch.manual_seed(0)  # the same samples each step
        loss = sum(model(batch).values())
        totals.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert totals[-1] < totals[0]


def test_inference_format_and_rescale():
    model = _model().eval()
    with torch.no_grad():
        # Spread class scores so that detections pass the 0.05 threshold of a fresh model.
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.linspace(-1.0, 3.0, NUM_CLASSES + 1))
    batch = _batch()
    inputs = [{"image": x["image"]} for x in batch]
    with torch.no_grad():
        plain = model(inputs)
        doubled = model([{**x, "height": 2 * H, "width": 2 * W} for x in inputs])
    assert len(plain) == 2
    for det, big in zip(plain, doubled):
        assert set(det) == {"boxes", "scores", "labels"}
        assert 0 < len(det["boxes"]) <= 100
        assert det["labels"].dtype == torch.int64
        assert det["labels"].min() >= 0 and det["labels"].max() < NUM_CLASSES
        assert torch.all(det["scores"] > 0.05) and torch.all(det["scores"][:-1] >= det["scores"][1:])
        assert det["boxes"][:, 0::2].max() <= W and det["boxes"][:, 1::2].max() <= H
        torch.testing.assert_close(big["boxes"], det["boxes"] * 2)
        assert torch.equal(big["labels"], det["labels"])


def test_training_checks_labels_against_roi_heads_num_classes():
    model = _model().train()
    batch = _batch(1)
    batch[0]["labels"] = torch.tensor([0, NUM_CLASSES, 1])
    with pytest.raises(ValueError, match=f"= {NUM_CLASSES} is outside \\[0, {NUM_CLASSES}\\)"):
        model(batch)
    batch = _batch(1)
    del batch[0]["boxes"]
    with pytest.raises(ValueError, match="lacks 'boxes' or 'labels'"):
        model(batch)


def test_image_without_objects_trains():
    model = _model().train()
    batch = _batch(2)
    batch[1]["boxes"] = torch.zeros(0, 4)
    batch[1]["labels"] = torch.zeros(0, dtype=torch.int64)
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_coco_config_is_detectron2s_faster_rcnn():
    cfg = _cfg(REPO / "configs" / "COCO-Detection" / "faster_rcnn_R_50_FPN_1x.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.INPUT.FORMAT == "BGR"
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 1000 and cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN == 2000
    assert cfg.MODEL.RPN.SMOOTH_L1_BETA == 0.0 and cfg.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED
    assert cfg.SOLVER.BASE_LR == 0.02 and cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    model = build_model(cfg)
    assert isinstance(model, GeneralizedRCNN)
    assert list(model.neck.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    assert len(model.neck.top_convs) == 0 and model.neck.top_block == "maxpool"
    assert model.proposal_generator.head.num_anchors == 3
    assert model.proposal_generator.anchor_generator.strides == [4, 8, 16, 32, 64]
    assert model.roi_heads.box_predictor.cls_score.out_features == 81
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 320
    assert model.roi_heads.box_head.fc1.in_features == 256 * 7 * 7


def test_torchvision_config_values():
    cfg = _cfg(REPO / "configs" / "torchvision" / "faster_rcnn_R_50_FPN.yaml")
    assert cfg.MODEL.ANCHOR_GENERATOR.NAME == "TorchvisionAnchorGenerator" and cfg.INPUT.FORMAT == "RGB"
    assert cfg.MODEL.RPN.MIN_SIZE == 1e-3 and cfg.MODEL.RPN.SMOOTH_L1_BETA == pytest.approx(1 / 9)
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 2000 and cfg.MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST == 1e-2
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 90 and cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO == 2
    assert not cfg.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED


def test_shapes_configs_share_retinanets_backbone_data_and_schedule():
    ours = _cfg(REPO / "configs" / "shapes" / "faster_rcnn_R_18_FPN.yaml")
    theirs = _cfg(REPO / "configs" / "shapes" / "retinanet_R_18_FPN.yaml")
    assert ours.MODEL.RESNETS.OUT_FEATURES == ["res2", "res3", "res4", "res5"]  # P2 needs res2
    ours.MODEL.RESNETS.OUT_FEATURES = theirs.MODEL.RESNETS.OUT_FEATURES
    for key in ("MODEL.RESNETS", "MODEL.BACKBONE", "MODEL_EMA", "DATASETS", "INPUT", "SOLVER", "SEED",
                "TEST.VIS_IMAGES", "MODEL.FPN.OUT_CHANNELS"):
        a, b = ours, theirs
        for part in key.split("."):
            a, b = a[part], b[part]
        assert a == b, key
    # The RPN's one anchor size per level P2-P6 spans RetinaNet's sizes on P3-P5 (times its scales).
    sizes, scales = theirs.MODEL.ANCHOR_GENERATOR.SIZES, theirs.MODEL.ANCHOR_GENERATOR.SCALES
    assert min(ours.MODEL.ANCHOR_GENERATOR.SIZES) <= min(sizes) and max(ours.MODEL.ANCHOR_GENERATOR.SIZES) >= max(sizes) * max(scales)
    tiny, tiny_retinanet = _cfg(QUICK), _cfg(REPO / "configs" / "quick" / "retinanet_R_18_shapes_tiny.yaml")
    for key in ("DATASETS", "INPUT", "SOLVER", "DATALOADER"):
        assert tiny[key] == tiny_retinanet[key], key
    assert tiny.MODEL.ROI_HEADS.NUM_CLASSES == NUM_CLASSES and tiny.MODEL.ROI_BOX_HEAD.FC_DIM == 256


def test_train_net_runs_the_tiny_config(tmp_path):
    from retinadet.engine import train_net
    out = tmp_path / "run"
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", QUICK, "DATASETS.ROOT", str(tmp_path / "datasets"), "OUTPUT_DIR", str(out),
         "SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "[3]", "TRAIN.LOSS_CURVE", "False"]
    )
    results = train_net.main(args)
    assert (out / "model_final.pth").is_file()
    assert 0.0 <= results["bbox"]["AP"] <= 100.0 or math.isnan(results["bbox"]["AP"])
    from retinadet.utils.writers import read_metrics

    lines = [line for line in read_metrics(str(out / "metrics.json")) if "total_loss" in line]
    assert len(lines) == 4
    for line in lines:
        total = line["loss_rpn_cls"] + line["loss_rpn_loc"] + line["loss_cls"] + line["loss_box_reg"]
        assert line["total_loss"] == pytest.approx(total, rel=1e-5)

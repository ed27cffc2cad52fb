"""detectron2 YAML configs: recognised by their keys, translated from detectron2's defaults, nothing dropped.

The YAML below is written for these tests in detectron2's format (its key names, its ``eval`` anchor
sizes and its Python-literal strings such as ``("coco_2017_train",)``); the expected values are
detectron2's defaults as its config/defaults.py states them.
"""
import pytest

from retinadet.config import get_cfg
from retinadet.config.detectron2 import disposition_table
from retinadet.config.detectron2_keys import DETECTRON2_KEYS
from retinadet.modeling import build_model
from retinadet.utils.testing import config_file

D2_RETINANET_BASE = """\
MODEL:
  META_ARCHITECTURE: "RetinaNet"
  BACKBONE:
    NAME: "build_retinanet_resnet_fpn_backbone"
  RESNETS:
    OUT_FEATURES: ["res3", "res4", "res5"]
  ANCHOR_GENERATOR:
    SIZES: !!python/object/apply:eval ["[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in [32, 64, 128, 256, 512 ]]"]
  FPN:
    IN_FEATURES: ["res3", "res4", "res5"]
  RETINANET:
    IOU_THRESHOLDS: [0.4, 0.5]
    IOU_LABELS: [0, -1, 1]
    SMOOTH_L1_LOSS_BETA: 0.0
DATASETS:
  TRAIN: ("coco_2017_train",)
  TEST: ("coco_2017_val",)
SOLVER:
  IMS_PER_BATCH: 16
  BASE_LR: 0.01
  STEPS: (60000, 80000)
  MAX_ITER: 90000
INPUT:
  MIN_SIZE_TRAIN: (640, 672, 704, 736, 768, 800)
VERSION: 2
"""

D2_RCNN_BASE = """\
MODEL:
  META_ARCHITECTURE: "GeneralizedRCNN"
  BACKBONE:
    NAME: "build_resnet_fpn_backbone"
  RESNETS:
    OUT_FEATURES: ["res2", "res3", "res4", "res5"]
  FPN:
    IN_FEATURES: ["res2", "res3", "res4", "res5"]
  ANCHOR_GENERATOR:
    SIZES: [[32], [64], [128], [256], [512]]
    ASPECT_RATIOS: [[0.5, 1.0, 2.0]]
  RPN:
    IN_FEATURES: ["p2", "p3", "p4", "p5", "p6"]
    PRE_NMS_TOPK_TRAIN: 2000
    PRE_NMS_TOPK_TEST: 1000
    POST_NMS_TOPK_TRAIN: 1000
    POST_NMS_TOPK_TEST: 1000
  ROI_HEADS:
    NAME: "StandardROIHeads"
    IN_FEATURES: ["p2", "p3", "p4", "p5"]
  ROI_BOX_HEAD:
    NAME: "FastRCNNConvFCHead"
    NUM_FC: 2
    POOLER_RESOLUTION: 7
  ROI_MASK_HEAD:
    NAME: "MaskRCNNConvUpsampleHead"
    NUM_CONV: 4
    POOLER_RESOLUTION: 14
SOLVER:
  IMS_PER_BATCH: 16
  BASE_LR: 0.02
  STEPS: (60000, 80000)
  MAX_ITER: 90000
VERSION: 2
"""


def _files(tmp_path, base_text, child_text):
    (tmp_path / "Base.yaml").write_text(base_text)
    (tmp_path / "COCO").mkdir()
    child = tmp_path / "COCO" / "model.yaml"
    child.write_text('_BASE_: "../Base.yaml"\n' + child_text)
    return str(child)


def _load(path, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def test_a_detectron2_retinanet_config_starts_from_detectron2s_defaults(tmp_path):
    path = _files(tmp_path, D2_RETINANET_BASE, "MODEL:\n  WEIGHTS: \"\"\n  RESNETS:\n    DEPTH: 50\n")
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "RetinaNet" and cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE == "res5"
    # detectron2's defaults where they differ from retinadet's:
    assert cfg.INPUT.FORMAT == "BGR" and cfg.MODEL.PIXEL_MEAN == [103.53, 116.28, 123.675]
    assert cfg.MODEL.PIXEL_STD == [1.0, 1.0, 1.0] and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is True
    assert cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE == "value" and cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE == 1.0
    assert cfg.DATALOADER.NUM_WORKERS == 4 and cfg.MODEL.RESNETS.RES2_OUT_CHANNELS == 256
    assert cfg.MODEL.MATCHER.CROWD_IOA_THRESHOLD > 1  # detectron2 drops crowd boxes: none ignored
    assert cfg.MODEL.DEVICE == "cpu"  # the machine's choice: detectron2's "cuda" default is not imposed
    # the file's values, translated:
    assert cfg.MODEL.BOX_LOSS.NAME == "SmoothL1Loss" and cfg.MODEL.BOX_LOSS.BETA == 0.0
    assert cfg.MODEL.MATCHER.THRESHOLDS == [0.4, 0.5]
    assert cfg.MODEL.MATCHER.LABELS == ["NEGATIVE", "IGNORE", "POSITIVE"]
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [32.0, 64.0, 128.0, 256.0, 512.0]
    assert cfg.MODEL.ANCHOR_GENERATOR.SCALES == [1.0, 2 ** (1.0 / 3), 2 ** (2.0 / 3)]
    assert cfg.DATASETS.TRAIN == ("coco_2017_train",) and cfg.SOLVER.STEPS == (60000, 80000)
    assert cfg.INPUT.MIN_SIZE_TRAIN == [640, 672, 704, 736, 768, 800]
    assert cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.WEIGHT_DECAY_BIAS == 0.0001
    assert cfg.MODEL.RETINANET.DETECTIONS_PER_IMAGE == 100 and cfg.MODEL.HEAD.PRIOR_PROB == 0.01


def test_it_builds_the_same_model_as_our_detectron2_parity_config(tmp_path):
    path = _files(tmp_path, D2_RETINANET_BASE, "MODEL:\n  WEIGHTS: \"\"\n  RESNETS:\n    DEPTH: 50\n")
    ours = build_model(_load(config_file("COCO-Detection/retinanet_R_50_FPN_1x.yaml")))
    theirs = build_model(_load(path))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert repr(ours.anchor_generator) == repr(theirs.anchor_generator)


def test_a_detectron2_faster_rcnn_config_translates_and_builds(tmp_path):
    path = _files(tmp_path, D2_RCNN_BASE, "MODEL:\n  MASK_ON: False\n  RESNETS:\n    DEPTH: 18\n"
                                          "    RES2_OUT_CHANNELS: 64\n")
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and cfg.MODEL.FPN.TOP_BLOCK == "maxpool"
    assert cfg.MODEL.ROI_BOX_HEAD.NAME == "FastRCNNFCHead" and cfg.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED is True
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [32.0, 64.0, 128.0, 256.0, 512.0]
    assert cfg.MODEL.ANCHOR_GENERATOR.SCALES == [1.0]
    assert cfg.MODEL.RPN.IOU_LABELS == ["NEGATIVE", "IGNORE", "POSITIVE"] and cfg.MODEL.RPN.IOU_THRESHOLDS == [0.3, 0.7]
    assert cfg.MODEL.ROI_HEADS.IOU_LABELS == ["NEGATIVE", "POSITIVE"]
    assert cfg.MODEL.RPN.SAMPLER.BATCH_SIZE_PER_IMAGE == 256 and cfg.MODEL.ROI_HEADS.SAMPLER.POSITIVE_FRACTION == 0.25
    model = build_model(cfg)
    assert model.roi_heads.box_head.output_size == 1024


def test_a_users_file_may_add_detectron2_and_retinadet_keys(tmp_path):
    path = _files(tmp_path, D2_RETINANET_BASE, "SOLVER:\n  BASE_LR: 0.005\nDATASETS:\n  ROOT: /data\n"
                                               "MODEL:\n  DEVICE: cpu\n")
    cfg = _load(path)
    assert cfg.SOLVER.BASE_LR == 0.005 and cfg.DATASETS.ROOT == "/data" and cfg.MODEL.DEVICE == "cpu"


@pytest.mark.parametrize("child, message", [
    ("MODEL:\n  MASK_ON: True\n", r"MODEL\.MASK_ON = True \(from file .*model\.yaml\) asks for what retinadet lacks: "
                                  r"retinadet has no mask head"),
    ("MODEL:\n  BACKBONE:\n    NAME: build_resnet_backbone\n", r"MODEL\.BACKBONE\.NAME = 'build_resnet_backbone'.* "
                                                                r"accepted: 'build_retinanet_resnet_fpn_backbone'"),
    ("MODEL:\n  META_ARCHITECTURE: PanopticFPN\n", r"MODEL\.META_ARCHITECTURE = 'PanopticFPN'.*accepted: 'RetinaNet'"),
    ("SOLVER:\n  BASE_LR: fast\n", r"SOLVER\.BASE_LR = 'fast' \(from file .*model\.yaml\) has the wrong type: str; "
                                   r"detectron2's default is 0\.001"),
    ("MODEL:\n  RESNETS:\n    DEFORM_ON_PER_STAGE: [False, True, True, True]\n", r"deformable convolutions"),
    ("MODEL:\n  RETINANET:\n    BBOX_REG_LOSS_TYPE: diou\n", r"accepted: 'smooth_l1', 'giou'"),
])
def test_what_retinadet_lacks_is_refused_naming_key_value_and_file(tmp_path, child, message):
    with pytest.raises(ValueError, match=message):
        _load(_files(tmp_path, D2_RETINANET_BASE, child))


def test_an_unknown_key_is_named_with_the_closest_detectron2_key(tmp_path):
    with pytest.raises(KeyError, match=r"Unknown config key 'MODEL\.RETINANET\.IOU_THRESHOLD' .*neither detectron2's "
                                       r"nor retinadet's\. Did you mean 'MODEL\.RETINANET\.IOU_THRESHOLDS'"):
        _load(_files(tmp_path, D2_RETINANET_BASE, "MODEL:\n  RETINANET:\n    IOU_THRESHOLD: [0.4, 0.5]\n"))


def test_every_detectron2_key_has_a_documented_disposition():
    rows = disposition_table()
    assert len(rows) >= len(DETECTRON2_KEYS)
    assert {row[0] for row in rows} >= set(DETECTRON2_KEYS)
    for key, what, detail in rows:
        assert what and detail, key
    ignored = [row for row in rows if row[1] == "ignored"]
    assert all(len(detail) > 20 for _, _, detail in ignored)  # each says why it changes nothing


def test_our_own_configs_are_not_taken_for_detectron2s():
    cfg = _load(config_file("shapes/retinanet_R_18_FPN.yaml"))
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.MATCHER.CROWD_IOA_THRESHOLD == 0.5


def test_the_documented_list_is_current():
    """docs/detectron2_keys.md is the table of every key's disposition; regenerate it with
    python tools/detectron2_keys_doc.py when detectron2_keys.py changes."""
    from retinadet.utils.testing import load_tool

    tool = load_tool("detectron2_keys_doc")
    with open(tool.DEFAULT_OUTPUT) as f:
        assert f.read() == tool.render()

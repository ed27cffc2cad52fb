"""Every key of detectron2's config (detectron2/config/defaults.py, config VERSION 2), with its default and
what retinadet does with it. The values are detectron2's defaults as that file states them; the
dispositions are ours:

- ``Map("RETINADET.KEY", convert)``: the value (converted) becomes that retinadet key. Keys translated
  together (anchor sizes, matcher labels, the backbone name, ...) are ``Joint``: detectron2.py reads them.
- ``Fixed(reason, allowed)``: a feature retinadet lacks; only the listed value(s) are accepted, any other
  is an error naming the key, the value and the reason.
- ``Ignored(reason)``: changes nothing here whatever its value (the reason says why).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

__all__ = ["Map", "Joint", "Fixed", "Ignored", "DETECTRON2_KEYS", "LABEL_NAMES", "IGNORED_SECTIONS", "IGNORED_SECTION_REASON",
           "JOINT_GROUPS"]

# detectron2's matcher labels -> retinadet's.
LABEL_NAMES = {0: "NEGATIVE", -1: "IGNORE", 1: "POSITIVE"}


@dataclass(frozen=True)
class Map:
    """The value becomes ``target`` (``convert(value)`` when given)."""

    target: str
    convert: Optional[Callable[[Any], Any]] = None


@dataclass(frozen=True)
class Joint:
    """Translated together with other keys by ``detectron2.py`` (the group names the translator)."""

    group: str


@dataclass(frozen=True)
class Fixed:
    """Only ``allowed`` values are accepted: anything else asks for a feature retinadet lacks."""

    reason: str
    allowed: Tuple[Any, ...]


@dataclass(frozen=True)
class Ignored:
    """Changes nothing in retinadet, whatever its value."""

    reason: str


_MASKS = "used only by mask, keypoint or panoptic models, which retinadet refuses (MODEL.MASK_ON, META_ARCHITECTURE)"
_DEFORM = "used only with deformable convolutions (RESNETS.DEFORM_ON_PER_STAGE), which retinadet refuses"
_CASCADE = "used only by CascadeROIHeads, which retinadet refuses (ROI_HEADS.NAME)"
_FED = "used only with the federated loss (ROI_BOX_HEAD.USE_FED_LOSS), which retinadet refuses"


def _ints(value: Any) -> list:
    return [int(v) for v in value]


def _floats(value: Any) -> list:
    return [float(v) for v in value]


# Joint group -> what the translation does with its keys (retinadet/config/detectron2.py).
JOINT_GROUPS = {
    "device": "MODEL.DEVICE, only when the file sets it (otherwise the machine's choice, retinadet's default)",
    "architecture": "META_ARCHITECTURE, BACKBONE.NAME and ROI_HEADS.NAME together: RetinaNet with "
                    "build_retinanet_resnet_fpn_backbone -> RetinaNet on ResNet-FPN with P6 from C5; GeneralizedRCNN "
                    "with build_resnet_fpn_backbone and StandardROIHeads -> Faster R-CNN on ResNet-FPN with a "
                    "max-pooled P6; anything else is refused",
    "anchors": "SIZES (one list per level, or one list for all) and ASPECT_RATIOS -> ANCHOR_GENERATOR.SIZES (a base "
               "size per level) x SCALES (the multipliers every level shares) and ASPECT_RATIOS",
    "retinanet_matcher": "-> MATCHER.THRESHOLDS and MATCHER.LABELS (0, -1, 1 -> NEGATIVE, IGNORE, POSITIVE)",
    "rpn_matcher": "-> RPN.IOU_THRESHOLDS and RPN.IOU_LABELS (0, -1, 1 -> NEGATIVE, IGNORE, POSITIVE)",
    "roi_matcher": "-> ROI_HEADS.IOU_THRESHOLDS and ROI_HEADS.IOU_LABELS (0, 1 -> NEGATIVE, POSITIVE)",
    "retinanet_box_loss": "smooth_l1 -> BOX_LOSS.NAME SmoothL1Loss with BETA = SMOOTH_L1_LOSS_BETA; giou -> GIoULoss",
    "box_head": "FastRCNNConvFCHead -> ROI_BOX_HEAD.NAME FastRCNNFCHead; POOLER_TYPE ROIAlignV2 / ROIAlign -> "
                "POOLER_ALIGNED True / False",
    "detections": "-> RETINANET.DETECTIONS_PER_IMAGE and ROI_HEADS.DETECTIONS_PER_IMAGE",
    "resnet_width": "checked: a bottleneck ResNet's width (NUM_GROUPS x WIDTH_PER_GROUP) must be RES2_OUT_CHANNELS / 4, "
                    "the width retinadet derives from RES2_OUT_CHANNELS (basic-block ResNets do not use it)",
    "weight_decay_bias": "-> SOLVER.WEIGHT_DECAY_BIAS (None: SOLVER.WEIGHT_DECAY, as detectron2 reads it)",
}

# key -> (detectron2's default, disposition)
DETECTRON2_KEYS: Dict[str, Tuple[Any, Any]] = {
    "VERSION": (2, Fixed("the config format version; retinadet reads detectron2's version 2 configs", (2,))),
    "MODEL.LOAD_PROPOSALS": (False, Fixed("precomputed proposals are not supported", (False,))),
    "MODEL.MASK_ON": (False, Fixed("retinadet has no mask head (Mask R-CNN)", (False,))),
    "MODEL.KEYPOINT_ON": (False, Fixed("retinadet has no keypoint head", (False,))),
    "MODEL.DEVICE": ("cuda", Joint("device")),
    "MODEL.META_ARCHITECTURE": ("GeneralizedRCNN", Joint("architecture")),
    "MODEL.WEIGHTS": ("", Map("MODEL.WEIGHTS")),
    "MODEL.PIXEL_MEAN": ([103.530, 116.280, 123.675], Map("MODEL.PIXEL_MEAN", _floats)),
    "MODEL.PIXEL_STD": ([1.0, 1.0, 1.0], Map("MODEL.PIXEL_STD", _floats)),
    "INPUT.MIN_SIZE_TRAIN": ((800,), Map("INPUT.MIN_SIZE_TRAIN", _ints)),
    "INPUT.MIN_SIZE_TRAIN_SAMPLING": ("choice", Map("INPUT.MIN_SIZE_TRAIN_SAMPLING")),
    "INPUT.MAX_SIZE_TRAIN": (1333, Map("INPUT.MAX_SIZE_TRAIN")),
    "INPUT.MIN_SIZE_TEST": (800, Map("INPUT.MIN_SIZE_TEST")),
    "INPUT.MAX_SIZE_TEST": (1333, Map("INPUT.MAX_SIZE_TEST")),
    "INPUT.RANDOM_FLIP": ("horizontal", Map("INPUT.RANDOM_FLIP")),
    "INPUT.CROP.ENABLED": (False, Fixed("random crops are not supported", (False,))),
    "INPUT.CROP.TYPE": ("relative_range", Ignored("used only when INPUT.CROP.ENABLED, which must be False")),
    "INPUT.CROP.SIZE": ([0.9, 0.9], Ignored("used only when INPUT.CROP.ENABLED, which must be False")),
    "INPUT.FORMAT": ("BGR", Map("INPUT.FORMAT")),
    "INPUT.MASK_FORMAT": ("polygon", Ignored(_MASKS)),
    "DATASETS.TRAIN": ((), Map("DATASETS.TRAIN", tuple)),
    "DATASETS.PROPOSAL_FILES_TRAIN": ((), Fixed("precomputed proposals are not supported", ((),))),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": (2000, Ignored("used only with proposal files, which must be ()")),
    "DATASETS.TEST": ((), Map("DATASETS.TEST", tuple)),
    "DATASETS.PROPOSAL_FILES_TEST": ((), Fixed("precomputed proposals are not supported", ((),))),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": (1000, Ignored("used only with proposal files, which must be ()")),
    "DATALOADER.NUM_WORKERS": (4, Map("DATALOADER.NUM_WORKERS")),
    "DATALOADER.ASPECT_RATIO_GROUPING": (True, Map("DATALOADER.ASPECT_RATIO_GROUPING")),
    "DATALOADER.SAMPLER_TRAIN": ("TrainingSampler", Fixed("only the plain training sampler exists here",
                                                          ("TrainingSampler",))),
    "DATALOADER.REPEAT_THRESHOLD": (0.0, Ignored("used only by RepeatFactorTrainingSampler, which is refused")),
    "DATALOADER.REPEAT_SQRT": (True, Ignored("used only by RepeatFactorTrainingSampler, which is refused")),
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": (True, Map("DATALOADER.FILTER_EMPTY_ANNOTATIONS")),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone", Joint("architecture")),
    "MODEL.BACKBONE.FREEZE_AT": (2, Map("MODEL.BACKBONE.FREEZE_AT")),
    "MODEL.FPN.IN_FEATURES": ([], Map("MODEL.FPN.IN_FEATURES", list)),
    "MODEL.FPN.OUT_CHANNELS": (256, Map("MODEL.FPN.OUT_CHANNELS")),
    "MODEL.FPN.NORM": ("", Map("MODEL.FPN.NORM")),
    "MODEL.FPN.FUSE_TYPE": ("sum", Fixed("the FPN adds its top-down and lateral maps", ("sum",))),
    "MODEL.PROPOSAL_GENERATOR.NAME": ("RPN", Fixed("the RPN is the only proposal generator", ("RPN",))),
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": (0, Map("MODEL.RPN.MIN_SIZE", float)),
    "MODEL.ANCHOR_GENERATOR.NAME": ("DefaultAnchorGenerator", Fixed("rotated anchors are not supported",
                                                                    ("DefaultAnchorGenerator",))),
    "MODEL.ANCHOR_GENERATOR.SIZES": ([[32, 64, 128, 256, 512]], Joint("anchors")),
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": ([[0.5, 1.0, 2.0]], Joint("anchors")),
    "MODEL.ANCHOR_GENERATOR.ANGLES": ([[-90, 0, 90]], Ignored("used only by RotatedAnchorGenerator, which is refused")),
    "MODEL.ANCHOR_GENERATOR.OFFSET": (0.0, Map("MODEL.ANCHOR_GENERATOR.OFFSET", float)),
    "MODEL.RPN.HEAD_NAME": ("StandardRPNHead", Map("MODEL.RPN.HEAD_NAME")),
    "MODEL.RPN.IN_FEATURES": (["res4"], Map("MODEL.RPN.IN_FEATURES", list)),
    "MODEL.RPN.BOUNDARY_THRESH": (-1, Fixed("anchors beyond the image border are kept", (-1,))),
    "MODEL.RPN.IOU_THRESHOLDS": ([0.3, 0.7], Joint("rpn_matcher")),
    "MODEL.RPN.IOU_LABELS": ([0, -1, 1], Joint("rpn_matcher")),
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE": (256, Map("MODEL.RPN.SAMPLER.BATCH_SIZE_PER_IMAGE")),
    "MODEL.RPN.POSITIVE_FRACTION": (0.5, Map("MODEL.RPN.SAMPLER.POSITIVE_FRACTION", float)),
    "MODEL.RPN.BBOX_REG_LOSS_TYPE": ("smooth_l1", Fixed("the RPN's box loss is smooth L1", ("smooth_l1",))),
    "MODEL.RPN.BBOX_REG_LOSS_WEIGHT": (1.0, Fixed("the RPN's box loss is not weighted apart (see RPN.LOSS_WEIGHT)",
                                                  (1.0,))),
    "MODEL.RPN.BBOX_REG_WEIGHTS": ((1.0, 1.0, 1.0, 1.0), Map("MODEL.RPN.BBOX_REG_WEIGHTS", _floats)),
    "MODEL.RPN.SMOOTH_L1_BETA": (0.0, Map("MODEL.RPN.SMOOTH_L1_BETA", float)),
    "MODEL.RPN.LOSS_WEIGHT": (1.0, Map("MODEL.RPN.LOSS_WEIGHT", float)),
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": (12000, Map("MODEL.RPN.PRE_NMS_TOPK_TRAIN")),
    "MODEL.RPN.PRE_NMS_TOPK_TEST": (6000, Map("MODEL.RPN.PRE_NMS_TOPK_TEST")),
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": (2000, Map("MODEL.RPN.POST_NMS_TOPK_TRAIN")),
    "MODEL.RPN.POST_NMS_TOPK_TEST": (1000, Map("MODEL.RPN.POST_NMS_TOPK_TEST")),
    "MODEL.RPN.NMS_THRESH": (0.7, Map("MODEL.RPN.NMS_THRESH", float)),
    "MODEL.RPN.CONV_DIMS": ([-1], Fixed("the RPN head has one conv as wide as its input", ([-1],))),
    "MODEL.ROI_HEADS.NAME": ("Res5ROIHeads", Joint("architecture")),
    "MODEL.ROI_HEADS.NUM_CLASSES": (80, Map("MODEL.ROI_HEADS.NUM_CLASSES")),
    "MODEL.ROI_HEADS.IN_FEATURES": (["res4"], Map("MODEL.ROI_HEADS.IN_FEATURES", list)),
    "MODEL.ROI_HEADS.IOU_THRESHOLDS": ([0.5], Joint("roi_matcher")),
    "MODEL.ROI_HEADS.IOU_LABELS": ([0, 1], Joint("roi_matcher")),
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": (512, Map("MODEL.ROI_HEADS.SAMPLER.BATCH_SIZE_PER_IMAGE")),
    "MODEL.ROI_HEADS.POSITIVE_FRACTION": (0.25, Map("MODEL.ROI_HEADS.SAMPLER.POSITIVE_FRACTION", float)),
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": (0.05, Map("MODEL.ROI_HEADS.SCORE_THRESH_TEST", float)),
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": (0.5, Map("MODEL.ROI_HEADS.NMS_THRESH_TEST", float)),
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT": (True, Map("MODEL.ROI_HEADS.PROPOSAL_APPEND_GT")),
    "MODEL.ROI_BOX_HEAD.NAME": ("", Joint("box_head")),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": ("smooth_l1", Fixed("the box head's loss is smooth L1", ("smooth_l1",))),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": (1.0, Fixed("the box head's box loss is not weighted", (1.0,))),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": ((10.0, 10.0, 5.0, 5.0), Map("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", _floats)),
    "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": (0.0, Map("MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", float)),
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": (14, Map("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION")),
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": (0, Map("MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO")),
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": ("ROIAlignV2", Joint("box_head")),
    "MODEL.ROI_BOX_HEAD.NUM_FC": (0, Map("MODEL.ROI_BOX_HEAD.NUM_FC")),
    "MODEL.ROI_BOX_HEAD.FC_DIM": (1024, Map("MODEL.ROI_BOX_HEAD.FC_DIM")),
    "MODEL.ROI_BOX_HEAD.NUM_CONV": (0, Fixed("the box head has fully connected layers only", (0,))),
    "MODEL.ROI_BOX_HEAD.CONV_DIM": (256, Ignored("used only by box-head convs, and ROI_BOX_HEAD.NUM_CONV must be 0")),
    "MODEL.ROI_BOX_HEAD.NORM": ("", Ignored("used only by box-head convs, and ROI_BOX_HEAD.NUM_CONV must be 0")),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (False, Map("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG")),
    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": (False, Fixed("the box head trains on the proposals", (False,))),
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": (False, Fixed("the federated loss is not supported", (False,))),
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": (False, Fixed("the box classifier uses softmax cross entropy", (False,))),
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER": (0.5, Ignored(_FED)),
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES": (50, Ignored(_FED)),
    "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS": (((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0),
                                                     (30.0, 30.0, 15.0, 15.0)), Ignored(_CASCADE)),
    "MODEL.ROI_BOX_CASCADE_HEAD.IOUS": ((0.5, 0.6, 0.7), Ignored(_CASCADE)),
    "MODEL.RETINANET.NUM_CLASSES": (80, Map("MODEL.RETINANET.NUM_CLASSES")),
    "MODEL.RETINANET.IN_FEATURES": (["p3", "p4", "p5", "p6", "p7"], Map("MODEL.HEAD.IN_FEATURES", list)),
    "MODEL.RETINANET.NUM_CONVS": (4, Map("MODEL.HEAD.NUM_CONVS")),
    "MODEL.RETINANET.IOU_THRESHOLDS": ([0.4, 0.5], Joint("retinanet_matcher")),
    "MODEL.RETINANET.IOU_LABELS": ([0, -1, 1], Joint("retinanet_matcher")),
    "MODEL.RETINANET.PRIOR_PROB": (0.01, Map("MODEL.HEAD.PRIOR_PROB", float)),
    "MODEL.RETINANET.SCORE_THRESH_TEST": (0.05, Map("MODEL.RETINANET.SCORE_THRESH_TEST", float)),
    "MODEL.RETINANET.TOPK_CANDIDATES_TEST": (1000, Map("MODEL.RETINANET.TOPK_CANDIDATES_TEST")),
    "MODEL.RETINANET.NMS_THRESH_TEST": (0.5, Map("MODEL.RETINANET.NMS_THRESH_TEST", float)),
    "MODEL.RETINANET.BBOX_REG_WEIGHTS": ((1.0, 1.0, 1.0, 1.0), Map("MODEL.BOX_CODER.WEIGHTS", _floats)),
    "MODEL.RETINANET.FOCAL_LOSS_GAMMA": (2.0, Map("MODEL.CLS_LOSS.GAMMA", float)),
    "MODEL.RETINANET.FOCAL_LOSS_ALPHA": (0.25, Map("MODEL.CLS_LOSS.ALPHA", float)),
    "MODEL.RETINANET.SMOOTH_L1_LOSS_BETA": (0.1, Joint("retinanet_box_loss")),
    "MODEL.RETINANET.BBOX_REG_LOSS_TYPE": ("smooth_l1", Joint("retinanet_box_loss")),
    "MODEL.RETINANET.NORM": ("", Map("MODEL.HEAD.NORM")),
    "MODEL.RESNETS.DEPTH": (50, Map("MODEL.RESNETS.DEPTH")),
    "MODEL.RESNETS.OUT_FEATURES": (["res4"], Map("MODEL.RESNETS.OUT_FEATURES", list)),
    "MODEL.RESNETS.NUM_GROUPS": (1, Fixed("ResNeXt (grouped convolutions) is not supported", (1,))),
    "MODEL.RESNETS.NORM": ("FrozenBN", Map("MODEL.RESNETS.NORM")),
    "MODEL.RESNETS.WIDTH_PER_GROUP": (64, Joint("resnet_width")),
    "MODEL.RESNETS.STRIDE_IN_1X1": (True, Map("MODEL.RESNETS.STRIDE_IN_1X1")),
    "MODEL.RESNETS.RES5_DILATION": (1, Fixed("dilated res5 is not supported", (1,))),
    "MODEL.RESNETS.RES2_OUT_CHANNELS": (256, Map("MODEL.RESNETS.RES2_OUT_CHANNELS")),
    "MODEL.RESNETS.STEM_OUT_CHANNELS": (64, Map("MODEL.RESNETS.STEM_OUT_CHANNELS")),
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": ([False, False, False, False],
                                          Fixed("deformable convolutions are not supported", ([False] * 4,))),
    "MODEL.RESNETS.DEFORM_MODULATED": (False, Ignored(_DEFORM)),
    "MODEL.RESNETS.DEFORM_NUM_GROUPS": (1, Ignored(_DEFORM)),
    "SOLVER.LR_SCHEDULER_NAME": ("WarmupMultiStepLR", Map("SOLVER.LR_SCHEDULER_NAME")),
    "SOLVER.MAX_ITER": (40000, Map("SOLVER.MAX_ITER")),
    "SOLVER.BASE_LR": (0.001, Map("SOLVER.BASE_LR", float)),
    "SOLVER.BASE_LR_END": (0.0, Map("SOLVER.BASE_LR_END", float)),
    "SOLVER.MOMENTUM": (0.9, Map("SOLVER.MOMENTUM", float)),
    "SOLVER.NESTEROV": (False, Map("SOLVER.NESTEROV")),
    "SOLVER.WEIGHT_DECAY": (0.0001, Map("SOLVER.WEIGHT_DECAY", float)),
    "SOLVER.WEIGHT_DECAY_NORM": (0.0, Map("SOLVER.WEIGHT_DECAY_NORM", float)),
    "SOLVER.GAMMA": (0.1, Map("SOLVER.GAMMA", float)),
    "SOLVER.STEPS": ((30000,), Map("SOLVER.STEPS", lambda v: tuple(int(s) for s in v))),
    "SOLVER.NUM_DECAYS": (3, Ignored("used only by WarmupStepWithFixedGammaLR, which is refused")),
    "SOLVER.WARMUP_FACTOR": (1.0 / 1000, Map("SOLVER.WARMUP_FACTOR", float)),
    "SOLVER.WARMUP_ITERS": (1000, Map("SOLVER.WARMUP_ITERS")),
    "SOLVER.WARMUP_METHOD": ("linear", Map("SOLVER.WARMUP_METHOD")),
    "SOLVER.RESCALE_INTERVAL": (False, Ignored("used only by WarmupStepWithFixedGammaLR, which is refused")),
    "SOLVER.CHECKPOINT_PERIOD": (5000, Map("SOLVER.CHECKPOINT_PERIOD")),
    "SOLVER.IMS_PER_BATCH": (16, Map("SOLVER.IMS_PER_BATCH")),
    "SOLVER.REFERENCE_WORLD_SIZE": (0, Fixed("scaling by world size is not supported (retinadet scales by "
                                             "SOLVER.REFERENCE_IMS_PER_BATCH)", (0,))),
    "SOLVER.BIAS_LR_FACTOR": (1.0, Map("SOLVER.BIAS_LR_FACTOR", float)),
    "SOLVER.WEIGHT_DECAY_BIAS": (None, Joint("weight_decay_bias")),
    "SOLVER.CLIP_GRADIENTS.ENABLED": (False, Map("SOLVER.CLIP_GRADIENTS.ENABLED")),
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": ("value", Map("SOLVER.CLIP_GRADIENTS.CLIP_TYPE")),
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": (1.0, Map("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", float)),
    "SOLVER.CLIP_GRADIENTS.NORM_TYPE": (2.0, Map("SOLVER.CLIP_GRADIENTS.NORM_TYPE", float)),
    "SOLVER.AMP.ENABLED": (False, Map("SOLVER.AMP.ENABLED")),
    "TEST.EXPECTED_RESULTS": ([], Ignored("detectron2's own regression check of its results; nothing reads it here")),
    "TEST.EVAL_PERIOD": (0, Map("TEST.EVAL_PERIOD")),
    "TEST.KEYPOINT_OKS_SIGMAS": ([], Ignored(_MASKS)),
    "TEST.DETECTIONS_PER_IMAGE": (100, Joint("detections")),
    "TEST.AUG.ENABLED": (False, Fixed("test-time augmentation is not supported", (False,))),
    "TEST.AUG.MIN_SIZES": ((400, 500, 600, 700, 800, 900, 1000, 1100, 1200),
                           Ignored("used only when TEST.AUG.ENABLED, which must be False")),
    "TEST.AUG.MAX_SIZE": (4000, Ignored("used only when TEST.AUG.ENABLED, which must be False")),
    "TEST.AUG.FLIP": (True, Ignored("used only when TEST.AUG.ENABLED, which must be False")),
    "TEST.PRECISE_BN.ENABLED": (False, Fixed("precise BN statistics are not recomputed", (False,))),
    "TEST.PRECISE_BN.NUM_ITER": (200, Ignored("used only when TEST.PRECISE_BN.ENABLED, which must be False")),
    "OUTPUT_DIR": ("./output", Map("OUTPUT_DIR")),
    "SEED": (-1, Map("SEED")),
    "CUDNN_BENCHMARK": (False, Ignored("only lets cuDNN pick its convolution algorithms; the model is the same")),
    "FLOAT32_PRECISION": ("", Fixed("float32 matmul precision is left at PyTorch's default", ("",))),
    "VIS_PERIOD": (0, Ignored("detectron2 draws training pictures into its event storage; retinadet draws "
                              "test pictures with TEST.VIS_IMAGES")),
    "GLOBAL.HACK": (1.0, Ignored("a detectron2-internal placeholder that nothing reads")),
}

# Sections of mask, keypoint, semantic-segmentation and panoptic models: every key under them is Ignored.
IGNORED_SECTIONS = ("MODEL.ROI_MASK_HEAD.", "MODEL.ROI_KEYPOINT_HEAD.", "MODEL.SEM_SEG_HEAD.", "MODEL.PANOPTIC_FPN.")
IGNORED_SECTION_REASON = _MASKS

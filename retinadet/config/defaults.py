"""Every core config key with its default value, one comment each."""
import math

from .config import CfgNode as CN

_C = CN()
_C.VERSION = 1  # config format version

# ---------------------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "RetinaNet"  # META_ARCH_REGISTRY name of the whole detector
_C.MODEL.PLUGINS = []  # modules or .py files imported before building (they register parts)
_C.MODEL.DEVICE = "cpu"  # device the model is built on: "cpu" or "cuda"
_C.MODEL.WEIGHTS = ""  # path of a checkpoint loaded after building ("" = random init)
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]  # per-channel mean (0-255 scale, INPUT.FORMAT order)
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]  # per-channel std (0-255 scale, INPUT.FORMAT order)
_C.MODEL.CHANNELS_LAST = False  # weights and padded input batches in channels_last (NHWC) memory format
_C.MODEL.COMPILE = False  # torch.compile the dense network (backbone, neck, head); eager with a warning if it fails
# The model exported at start-up and run by torchscript, onnxruntime or openvino (the last two need the [export] extra).
_C.MODEL.INFERENCE_BACKEND = "eager"  # DefaultPredictor / --eval-only runtime: eager, compile, torchscript, onnxruntime, openvino
_C.MODEL.INFERENCE_PRECISION = "float32"  # DefaultPredictor arithmetic: float32, or bfloat16 (eager, compile, openvino)

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "ResNet"  # BACKBONE_REGISTRY name
_C.MODEL.BACKBONE.FREEZE_AT = 2  # freeze the stem (1) and stages res2.. res{FREEZE_AT} (0 = nothing)
_C.MODEL.BACKBONE.WEIGHTS = ""  # torchvision ImageNet ResNet state dict (.pth) loaded into the backbone

_C.MODEL.RESNETS = CN()
_C.MODEL.RESNETS.DEPTH = 50  # 18, 34 (basic blocks), 50, 101 (bottleneck blocks)
_C.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]  # stages returned, from res2 (stride 4) .. res5 (32)
_C.MODEL.RESNETS.NORM = "FrozenBN"  # norm layer: FrozenBN, BN, SyncBN or GN
_C.MODEL.RESNETS.NUM_GROUPS_GN = 32  # number of groups when NORM is GN
_C.MODEL.RESNETS.STRIDE_IN_1X1 = False  # bottleneck stride on the 1x1 conv (MSRA/detectron2) not the 3x3
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64  # channels of the 7x7 stem conv
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 0  # res2 output channels, doubled per stage (0 = standard: 256 bottleneck, 64 basic)

_C.MODEL.NECK = CN()
_C.MODEL.NECK.NAME = "FPN"  # NECK_REGISTRY name

_C.MODEL.FPN = CN()
_C.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]  # backbone features given lateral 1x1 convs
_C.MODEL.FPN.OUT_CHANNELS = 256  # channels of every pyramid level
_C.MODEL.FPN.NORM = ""  # norm after lateral/output convs: "" (none) or GN
_C.MODEL.FPN.TOP_BLOCK_IN_FEATURE = "res5"  # P6 input: "res5" (C5, paper/detectron2) or "p5" (torchvision)
_C.MODEL.FPN.NUM_TOP_LEVELS = 2  # extra levels above the top input (P6, P7)
_C.MODEL.FPN.TOP_BLOCK = "conv"  # top levels: "conv" (3x3 stride 2, RetinaNet) or "maxpool" (P5 subsampled, R-CNN)

_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"  # ANCHOR_GENERATOR_REGISTRY name
_C.MODEL.ANCHOR_GENERATOR.SIZES = [32, 64, 128, 256, 512]  # base anchor size (sqrt of area) per level
_C.MODEL.ANCHOR_GENERATOR.SCALES = [1.0, 2 ** (1.0 / 3), 2 ** (2.0 / 3)]  # size multipliers per location
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [0.5, 1.0, 2.0]  # height / width ratios per location
_C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0  # anchor centre offset in units of the stride (0 = cell corner)

_C.MODEL.MATCHER = CN()
_C.MODEL.MATCHER.NAME = "IoUMatcher"  # MATCHER_REGISTRY name
_C.MODEL.MATCHER.THRESHOLDS = [0.4, 0.5]  # IoU boundaries between the LABELS intervals
_C.MODEL.MATCHER.LABELS = ["NEGATIVE", "IGNORE", "POSITIVE"]  # label of each IoU interval
_C.MODEL.MATCHER.ALLOW_LOW_QUALITY_MATCHES = True  # each gt's best anchors are positive even below 0.5
_C.MODEL.MATCHER.CROWD_IOA_THRESHOLD = 0.5  # negatives covered this much by a crowd region become IGNORE (> 1: off)

_C.MODEL.BOX_CODER = CN()
_C.MODEL.BOX_CODER.NAME = "DeltaXYWHBoxCoder"  # BOX_CODER_REGISTRY name
_C.MODEL.BOX_CODER.WEIGHTS = [1.0, 1.0, 1.0, 1.0]  # multipliers of (dx, dy, dw, dh)
_C.MODEL.BOX_CODER.SCALE_CLAMP = math.log(1000.0 / 16)  # upper clamp of dw, dh before exp() in decode

_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = "RetinaNetHead"  # HEAD_REGISTRY name
_C.MODEL.HEAD.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]  # neck features the head and anchors use
_C.MODEL.HEAD.NUM_CONVS = 4  # 3x3 conv + ReLU layers in each subnet
_C.MODEL.HEAD.NORM = ""  # norm inside the subnets: "" (none) or GN
_C.MODEL.HEAD.PRIOR_PROB = 0.01  # initial foreground probability pi: class bias = -log((1 - pi) / pi)

_C.MODEL.CLS_LOSS = CN()
_C.MODEL.CLS_LOSS.NAME = "SigmoidFocalLoss"  # CLS_LOSS_REGISTRY name of the classification loss
_C.MODEL.CLS_LOSS.ALPHA = 0.25  # weight of the foreground term (1 - ALPHA for background; < 0 = none)
_C.MODEL.CLS_LOSS.GAMMA = 2.0  # focusing parameter of the focal loss (FL and FL*)
_C.MODEL.CLS_LOSS.BETA = 0.0  # shift of FL* (SigmoidFocalLossStar only)

_C.MODEL.BOX_LOSS = CN()
_C.MODEL.BOX_LOSS.NAME = "SmoothL1Loss"  # BOX_LOSS_REGISTRY name of the box-regression loss
_C.MODEL.BOX_LOSS.BETA = 0.1  # transition point of the smooth L1 loss (SmoothL1Loss only)

_C.MODEL.RETINANET = CN()
_C.MODEL.RETINANET.NUM_CLASSES = 80  # number of object classes K (no background class)
_C.MODEL.RETINANET.NORMALIZE_PER_IMAGE = False  # normalise per image then average (torchvision) vs per batch
_C.MODEL.RETINANET.LOSS_NORMALIZER_MOMENTUM = 0.9  # EMA momentum of the foreground count (0 = no EMA)
_C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05  # inference: drop scores at or below this, per level
_C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000  # inference: best candidates kept per level before NMS
_C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5  # inference: IoU threshold of the class-aware NMS
_C.MODEL.RETINANET.DETECTIONS_PER_IMAGE = 100  # inference: detections kept per image after NMS
_C.MODEL.RETINANET.CLIP_BEFORE_NMS = True  # clip decoded boxes to the image before NMS (torchvision); False: NMS, then clip (detectron2)
# Sampling heuristics RetinaNet can train with instead of using every anchor (the paper's Table 1d):
# NAME "" keeps every non-ignored anchor in the class loss (the focal loss's way, summed and divided by
# the foreground count); with a sampler the class loss is the mean over the sampled anchors.
_C.MODEL.RETINANET.SAMPLER = CN()
_C.MODEL.RETINANET.SAMPLER.NAME = ""  # SAMPLER_REGISTRY name ("" = no sampling), e.g. BalancedRandomSampler, OHEMSampler
_C.MODEL.RETINANET.SAMPLER.BATCH_SIZE_PER_IMAGE = 256  # anchors sampled per image
_C.MODEL.RETINANET.SAMPLER.POSITIVE_FRACTION = 0.25  # most foreground share of the sample (< 0 = no ratio, OHEMSampler)
_C.MODEL.RETINANET.SAMPLER.NMS_THRESH = 0.5  # IoU of the NMS over the anchors' predicted boxes, by loss (OHEMSampler only)

# ---------------------------------------------------------------------------- two-stage (Faster R-CNN)
_C.MODEL.PROPOSAL_GENERATOR = CN()
_C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"  # PROPOSAL_GENERATOR_REGISTRY name

_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"  # HEAD_REGISTRY name of the objectness + deltas head
_C.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]  # neck features the RPN and its anchors use
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]  # IoU boundaries between the IOU_LABELS intervals
_C.MODEL.RPN.IOU_LABELS = ["NEGATIVE", "IGNORE", "POSITIVE"]  # matcher label of each IoU interval
_C.MODEL.RPN.ALLOW_LOW_QUALITY_MATCHES = True  # each gt's best anchors are positive even below 0.7
_C.MODEL.RPN.SAMPLER = CN()
_C.MODEL.RPN.SAMPLER.NAME = "BalancedRandomSampler"  # SAMPLER_REGISTRY name
_C.MODEL.RPN.SAMPLER.BATCH_SIZE_PER_IMAGE = 256  # anchors sampled per image for the RPN losses
_C.MODEL.RPN.SAMPLER.POSITIVE_FRACTION = 0.5  # most foreground share of those anchors
_C.MODEL.RPN.SAMPLER.NMS_THRESH = 0.7  # OHEMSampler only
_C.MODEL.RPN.BBOX_REG_WEIGHTS = [1.0, 1.0, 1.0, 1.0]  # box coder multipliers of (dx, dy, dw, dh)
_C.MODEL.RPN.SMOOTH_L1_BETA = 0.0  # box loss: smooth L1 transition point (0 = L1, detectron2; 1/9 torchvision)
_C.MODEL.RPN.LOSS_WEIGHT = 1.0  # multiplier of both RPN losses
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000  # training: best-scoring anchors kept per level before NMS
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000  # inference: best-scoring anchors kept per level before NMS
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000  # training: proposals kept per image after NMS
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000  # inference: proposals kept per image after NMS
_C.MODEL.RPN.NMS_THRESH = 0.7  # IoU threshold of the per-level proposal NMS
_C.MODEL.RPN.MIN_SIZE = 0.0  # proposals with a side below this (pixels), or empty, are dropped (1e-3 torchvision)

_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NAME = "StandardROIHeads"  # ROI_HEAD_REGISTRY name
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80  # object classes K; the classifier has K + 1 outputs, background last
_C.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]  # neck features the ROIs are pooled from
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]  # proposal IoU boundaries between the IOU_LABELS intervals
_C.MODEL.ROI_HEADS.IOU_LABELS = ["NEGATIVE", "POSITIVE"]  # matcher label of each IoU interval
_C.MODEL.ROI_HEADS.SAMPLER = CN()
_C.MODEL.ROI_HEADS.SAMPLER.NAME = "BalancedRandomSampler"  # SAMPLER_REGISTRY name
_C.MODEL.ROI_HEADS.SAMPLER.BATCH_SIZE_PER_IMAGE = 512  # proposals sampled per image for the box head losses
_C.MODEL.ROI_HEADS.SAMPLER.POSITIVE_FRACTION = 0.25  # most foreground share of them (1:3)
_C.MODEL.ROI_HEADS.SAMPLER.NMS_THRESH = 0.7  # OHEMSampler only
_C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True  # training: the gt boxes join the proposals
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05  # inference: drop class scores at or below this
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5  # inference: IoU threshold of the class-aware NMS
_C.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 100  # inference: detections kept per image
_C.MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST = 0.0  # inference: detections with a side below this are dropped (1e-2 torchvision)

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNFCHead"  # ROI_BOX_HEAD_REGISTRY name of the pooled-feature head
_C.MODEL.ROI_BOX_HEAD.NUM_FC = 2  # fully connected layers (+ ReLU) after pooling
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024  # width of those layers
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7  # ROIAlign output size (square)
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0  # ROIAlign samples per bin side (0 = adaptive; torchvision 2)
_C.MODEL.ROI_BOX_HEAD.POOLER_ALIGNED = True  # ROIAlign half-pixel offset (detectron2 ROIAlignV2; torchvision False)
_C.MODEL.ROI_BOX_HEAD.CANONICAL_BOX_SIZE = 224  # box size (sqrt of area) pooled from CANONICAL_LEVEL
_C.MODEL.ROI_BOX_HEAD.CANONICAL_LEVEL = 4  # pyramid level of that canonical size (FPN paper, eq. 1)
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = [10.0, 10.0, 5.0, 5.0]  # box coder multipliers of (dx, dy, dw, dh)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0  # box loss: smooth L1 transition point (0 = L1, detectron2; 1/9 torchvision)
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False  # one box per ROI instead of one per class

# ---------------------------------------------------------------------------- input
_C.INPUT = CN()
_C.INPUT.FORMAT = "RGB"  # channel order of input images: RGB or BGR
_C.INPUT.MIN_SIZE_TRAIN = [800]  # shortest-edge sizes chosen from in training
_C.INPUT.MAX_SIZE_TRAIN = 1333  # longest edge cap in training
_C.INPUT.MIN_SIZE_TEST = 800  # shortest-edge size at test time
_C.INPUT.MAX_SIZE_TEST = 1333  # longest edge cap at test time
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"  # "choice": one of MIN_SIZE_TRAIN per image; "range": uniform in [min, max]
_C.INPUT.RANDOM_FLIP = "horizontal"  # training flip: "horizontal" (probability 0.5) or "none"

# ---------------------------------------------------------------------------- data
_C.DATASETS = CN()
_C.DATASETS.ROOT = "./datasets"  # folder of data sets; the embedded shapes set is generated here on first use
_C.DATASETS.TRAIN = ()  # registered data set names to train on (retinadet.data.DatasetCatalog)
_C.DATASETS.TEST = ()  # registered data set names to evaluate on

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 2  # loader worker processes (0 = load in the main process)
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True  # training: drop images with no usable (non-crowd) box
_C.DATALOADER.ASPECT_RATIO_GROUPING = True  # training: batch landscape and portrait images separately

_C.SOLVER = CN()
# Linear scaling rule (Goyal et al. 2017): BASE_LR goes with IMS_PER_BATCH. To train with k times the
# images per batch, multiply BASE_LR by k and divide MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD and
# TEST.EVAL_PERIOD by k; REFERENCE_IMS_PER_BATCH > 0 makes setup() do exactly that.
_C.SOLVER.IMS_PER_BATCH = 16  # training images per iteration, summed over all processes
_C.SOLVER.REFERENCE_IMS_PER_BATCH = 0  # batch size the solver values are written for (0 = use them as they are)
_C.SOLVER.OPTIMIZER = "SGD"  # "SGD" (MOMENTUM, NESTEROV; L2 weight decay) or "AdamW" (BETAS; decoupled weight decay)
_C.SOLVER.BASE_LR = 0.01  # learning rate after warmup (for IMS_PER_BATCH images per iteration)
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum
_C.SOLVER.NESTEROV = False  # Nesterov momentum
_C.SOLVER.BETAS = (0.9, 0.999)  # AdamW: decay rates of the first and second moment estimates
_C.SOLVER.ADAM_EPS = 1e-8  # AdamW: added to the denominator
_C.SOLVER.WEIGHT_DECAY = 0.0001  # weight decay of conv and linear weights (SGD: L2; AdamW: decoupled)
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0  # weight decay of norm-layer weights and biases
_C.SOLVER.WEIGHT_DECAY_BIAS = 0.0001  # weight decay of the other biases
_C.SOLVER.BIAS_LR_FACTOR = 1.0  # LR multiplier of the biases that are not in norm layers
_C.SOLVER.MAX_ITER = 90000  # number of training iterations
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"  # "WarmupMultiStepLR" (STEPS, GAMMA) or "WarmupCosineLR"
_C.SOLVER.STEPS = (60000, 80000)  # iterations where the multi-step schedule multiplies the LR by GAMMA
_C.SOLVER.GAMMA = 0.1  # LR decay factor at each of STEPS
_C.SOLVER.BASE_LR_END = 0.0  # cosine schedule: the LR reached at MAX_ITER
_C.SOLVER.WARMUP_METHOD = "linear"  # "linear" (WARMUP_FACTOR -> 1) or "constant" (WARMUP_FACTOR throughout)
_C.SOLVER.WARMUP_FACTOR = 0.001  # LR multiplier at iteration 0 of the warmup
_C.SOLVER.WARMUP_ITERS = 1000  # length of the warmup in iterations (0 = none)
_C.SOLVER.CHECKPOINT_PERIOD = 5000  # save a checkpoint every this many iterations (and at the end)
_C.SOLVER.MAX_TO_KEEP = 3  # periodic checkpoints kept on disk, newest first (0 = keep all)
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False  # clip gradients before each optimizer step
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"  # "norm": total norm of all gradients; "value": each element
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 10.0  # the maximum norm or absolute value
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0  # p of the p-norm when CLIP_TYPE is "norm"
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False  # mixed precision: float16 + loss scaling on CUDA, bfloat16 on the CPU

# An exponential moving average of the weights (ModelEMA): updated after every step, used for
# evaluation, the pictures and inference loading; checkpoints hold it next to the raw weights.
_C.MODEL_EMA = CN()
_C.MODEL_EMA.ENABLED = False  # keep and evaluate an EMA of the model's weights
_C.MODEL_EMA.DECAY = 0.9998  # final decay d of ema = d * ema + (1 - d) * weights, in [0, 1)
_C.MODEL_EMA.RAMP_ITERS = 2000  # the decay ramps up as d * (1 - exp(-iter / RAMP_ITERS)) (0 = constant d)

# ---------------------------------------------------------------------------- training loop
_C.TRAIN = CN()
_C.TRAIN.HOOKS = []  # HOOK_REGISTRY names of extra hooks, run after the default ones in this order
_C.TRAIN.LOG_PERIOD = 20  # console line, metrics.json and TensorBoard every this many iterations
_C.TRAIN.LOSS_CURVE = True  # draw OUTPUT_DIR/loss_curve.png from metrics.json at the end of training

_C.TEST = CN()
_C.TEST.IMS_PER_BATCH = 1  # evaluation images per batch in each process
_C.TEST.EVAL_PERIOD = 0  # evaluate on DATASETS.TEST every this many iterations (0 = only at the end)
_C.TEST.VIS_IMAGES = 0  # after training, draw the detections on this many DATASETS.TEST[0] images
_C.TEST.VIS_SCORE_THRESH = 0.3  # detections drawn in those pictures score above this
_C.TEST.DROP_EMPTY_BOXES = False  # drop detections of zero width or height after rescaling and clipping (detectron2)
_C.TEST.EVALUATOR_BACKEND = "fast"  # COCO AP by "fast" (compiled retinadet COCOeval) or "pycocotools"; equal numbers

# ---------------------------------------------------------------------------- misc
_C.OUTPUT_DIR = "./output"  # where run artefacts go
_C.SEED = -1  # global random seed (< 0 = from time)

"""Checkpoint reading and loading, and converters from torchvision and detectron2 weights."""
from .backbone_loading import load_backbone_weights
from .detectron2_converter import convert_detectron2
from .loading import (
    CONVERTERS,
    detect_format,
    load_checkpoint_file,
    load_model_weights,
    load_weights,
    read_checkpoint_meta,
)
from .report import WeightLoadReport
from .torchvision_converter import (
    convert_torchvision_faster_rcnn,
    convert_torchvision_resnet,
    convert_torchvision_retinanet,
)

__all__ = [
    "CONVERTERS",
    "convert_detectron2",
    "convert_torchvision_faster_rcnn",
    "convert_torchvision_resnet",
    "convert_torchvision_retinanet",
    "detect_format",
    "load_backbone_weights",
    "load_checkpoint_file",
    "load_model_weights",
    "load_weights",
    "read_checkpoint_meta",
    "WeightLoadReport",
]

"""Whole detectors, registered in META_ARCH_REGISTRY."""
from .rcnn import GeneralizedRCNN
from .retinanet import RetinaNet

__all__ = ["GeneralizedRCNN", "RetinaNet"]

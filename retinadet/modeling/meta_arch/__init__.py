"""Whole detectors, registered in META_ARCH_REGISTRY."""
from .retinanet import RetinaNet

__all__ = ["RetinaNet"]

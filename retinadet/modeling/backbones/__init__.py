"""Backbones: image (N, 3, H, W) -> named feature maps; importing registers them."""
from .resnet import ResNet

__all__ = ["ResNet"]

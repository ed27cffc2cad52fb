"""Dense detection heads."""
from .retinanet_head import RetinaNetHead

__all__ = ["RetinaNetHead"]

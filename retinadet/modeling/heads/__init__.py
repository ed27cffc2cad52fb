"""Dense heads: RetinaNet's class and box subnets, and the RPN's objectness and deltas head."""
from .retinanet_head import RetinaNetHead
from .rpn_head import StandardRPNHead

__all__ = ["RetinaNetHead", "StandardRPNHead"]

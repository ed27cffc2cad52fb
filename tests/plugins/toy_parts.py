"""A user's plug-in, kept outside retinadet/: its own head, its own loss and its own config keys."""
import torch.nn.functional as F
from torch import nn

from retinadet.config import CfgNode, config_extension
from retinadet.modeling.losses import sigmoid_focal_loss
from retinadet.registry import CLS_LOSS_REGISTRY, HEAD_REGISTRY


@config_extension
def add_toy_config(cfg: CfgNode) -> None:
    """Keys of this plug-in: the hidden width of ToyHead and the factor of ScaledFocalLoss."""
    cfg.MODEL.TOY_HEAD = CfgNode()
    cfg.MODEL.TOY_HEAD.HIDDEN = 32  # channels of ToyHead's single hidden conv
    cfg.MODEL.SCALED_FOCAL = CfgNode()
    cfg.MODEL.SCALED_FOCAL.FACTOR = 2.0  # multiplier of the focal loss


@HEAD_REGISTRY.register()
class ToyHead(nn.Module):
    """One hidden 3x3 conv shared by classification and regression."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int, num_anchors: int):
        super().__init__()
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.hidden = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.cls = nn.Conv2d(hidden, num_anchors * num_classes, 1)
        self.box = nn.Conv2d(hidden, num_anchors * 4, 1)
        nn.init.constant_(self.cls.bias, -4.6)

    @classmethod
    def from_config(cls, cfg, input_shape, num_anchors):
        return {
            "in_channels": input_shape[0].channels,
            "hidden": cfg.MODEL.TOY_HEAD.HIDDEN,
            "num_classes": cfg.MODEL.RETINANET.NUM_CLASSES,
            "num_anchors": num_anchors,
        }

    def forward(self, features):
        logits, deltas = [], []
        for f in features:
            h = F.relu(self.hidden(f))
            n, _, height, width = h.shape
            c = self.cls(h).view(n, self.num_anchors, self.num_classes, height, width)
            b = self.box(h).view(n, self.num_anchors, 4, height, width)
            logits.append(c.permute(0, 3, 4, 1, 2).reshape(n, -1, self.num_classes))
            deltas.append(b.permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return logits, deltas


@CLS_LOSS_REGISTRY.register()
class ScaledFocalLoss(nn.Module):
    """The focal loss times a constant factor (summed over elements)."""

    def __init__(self, factor: float, alpha: float, gamma: float):
        super().__init__()
        self.factor, self.alpha, self.gamma = factor, alpha, gamma

    @classmethod
    def from_config(cls, cfg, loss_cfg):
        return {"factor": cfg.MODEL.SCALED_FOCAL.FACTOR, "alpha": loss_cfg.ALPHA, "gamma": loss_cfg.GAMMA}

    def forward(self, logits, targets):
        return self.factor * sigmoid_focal_loss(logits, targets, self.alpha, self.gamma, reduction="sum")

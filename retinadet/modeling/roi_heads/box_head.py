"""Box head of Faster R-CNN with FPN: pooled region features -> one feature vector per region."""
from typing import Sequence, Tuple

from torch import Tensor, nn

from ...registry import ROI_BOX_HEAD_REGISTRY

__all__ = ["FastRCNNFCHead"]


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNFCHead(nn.Module):
    """Flatten, then ``num_fc`` x (Linear, ReLU) of width ``fc_dim`` (the FPN paper's "2fc" head).

    Layers are named ``fc1`` ... ``fc{num_fc}``. Weights are initialised as detectron2 does
    (``kaiming_uniform_(a=1)``, i.e. U(-sqrt(3 / fan_in), sqrt(3 / fan_in)), biases 0); torchvision
    keeps ``nn.Linear``'s default. With ``num_fc = 0`` the head only flattens.

    Args:
        input_size: ``(C, H, W)`` of each pooled region.
        num_fc: number of fully connected layers, >= 0.
        fc_dim: their width, >= 1.
    """

    def __init__(self, input_size: Sequence[int], num_fc: int = 2, fc_dim: int = 1024):
        super().__init__()
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(
                f"FastRCNNFCHead input_size = {input_size} must be (channels, height, width), all >= 1."
            )
        if isinstance(num_fc, bool) or int(num_fc) != num_fc or num_fc < 0:
            raise ValueError(f"FastRCNNFCHead num_fc = {num_fc!r} (MODEL.ROI_BOX_HEAD.NUM_FC) must be an integer >= 0.")
        if isinstance(fc_dim, bool) or int(fc_dim) != fc_dim or fc_dim < 1:
            raise ValueError(f"FastRCNNFCHead fc_dim = {fc_dim!r} (MODEL.ROI_BOX_HEAD.FC_DIM) must be an integer >= 1.")
        self.input_size: Tuple[int, int, int] = input_size
        self.num_fc = int(num_fc)
        width = input_size[0] * input_size[1] * input_size[2]
        for k in range(self.num_fc):
            fc = nn.Linear(width, int(fc_dim))
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.constant_(fc.bias, 0.0)
            self.add_module(f"fc{k + 1}", fc)
            width = int(fc_dim)
        self.output_size = width

    @classmethod
    def from_config(cls, cfg, input_size: Sequence[int]) -> dict:
        """Arguments from cfg.MODEL.ROI_BOX_HEAD.{NUM_FC, FC_DIM}; ``input_size`` (C, H, W) from the pooler."""
        return {
            "input_size": tuple(input_size),
            "num_fc": cfg.MODEL.ROI_BOX_HEAD.NUM_FC,
            "fc_dim": cfg.MODEL.ROI_BOX_HEAD.FC_DIM,
        }

    def forward(self, x: Tensor) -> Tensor:
        """``(R, C, H, W)`` pooled features -> ``(R, output_size)``."""
        x = x.flatten(start_dim=1)
        for k in range(self.num_fc):
            x = getattr(self, f"fc{k + 1}")(x).relu()
        return x

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, output_size={self.output_size}"

"""Feature Pyramid Network (Lin et al. 2017) with extra top levels: RetinaNet's P6/P7 convs or
Faster R-CNN's max-pooled P6."""
import math
from typing import Dict, List, Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ...config import CfgNode
from ...registry import NECK_REGISTRY
from ..norm import get_norm
from ..shape_spec import ShapeSpec

__all__ = ["FPN", "TOP_BLOCKS"]

# How each level above the top input is made: "conv" = 3x3 stride-2 conv (RetinaNet's P6/P7),
# "maxpool" = 1x1 stride-2 max-pool, i.e. every other pixel (the FPN paper's P6 for the RPN).
TOP_BLOCKS = ("conv", "maxpool")


def _level_name(stride: int, source: str) -> str:
    """Return "p{log2(stride)}"; ValueError when ``stride`` is not a power of two."""
    level = int(round(math.log2(stride))) if stride > 0 else -1
    if stride <= 0 or 2**level != stride:
        raise ValueError(
            f"FPN needs power-of-two strides to name its levels, but {source} has stride {stride}."
        )
    return f"p{level}"


def _init_conv(conv: nn.Conv2d) -> None:
    # kaiming_uniform_(a=1) gives U(-sqrt(3 / fan_in), sqrt(3 / fan_in)): the init of both
    # torchvision's and detectron2's FPN, so weights trained with either start from the same law.
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


@NECK_REGISTRY.register()
class FPN(nn.Module):
    """Top-down pyramid on backbone features plus ``num_top_levels`` stride-2 levels on top.

    For in_features res3..res5 (strides 8, 16, 32) and two top levels, forward returns
    {"p3": (N, C, H/8, W/8), "p4": (N, C, H/16, W/16), "p5": (N, C, H/32, W/32),
    "p6": (N, C, H/64, W/64), "p7": (N, C, H/128, W/128)} (sizes rounded up), C = out_channels.

    ``top_block`` "conv" (RetinaNet): P6 is a 3x3 stride-2 conv on the top backbone feature (C5,
    as in the paper and detectron2) or on the top pyramid output (P5, as in torchvision); each
    later top level applies a 3x3 stride-2 conv to ReLU of the level below it.
    ``top_block`` "maxpool" (Faster R-CNN): each top level is ``max_pool2d(kernel 1, stride 2)``
    of the level below, starting from the top pyramid output (torchvision's LastLevelMaxPool and
    detectron2's); it has no parameters.

    Args:
        input_shape: backbone output shapes by name (e.g. from ``backbone.output_shape()``).
        in_features: backbone features given lateral 1x1 convs, in increasing stride.
        out_channels: channels of every pyramid level.
        norm: norm after each lateral and output conv: "" (none) or a name of ``get_norm``;
            with a norm those convs have no bias.
        top_block_in_feature: input of the first top level: the last of ``in_features``
            (e.g. "res5") or the pyramid output at its stride (e.g. "p5").
        num_top_levels: extra levels above the top input (0 for none).
        top_block: how those levels are made: "conv" or "maxpool" (see above).
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        in_features: Sequence[str],
        out_channels: int = 256,
        norm: str = "",
        top_block_in_feature: str = "res5",
        num_top_levels: int = 2,
        top_block: str = "conv",
    ):
        super().__init__()
        in_features = list(in_features)
        _check_in_features(input_shape, in_features)
        in_strides = [input_shape[f].stride for f in in_features]
        names = [_level_name(s, f"in_feature '{f}'") for f, s in zip(in_features, in_strides)]
        if num_top_levels < 0:
            raise ValueError(f"FPN num_top_levels must be >= 0, got {num_top_levels}.")
        if num_top_levels > 0 and top_block_in_feature not in (in_features[-1], names[-1]):
            raise ValueError(
                f"FPN top_block_in_feature '{top_block_in_feature}' is not valid for in_features "
                f"{in_features}: use '{in_features[-1]}' (top backbone feature, paper/detectron2) "
                f"or '{names[-1]}' (top pyramid output, torchvision)."
            )
        if top_block not in TOP_BLOCKS:
            raise ValueError(f"FPN top_block = {top_block!r} (MODEL.FPN.TOP_BLOCK) must be one of {TOP_BLOCKS}.")
        if top_block == "maxpool" and num_top_levels > 0 and top_block_in_feature != names[-1]:
            raise ValueError(
                f"FPN top_block 'maxpool' subsamples the top pyramid output, so top_block_in_feature "
                f"(MODEL.FPN.TOP_BLOCK_IN_FEATURE) must be '{names[-1]}'; got '{top_block_in_feature}'."
            )
        self.in_features = in_features
        self.top_block_in_feature = top_block_in_feature
        self.top_block = top_block
        self.num_top_levels = num_top_levels
        self.size_divisibility = max(in_strides)

        use_bias = norm == ""
        self._has_norm = not use_bias
        self.lateral_convs = nn.ModuleList()
        self.output_convs = nn.ModuleList()
        for f in in_features:
            self.lateral_convs.append(
                nn.Conv2d(input_shape[f].channels, out_channels, kernel_size=1, bias=use_bias)
            )
            self.output_convs.append(
                nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=use_bias)
            )
        if self._has_norm:
            self.lateral_norms = nn.ModuleList([get_norm(norm, out_channels) for _ in in_features])
            self.output_norms = nn.ModuleList([get_norm(norm, out_channels) for _ in in_features])

        top_in_channels = (
            input_shape[in_features[-1]].channels
            if top_block_in_feature == in_features[-1]
            else out_channels
        )
        self.top_convs = nn.ModuleList()
        for i in range(num_top_levels if top_block == "conv" else 0):
            self.top_convs.append(
                nn.Conv2d(top_in_channels if i == 0 else out_channels, out_channels, 3, 2, 1)
            )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module)

        strides = in_strides + [in_strides[-1] * 2 ** (i + 1) for i in range(num_top_levels)]
        self._out_shapes = {
            _level_name(s, "FPN output"): ShapeSpec(channels=out_channels, stride=s) for s in strides
        }

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: Dict[str, ShapeSpec]) -> dict:
        """Arguments from cfg.MODEL.FPN and the backbone's ``output_shape()``."""
        return {
            "input_shape": input_shape,
            "in_features": list(cfg.MODEL.FPN.IN_FEATURES),
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "norm": cfg.MODEL.FPN.NORM,
            "top_block_in_feature": cfg.MODEL.FPN.TOP_BLOCK_IN_FEATURE,
            "num_top_levels": cfg.MODEL.FPN.NUM_TOP_LEVELS,
            "top_block": cfg.MODEL.FPN.TOP_BLOCK,
        }

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """Channels and stride of each output, ordered from the finest level ("p3") up."""
        return dict(self._out_shapes)

    def _lateral(self, i: int, x: Tensor) -> Tensor:
        x = self.lateral_convs[i](x)
        return self.lateral_norms[i](x) if self._has_norm else x

    def _output(self, i: int, x: Tensor) -> Tensor:
        x = self.output_convs[i](x)
        return self.output_norms[i](x) if self._has_norm else x

    def forward(self, features: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Map backbone features {name: (N, Ci, Hi, Wi)} to {"p3": (N, C, H3, W3), ...}."""
        inputs = [features[f] for f in self.in_features]
        merged = self._lateral(len(inputs) - 1, inputs[-1])
        outputs: List[Tensor] = [self._output(len(inputs) - 1, merged)]
        for i in range(len(inputs) - 2, -1, -1):
            lateral = self._lateral(i, inputs[i])
            # Resize to the lateral's exact size: 2x when the image is padded to the top stride,
            # and still aligned when it is not (odd sizes round up at each stride-2 stage).
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self._output(i, merged))

        top: Optional[Tensor] = None
        if self.num_top_levels > 0:
            top = inputs[-1] if self.top_block_in_feature == self.in_features[-1] else outputs[-1]
        if self.top_block == "maxpool":
            for _ in range(self.num_top_levels):
                top = F.max_pool2d(top, kernel_size=1, stride=2, padding=0)
                outputs.append(top)
        for i, conv in enumerate(self.top_convs):
            top = conv(top if i == 0 else F.relu(top))
            outputs.append(top)
        return dict(zip(self._out_shapes.keys(), outputs))


def _check_in_features(input_shape: Dict[str, ShapeSpec], in_features: List[str]) -> None:
    """ValueError unless ``in_features`` is non-empty, in ``input_shape`` and of increasing stride."""
    if len(in_features) == 0:
        raise ValueError("FPN in_features is empty; name at least one backbone feature.")
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(
            f"FPN in_features {missing} are not backbone outputs; available: {list(input_shape)}."
        )
    strides = [input_shape[f].stride for f in in_features]
    if any(b <= a for a, b in zip(strides, strides[1:])):
        raise ValueError(
            f"FPN in_features {in_features} must have increasing strides, got {strides}."
        )

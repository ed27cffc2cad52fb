"""ResNet-18/34/50/101 backbone with torchvision's module names, returning res2..res5 features."""
import logging
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...config import CfgNode
from ...registry import BACKBONE_REGISTRY
from ..norm import freeze_batch_norm, get_norm
from ..shape_spec import ShapeSpec

__all__ = ["ResNet", "BasicBlock", "BottleneckBlock", "describe_resnet_weights"]

logger = logging.getLogger(__name__)

# depth -> (uses bottleneck blocks, blocks per stage res2..res5), as in He et al. 2016, Table 1.
_ARCHS: Dict[int, Tuple[bool, Tuple[int, int, int, int]]] = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
}
_FEATURES = ("res2", "res3", "res4", "res5")
_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def _norm(name: str, channels: int, num_groups: int) -> nn.Module:
    """get_norm, with nn.Identity standing in for "" so module names stay torchvision's."""
    layer = get_norm(name, channels, num_groups)
    return nn.Identity() if layer is None else layer


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """Bias-free conv, 'same' padding for odd kernels (the norm after it makes a bias redundant)."""
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)


def _shortcut(c_in: int, c_out: int, stride: int, norm: str, groups: int) -> Optional[nn.Module]:
    """Projection shortcut (1x1 conv + norm) when the block changes shape, else None (identity)."""
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(_conv(c_in, c_out, 1, stride), _norm(norm, c_out, groups))


class BasicBlock(nn.Module):
    """Two 3x3 convs plus shortcut: (N, c_in, H, W) -> (N, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, num_groups_gn: int):
        super().__init__()
        self.conv1 = _conv(c_in, c_out, 3, stride)
        self.bn1 = _norm(norm, c_out, num_groups_gn)
        self.conv2 = _conv(c_out, c_out, 3)
        self.bn2 = _norm(norm, c_out, num_groups_gn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride, norm, num_groups_gn)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # In-place add after the main branch, as torchvision does: no extra full-size tensor
        # (about a sixth of the backbone's time at 512 px on the CPU).
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, plus shortcut: (N, c_in, H, W) -> (N, c_out, H/s, W/s).

    ``stride_in_1x1`` puts the stride on conv1 (original MSRA / detectron2 weights); otherwise it is
    on conv2, the 3x3 (torchvision's "ResNet v1.5", which its ImageNet weights were trained with).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        width: int,
        stride: int,
        norm: str,
        num_groups_gn: int,
        stride_in_1x1: bool,
    ):
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv(c_in, width, 1, stride_1x1)
        self.bn1 = _norm(norm, width, num_groups_gn)
        self.conv2 = _conv(width, width, 3, stride_3x3)
        self.bn2 = _norm(norm, width, num_groups_gn)
        self.conv3 = _conv(width, c_out, 1)
        self.bn3 = _norm(norm, c_out, num_groups_gn)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, c_out, stride, norm, num_groups_gn)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)  # in place, see BasicBlock
        return self.relu(out)


def describe_resnet_weights(state_dict: Mapping[str, Tensor]) -> str:
    """"ResNet-50" (or "bottleneck blocks per stage [3, 4, 0, 0]") for a state dict with torchvision's
    ResNet names: the error messages of ``load_backbone_weights`` then say which depths differ."""
    blocks = [0, 0, 0, 0]
    for key in state_dict:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            blocks[stage] = max(blocks[stage], index + 1)
    bottleneck = any(".conv3." in key for key in state_dict)
    kind = "bottleneck" if bottleneck else "basic"
    for depth, arch in _ARCHS.items():
        if arch == (bottleneck, tuple(blocks)):
            return f"ResNet-{depth}"
    return f"{kind} blocks per stage {blocks}"


@BACKBONE_REGISTRY.register()
class ResNet(nn.Module):
    """ResNet (He et al. 2016) without avgpool/fc: image (N, 3, H, W) -> {"res2".."res5" subset}.

    Feature ``resK`` is torchvision's ``layer{K-1}`` output, (N, C, H/s, W/s) with s = 4, 8, 16, 32.
    Only the stages up to the last requested feature are built and run. Module names match
    torchvision's ``resnetXX``, so its ImageNet state dict loads as is (``fc.*`` ignored).

    Args:
        depth: 18 or 34 (basic blocks), 50 or 101 (bottleneck blocks).
        out_features: names among "res2".."res5" to return; returned in res2..res5 order.
        norm: norm layer name for ``get_norm`` ("FrozenBN", "BN", "SyncBN", "GN", "").
        num_groups_gn: groups when ``norm`` is "GN".
        freeze_at: 0 nothing frozen, 1 the stem (conv1, bn1), k >= 2 the stem and res2..res{k}.
            Frozen parameters stop requiring grad and their batch norms become FrozenBatchNorm2d.
        stride_in_1x1: bottleneck stride on the 1x1 conv1 (MSRA) instead of the 3x3 conv2.
        stem_out_channels: channels of the 7x7 stride-2 stem conv.
        res2_out_channels: res2 output channels; 0 = the standard width (256 for bottleneck nets, 64
            for basic-block nets). The bottleneck width is a quarter of it at res2, and channels
            double every stage.
        weights: MODEL.BACKBONE.WEIGHTS, loaded by ``retinadet.checkpoint.load_backbone_weights`` before
            freezing: a torchvision ImageNet ResNet state dict (.pth), a backbone export or a retinadet
            checkpoint; "" for none.
    """

    size_divisibility = 32

    def __init__(
        self,
        depth: int,
        out_features: Sequence[str] = ("res3", "res4", "res5"),
        norm: str = "FrozenBN",
        num_groups_gn: int = 32,
        freeze_at: int = 0,
        stride_in_1x1: bool = False,
        stem_out_channels: int = 64,
        res2_out_channels: int = 0,
        weights: str = "",
    ):
        super().__init__()
        self._check_args(depth, out_features, freeze_at, res2_out_channels)
        self.depth = depth
        self._out_features = [name for name in _FEATURES if name in out_features]
        bottleneck, blocks_per_stage = _ARCHS[depth]
        num_stages = _FEATURES.index(self._out_features[-1]) + 1

        self.conv1 = nn.Conv2d(3, stem_out_channels, 7, stride=2, padding=3, bias=False)
        self.bn1 = _norm(norm, stem_out_channels, num_groups_gn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        c_in = stem_out_channels
        c_out = res2_out_channels or (256 if bottleneck else 64)
        self._channels: Dict[str, int] = {}
        for i in range(num_stages):
            blocks = []
            for b in range(blocks_per_stage[i]):
                # res2 keeps the stem's stride 4 (the maxpool already halved); later stages halve.
                stride = 2 if (b == 0 and i > 0) else 1
                if bottleneck:
                    block = BottleneckBlock(
                        c_in, c_out, c_out // 4, stride, norm, num_groups_gn, stride_in_1x1
                    )
                else:
                    block = BasicBlock(c_in, c_out, stride, norm, num_groups_gn)
                blocks.append(block)
                c_in = c_out
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self._channels[_FEATURES[i]] = c_out
            c_out *= 2

        self._init_weights()
        if weights:
            from ...checkpoint.backbone_loading import load_backbone_weights

            load_backbone_weights(self, weights, describe=describe_resnet_weights)
        # Freezing after loading so that converted FrozenBatchNorm2d buffers hold the loaded stats.
        self.freeze(freeze_at)

    @staticmethod
    def _check_args(
        depth: int, out_features: Sequence[str], freeze_at: int, res2_out_channels: int
    ) -> None:
        if depth not in _ARCHS:
            raise ValueError(
                f"ResNet depth={depth!r} (MODEL.RESNETS.DEPTH) is not supported; "
                f"valid depths: {sorted(_ARCHS)}."
            )
        if isinstance(out_features, str) or not out_features:
            raise ValueError(
                f"ResNet out_features={out_features!r} (MODEL.RESNETS.OUT_FEATURES) must be a "
                f"non-empty list of names among {list(_FEATURES)}."
            )
        bad = [name for name in out_features if name not in _FEATURES]
        if bad:
            raise ValueError(
                f"ResNet out_features={list(out_features)!r} (MODEL.RESNETS.OUT_FEATURES) has "
                f"unknown names {bad}; valid names: {list(_FEATURES)}."
            )
        if not (isinstance(freeze_at, int) and 0 <= freeze_at <= 5):
            raise ValueError(
                f"ResNet freeze_at={freeze_at!r} (MODEL.BACKBONE.FREEZE_AT) must be an int in "
                "0..5: 0 nothing, 1 the stem, k >= 2 the stem and res2..res{k}."
            )
        if res2_out_channels < 0 or (_ARCHS[depth][0] and res2_out_channels % 4 != 0):
            raise ValueError(
                f"ResNet res2_out_channels={res2_out_channels} (MODEL.RESNETS.RES2_OUT_CHANNELS) "
                "must be 0 (the standard width) or positive, and divisible by 4 for bottleneck nets "
                "(their bottleneck width is a quarter of it)."
            )

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        """Arguments from cfg.MODEL.RESNETS.* and cfg.MODEL.BACKBONE.{FREEZE_AT, WEIGHTS}."""
        r = cfg.MODEL.RESNETS
        return {
            "depth": r.DEPTH,
            "out_features": tuple(r.OUT_FEATURES),
            "norm": r.NORM,
            "num_groups_gn": r.NUM_GROUPS_GN,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
            "stride_in_1x1": r.STRIDE_IN_1X1,
            "stem_out_channels": r.STEM_OUT_CHANNELS,
            "res2_out_channels": r.RES2_OUT_CHANNELS,
            "weights": cfg.MODEL.BACKBONE.WEIGHTS,
        }

    def _init_weights(self) -> None:
        """He (fan_out) init for convs, weight 1 / bias 0 for norms, as torchvision does."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stages(self) -> List[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self._channels))]

    def freeze(self, freeze_at: int) -> "ResNet":
        """Freeze the stem (freeze_at >= 1) and res2..res{freeze_at}; returns self.

        Frozen parameters get ``requires_grad=False``; batch norms there become FrozenBatchNorm2d
        so that neither their statistics nor their affine terms change in training.
        """
        if freeze_at >= 1:
            self._freeze_modules(["conv1", "bn1"])
        for i in range(2, freeze_at + 1):
            if i - 2 < len(self._channels):
                self._freeze_modules([f"layer{i - 1}"])
        return self

    def _freeze_modules(self, names: List[str]) -> None:
        for name in names:
            module = freeze_batch_norm(getattr(self, name))
            setattr(self, name, module)
            for p in module.parameters():
                p.requires_grad_(False)

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{name: ShapeSpec(channels, stride)} for every returned feature, in res2..res5 order."""
        return {
            name: ShapeSpec(channels=self._channels[name], stride=_STRIDES[name])
            for name in self._out_features
        }

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """Image batch (N, 3, H, W) -> {name: (N, C, ceil(H/s), ceil(W/s))} for the out_features."""
        if not torch.jit.is_tracing() and (x.dim() != 4 or x.shape[1] != 3):
            raise ValueError(f"ResNet expects images (N, 3, H, W); got shape {tuple(x.shape)}.")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outputs = {}
        for name, stage in zip(_FEATURES, self._stages()):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

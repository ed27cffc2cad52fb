"""Registries of the model's parts: one fvcore Registry per family, with helpful errors."""
import difflib
import inspect
from typing import Any, Optional

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = [
    "Registry",
    "BACKBONE_REGISTRY",
    "NECK_REGISTRY",
    "HEAD_REGISTRY",
    "ANCHOR_GENERATOR_REGISTRY",
    "MATCHER_REGISTRY",
    "BOX_CODER_REGISTRY",
    "CLS_LOSS_REGISTRY",
    "BOX_LOSS_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "META_ARCH_REGISTRY",
    "HOOK_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_HEAD_REGISTRY",
    "SAMPLER_REGISTRY",
]


def _where_defined(obj: Any) -> str:
    """Return ``module.qualname (file:line)`` for a registered class or function."""
    name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    try:
        file = inspect.getsourcefile(obj)
        _, line = inspect.getsourcelines(obj)
        return f"{name} ({file}:{line})"
    except (TypeError, OSError):
        return name


class Registry(_FvcoreRegistry):
    """fvcore's name -> object Registry whose errors say what would be valid.

    A lookup of an unknown name raises ``KeyError`` listing every registered name and the closest
    one; registering a name twice raises ``KeyError`` naming where both objects are defined.
    """

    def _do_register(self, name: str, obj: Any) -> None:
        if name in self._obj_map:
            raise KeyError(
                f"'{name}' is already registered in the {self._name} registry by "
                f"{_where_defined(self._obj_map[name])}; cannot register it again from "
                f"{_where_defined(obj)}. Rename one of them."
            )
        self._obj_map[name] = obj

    def closest(self, name: str) -> Optional[str]:
        """Return the registered name most similar to ``name``, or None if nothing is close."""
        matches = difflib.get_close_matches(name, list(self._obj_map), n=1, cutoff=0.0)
        return matches[0] if matches else None

    def get(self, name: str) -> Any:
        """Return the object registered as ``name``; KeyError with the valid names otherwise."""
        obj = self._obj_map.get(name)
        if obj is None:
            names = sorted(self._obj_map)
            hint = self.closest(name)
            raise KeyError(
                f"No object named '{name}' in the {self._name} registry. Registered names: "
                f"{names}." + (f" Did you mean '{hint}'?" if hint else "")
                + " A plug-in must be imported (MODEL.PLUGINS) before it can be named."
            )
        return obj

    def names(self) -> list:
        """Sorted list of the registered names."""
        return sorted(self._obj_map)


BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = "Backbones: image (N, 3, H, W) -> dict of named feature maps."
NECK_REGISTRY = Registry("NECK")
NECK_REGISTRY.__doc__ = "Necks: backbone features -> pyramid features (e.g. FPN P3-P7)."
HEAD_REGISTRY = Registry("HEAD")
HEAD_REGISTRY.__doc__ = "Dense heads: pyramid features -> per-level class logits and box deltas."
ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = "Anchor generators: pyramid feature sizes -> anchors per level."
MATCHER_REGISTRY = Registry("MATCHER")
MATCHER_REGISTRY.__doc__ = "Matchers: (gt boxes, anchors) -> matched gt index and label per anchor."
BOX_CODER_REGISTRY = Registry("BOX_CODER")
BOX_CODER_REGISTRY.__doc__ = "Box coders: boxes <-> regression deltas relative to anchors."
CLS_LOSS_REGISTRY = Registry("CLS_LOSS")
CLS_LOSS_REGISTRY.__doc__ = "Classification losses: (logits (M, K), targets (M, K)) -> summed loss."
BOX_LOSS_REGISTRY = Registry("BOX_LOSS")
BOX_LOSS_REGISTRY.__doc__ = "Box-regression losses: (deltas, gt boxes, anchors, box coder) -> summed loss."
META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = "Whole detectors: list[dict] inputs -> losses or detections."
HOOK_REGISTRY = Registry("HOOK")
HOOK_REGISTRY.__doc__ = "Training-loop hooks (HookBase subclasses) named in TRAIN.HOOKS."
PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR")
PROPOSAL_GENERATOR_REGISTRY.__doc__ = "Proposal generators (e.g. RPN): pyramid features -> boxes per image."
ROI_HEAD_REGISTRY = Registry("ROI_HEAD")
ROI_HEAD_REGISTRY.__doc__ = "Region heads: pyramid features + proposals -> losses or detections."
ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = "ROI box heads: pooled features (R, C, h, w) -> box features (R, D)."
SAMPLER_REGISTRY = Registry("SAMPLER")
SAMPLER_REGISTRY.__doc__ = "Training-example samplers: matched labels -> the examples that enter the class loss."

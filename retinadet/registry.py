"""Registries of the framework's parts, each with the contract its parts must meet.

One fvcore Registry per family. Each family's contract is a ``typing.Protocol`` written right above
its registry: the methods (with the positional parameters a caller passes) and the attributes a
registered class must have. ``build(registry, name, cfg, **context)`` checks the class against the
contract before constructing it and the instance after, so a plug-in that misses a member, or was
registered into the wrong registry, fails when the model (or trainer) is built, with a message that
names the class, the registry and what is missing, rather than deep inside ``forward``.

Every part is built the same way: ``cls(**cls.from_config(cfg, **context))``; ``context`` carries
what earlier parts computed (e.g. ``input_shape``), never config values.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Protocol, Sequence, Tuple, Type

from fvcore.common.registry import Registry as _FvcoreRegistry

from .contract import check_class, check_instance, source_location

if TYPE_CHECKING:
    from torch import Tensor

    from .modeling.shape_spec import ShapeSpec
    from .structures import ImageList

__all__ = [
    "Registry",
    "build",
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
    location = source_location(obj)
    return f"{name} ({location})" if location else name


class Registry(_FvcoreRegistry):
    """fvcore's name -> class Registry with a contract and errors that say what would be valid.

    A lookup of an unknown name raises ``KeyError`` listing every registered name and the closest
    one; registering a name twice raises ``KeyError`` naming where both classes are defined.

    Args:
        name: the family's name, used in messages ("HEAD").
        contract: the ``typing.Protocol`` its classes must meet (checked by :func:`build`), or None.
    """

    def __init__(self, name: str, contract: Optional[type] = None) -> None:
        super().__init__(name)
        self.contract = contract

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


def build(registry: Registry, name: str, cfg: Any, **context: Any) -> Any:
    """Look ``name`` up in ``registry`` and return ``cls(**cls.from_config(cfg, **context))``.

    The class is checked against ``registry.contract`` before it is constructed (its methods, their
    positional parameters, and that ``from_config`` accepts ``cfg`` and exactly this ``context``),
    and the instance after (the contract's attributes). TypeError naming the class, the registry
    and the missing member otherwise.
    """
    cls = registry.get(name)
    family = f"the {registry._name} registry"
    check_class(cls, registry.contract, family, f"'{name}'", context)
    obj = cls(**cls.from_config(cfg, **context))
    check_instance(obj, registry.contract, family, f"'{name}'")
    return obj


class Buildable(Protocol):
    """What every registered part has: arguments from the config and what earlier parts computed."""

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        """Keyword arguments of ``__init__`` from ``cfg`` (and the registry's context keywords)."""


class Backbone(Buildable, Protocol):
    """Image batch ``(N, 3, H, W)`` -> named feature maps. ``from_config(cfg)``."""

    size_divisibility: int  # input sides must be multiples of this (the images are padded to it)

    def forward(self, images: Tensor) -> Dict[str, Tensor]:
        """{name: (N, C, H / stride, W / stride)} for every name of ``output_shape()``."""

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{name: ShapeSpec(channels, stride)} of the returned features."""


BACKBONE_REGISTRY = Registry("BACKBONE", Backbone)
BACKBONE_REGISTRY.__doc__ = "Backbones: image (N, 3, H, W) -> dict of named feature maps."


class Neck(Buildable, Protocol):
    """Backbone features -> pyramid features. ``from_config(cfg, input_shape)`` with the backbone's shapes."""

    def forward(self, features: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """{level name: (N, C, h, w)} for every name of ``output_shape()``."""

    def output_shape(self) -> Dict[str, ShapeSpec]:
        """{level name: ShapeSpec(channels, stride)} of the returned levels."""


NECK_REGISTRY = Registry("NECK", Neck)
NECK_REGISTRY.__doc__ = "Necks: backbone features -> pyramid features (e.g. FPN P3-P7)."


class DenseHead(Buildable, Protocol):
    """Per-level predictions for every anchor. ``from_config(cfg, input_shape, num_anchors)`` with the
    levels' ShapeSpecs and the anchors per location."""

    num_anchors: int  # anchors per feature-map location

    def forward(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level: scores ``(N, H*W*A, K)`` and deltas ``(N, H*W*A, 4)`` (K = 1 for objectness)."""


HEAD_REGISTRY = Registry("HEAD", DenseHead)
HEAD_REGISTRY.__doc__ = "Dense heads: pyramid features -> per-level class logits and box deltas."


class AnchorGenerator(Buildable, Protocol):
    """Anchors of every level. ``from_config(cfg, input_shape)`` with the levels' ShapeSpecs."""

    num_anchors: int  # anchors per feature-map location (the same on every level)

    def forward(self, features: List[Tensor], image_size: Tuple[int, int]) -> List[Tensor]:
        """Per level ``(H*W*A, 4)`` xyxy anchors in (padded) image pixels."""


ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR", AnchorGenerator)
ANCHOR_GENERATOR_REGISTRY.__doc__ = "Anchor generators: pyramid feature sizes -> anchors per level."


class Matcher(Buildable, Protocol):
    """Assigns ground truth to anchors (or proposals). ``from_config(cfg)``."""

    def forward(self, gt_boxes: Tensor, anchors: Tensor) -> Tuple[Tensor, Tensor]:
        """``gt_boxes (G, 4)``, ``anchors (A, 4)`` xyxy (optional keyword ``crowd_boxes (C, 4)``) ->
        matched gt index ``(A,)`` int64 and label ``(A,)`` (1 foreground, 0 background, -1 ignore)."""


MATCHER_REGISTRY = Registry("MATCHER", Matcher)
MATCHER_REGISTRY.__doc__ = "Matchers: (gt boxes, anchors) -> matched gt index and label per anchor."


class BoxCoder(Buildable, Protocol):
    """Boxes <-> regression deltas relative to anchors. ``from_config(cfg)``."""

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """``boxes (R, 4)`` and ``anchors (R, 4)`` xyxy -> deltas ``(R, 4)``."""

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """``deltas (R, 4)`` and ``anchors (R, 4)`` xyxy -> boxes ``(R, 4)`` xyxy."""


BOX_CODER_REGISTRY = Registry("BOX_CODER", BoxCoder)
BOX_CODER_REGISTRY.__doc__ = "Box coders: boxes <-> regression deltas relative to anchors."


class ClassificationLoss(Buildable, Protocol):
    """``from_config(cfg, loss_cfg)`` with the loss's config node (cfg.MODEL.CLS_LOSS)."""

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``logits (M, K)``, float ``targets (M, K)`` in {0, 1} -> the summed loss (a scalar)."""


CLS_LOSS_REGISTRY = Registry("CLS_LOSS", ClassificationLoss)
CLS_LOSS_REGISTRY.__doc__ = "Classification losses: (logits (M, K), targets (M, K)) -> summed loss."


class BoxRegressionLoss(Buildable, Protocol):
    """``from_config(cfg, loss_cfg)`` with the loss's config node (cfg.MODEL.BOX_LOSS)."""

    def forward(self, pred_deltas: Tensor, gt_boxes: Tensor, anchors: Tensor, box_coder: BoxCoder) -> Tensor:
        """``pred_deltas (F, 4)`` of the F foreground anchors, their ``gt_boxes (F, 4)`` and ``anchors
        (F, 4)`` xyxy, the box coder -> the summed loss (a scalar)."""


BOX_LOSS_REGISTRY = Registry("BOX_LOSS", BoxRegressionLoss)
BOX_LOSS_REGISTRY.__doc__ = "Box-regression losses: (deltas, gt boxes, anchors, box coder) -> summed loss."


class Sampler(Buildable, Protocol):
    """Chooses the training examples. ``from_config(cfg, sampler_cfg)`` with its config node."""

    needs_losses: bool  # True: the caller passes per-example losses and predicted boxes (OHEM)

    def forward(self, match_labels: Tensor) -> Tuple[Tensor, Tensor]:
        """``match_labels (A,)`` (1, 0, -1; optional ``losses``, ``boxes``) -> (positive, negative) indices."""


SAMPLER_REGISTRY = Registry("SAMPLER", Sampler)
SAMPLER_REGISTRY.__doc__ = "Training-example samplers: matched labels -> the examples that enter the class loss."


class ProposalGenerator(Buildable, Protocol):
    """``from_config(cfg, input_shape)`` with the neck's shapes."""

    def forward(self, images: ImageList, features: Dict[str, Tensor]) -> Tuple[List[Dict[str, Tensor]], Dict]:
        """Images, pyramid features (optional third argument: targets) -> (proposals per image, losses)."""


PROPOSAL_GENERATOR_REGISTRY = Registry("PROPOSAL_GENERATOR", ProposalGenerator)
PROPOSAL_GENERATOR_REGISTRY.__doc__ = "Proposal generators (e.g. RPN): pyramid features -> boxes per image."


class ROIHeads(Buildable, Protocol):
    """``from_config(cfg, input_shape)`` with the neck's shapes."""

    def forward(self, images: ImageList, features: Dict[str, Tensor], proposals: List[Dict[str, Tensor]]):
        """Images, pyramid features, proposals (optional fourth argument: targets) -> (detections, losses)."""


ROI_HEAD_REGISTRY = Registry("ROI_HEAD", ROIHeads)
ROI_HEAD_REGISTRY.__doc__ = "Region heads: pyramid features + proposals -> losses or detections."


class ROIBoxHead(Buildable, Protocol):
    """``from_config(cfg, input_size)`` with the pooled features' ``(C, h, w)``."""

    output_size: int  # D, the width of the returned box features

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features ``(R, C, h, w)`` -> box features ``(R, D)``."""


ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD", ROIBoxHead)
ROI_BOX_HEAD_REGISTRY.__doc__ = "ROI box heads: pooled features (R, C, h, w) -> box features (R, D)."


class Detector(Buildable, Protocol):
    """A whole detector. ``from_config(cfg)``."""

    compile_targets: Sequence[str]  # submodules MODEL.COMPILE compiles (may be empty)

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Mapped dicts with "image" ``(3, H, W)`` (and "boxes", "labels" in training) -> losses in training,
        per image {"boxes" (D, 4) xyxy, "scores" (D,), "labels" (D,)} in eval."""


META_ARCH_REGISTRY = Registry("META_ARCH", Detector)
META_ARCH_REGISTRY.__doc__ = "Whole detectors: list[dict] inputs -> losses or detections."


class Hook(Protocol):
    """A training-loop hook (subclass ``retinadet.engine.HookBase``, which has every member), built
    as ``cls(**cls.from_config(cfg, trainer))``; HookBase's ``from_config`` gives no arguments."""

    @classmethod
    def from_config(cls, cfg, trainer) -> Dict[str, Any]:
        """Keyword arguments of ``__init__`` from ``cfg`` and the trainer."""

    def before_train(self) -> None: ...
    def after_train(self) -> None: ...
    def before_step(self) -> None: ...
    def after_backward(self) -> None: ...
    def after_step(self) -> None: ...
    def state_dict(self) -> Dict[str, Any]: ...
    def load_state_dict(self, state: Dict[str, Any]) -> None: ...


HOOK_REGISTRY = Registry("HOOK", Hook)
HOOK_REGISTRY.__doc__ = "Training-loop hooks (HookBase subclasses) named in TRAIN.HOOKS."

# Registry name -> its contract, for documentation tools and tests.
CONTRACTS: Dict[str, Type] = {
    r._name: r.contract for r in (
        BACKBONE_REGISTRY, NECK_REGISTRY, HEAD_REGISTRY, ANCHOR_GENERATOR_REGISTRY, MATCHER_REGISTRY,
        BOX_CODER_REGISTRY, CLS_LOSS_REGISTRY, BOX_LOSS_REGISTRY, SAMPLER_REGISTRY,
        PROPOSAL_GENERATOR_REGISTRY, ROI_HEAD_REGISTRY, ROI_BOX_HEAD_REGISTRY, META_ARCH_REGISTRY, HOOK_REGISTRY,
    )
}

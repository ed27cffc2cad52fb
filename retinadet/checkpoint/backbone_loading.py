"""Loading a backbone's weights (MODEL.BACKBONE.WEIGHTS): an ImageNet classifier's state dict (e.g.
torchvision's ``resnet50``), a backbone export, or a whole retinadet checkpoint whose ``backbone.*``
tensors are taken. Read like every checkpoint (``load_checkpoint_file``: ``weights_only=True``, a
restricted unpickler for ``.pkl``) and reported with the one ``WeightLoadReport``.

Stricter than MODEL.WEIGHTS: a backbone's weights must fit it. Keys of modules the backbone does not
build (the classifier ``fc``, stages beyond the last output) and statistics its norms do not hold
(running stats under GroupNorm) are skipped with the reason; any other unexpected key, a missing key
or a tensor of another shape is a ValueError naming the source and the keys.
"""
import logging
import os
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

from torch import Tensor, nn

from .loading import _strip_wrapper_prefix, load_checkpoint_file
from .report import BN_COUNTER, WeightLoadReport

__all__ = ["load_backbone_weights"]

logger = logging.getLogger(__name__)

_DETECTOR_PREFIX = "backbone."


def _read(source: Union[str, os.PathLike, Mapping[str, Tensor]]) -> Tuple[str, Dict[str, Tensor]]:
    """(description of the source, its tensors with wrapper and detector prefixes removed)."""
    if isinstance(source, Mapping):
        where, state = "the given state dict", dict(source)
    else:
        path = os.path.expanduser(os.fspath(source))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Backbone weights file '{path}' (MODEL.BACKBONE.WEIGHTS) does not exist; give the path of an "
                "ImageNet classifier's state dict (e.g. torchvision's resnet50, .pth) or of a retinadet checkpoint."
            )
        where, state = f"'{path}'", load_checkpoint_file(path)
    state = _strip_wrapper_prefix(state)
    if any(k.startswith(_DETECTOR_PREFIX) for k in state):
        state = {k[len(_DETECTOR_PREFIX):]: v for k, v in state.items() if k.startswith(_DETECTOR_PREFIX)}
    return where, state


def _skip_reason(backbone: nn.Module, key: str, modules: Dict[str, nn.Module]) -> Optional[str]:
    """Why ``key`` (not a key of ``backbone``) may be left out, or None when it must not be."""
    top = key.split(".", 1)[0]
    if top not in dict(backbone.named_children()):
        return f"'{top}' not built in this {type(backbone).__name__}"
    owner, _, leaf = key.rpartition(".")
    if owner in modules and not isinstance(modules[owner], (nn.Conv2d, nn.Linear)):
        return f"'{leaf}' not held by {type(modules[owner]).__name__}"
    return None


def load_backbone_weights(
    backbone: nn.Module,
    source: Union[str, os.PathLike, Mapping[str, Tensor]],
    describe: Optional[Callable[[Mapping[str, Tensor]], str]] = None,
) -> WeightLoadReport:
    """Load ``source`` (a path or a state dict) into ``backbone`` in place.

    Args:
        backbone: the module to fill; its own key names are the reference.
        source: a checkpoint path (.pth, .pkl) or a state dict.
        describe: optional ``state_dict -> "ResNet-50"``-style description used in error messages
            for both the weights and the backbone (e.g. to say the depths differ).

    Returns:
        WeightLoadReport with ``loaded`` and ``skipped`` (key -> reason) filled (also logged).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a tensor has another shape, or keys are missing or unexpected (named, up to five).
    """
    where, state = _read(source)
    ours = backbone.state_dict()
    modules = dict(backbone.named_modules())
    theirs_is = f" ({describe(state)})" if describe else ""
    ours_is = describe(ours) if describe else type(backbone).__name__
    report = WeightLoadReport(source=where)
    to_load, unexpected = {}, []
    for key, value in state.items():
        if key in ours:
            if ours[key].shape != value.shape:
                raise ValueError(f"Backbone weights from {where}{theirs_is}: '{key}' has shape {tuple(value.shape)} "
                                 f"but this {ours_is} expects {tuple(ours[key].shape)}.")
            to_load[key] = value
            continue
        reason = _skip_reason(backbone, key, modules)
        if reason is None:
            unexpected.append(key)
        else:
            report.skipped[key] = reason
    missing = [k for k in ours if k not in to_load and not k.endswith(BN_COUNTER)]
    if unexpected or missing:
        raise ValueError(
            f"Backbone weights from {where}{theirs_is} do not fit this {ours_is}: "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}."
        )
    backbone.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    logger.info(str(report))
    return report

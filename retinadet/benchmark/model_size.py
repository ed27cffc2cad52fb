"""A model's size: its parameters (total and trainable) and the FLOPs of its inference forward on one image,
by fvcore's FlopCountAnalysis (imported when first counting: it is slow to import)."""
import warnings
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from .options import BenchmarkError

__all__ = ["FLOP_CONVENTION", "SingleImageInference", "count_flops", "count_parameters", "model_size"]

FLOP_CONVENTION = (
    "fvcore FlopCountAnalysis of the inference forward on one image: one multiply-add counts as one flop "
    "(convolutions, matrix products, norms, upsampling); ops fvcore ignores by design (ReLU, reshapes, "
    "indexing, cat) count 0; all other ops count 0 and are listed as uncounted ops"
)


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """{"total": elements of ``model.parameters()`` (each counted once), "trainable": those with
    requires_grad}; buffers (e.g. FrozenBN statistics) are not parameters."""
    params = list(model.parameters())
    return {"total": sum(p.numel() for p in params), "trainable": sum(p.numel() for p in params if p.requires_grad)}


class SingleImageInference(nn.Module):
    """``model`` (our list[dict] contract) behind a tensor-in, tensors-out forward that fvcore can trace:
    ``forward(image (3, H, W))`` runs the model on ``[{"image": image}]`` and returns the tensors of its
    output dicts, in key order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The tensors of the model's output for one (3, H, W) image."""
        outputs = self.model([{"image": image}])
        return tuple(v for d in outputs for _, v in sorted(d.items()) if isinstance(v, torch.Tensor))


def count_flops(model: nn.Module, image: torch.Tensor) -> Dict[str, Any]:
    """FLOPs of ``model``'s inference forward (eval mode, no_grad) on one ``image`` (3, H, W), 0-255, by
    fvcore's FlopCountAnalysis (one multiply-add = one flop). The model's train/eval mode is restored.

    Returns {"per_image": int, "gflops_per_image": float, "image_size": [H, W], "by_operator": {op: flops},
    "uncounted_ops": {op: calls} (ops fvcore has no formula for, counted as 0)}. BenchmarkError, naming
    --no-flops, when fvcore cannot trace the model.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore.nn scripts its losses on import
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python values: expected, not actionable
            analysis = FlopCountAnalysis(SingleImageInference(model), (image,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            total = int(analysis.total())
            by_operator = dict(analysis.by_operator())
            uncounted = dict(analysis.unsupported_ops())
    except BenchmarkError:
        raise
    except Exception as e:  # tracing runs the model's own code: any failure is reported the same way
        raise BenchmarkError(
            f"fvcore could not trace the inference forward of {type(model).__name__} on a {tuple(image.shape)} "
            f"image to count its FLOPs ({type(e).__name__}: {e}). Use --no-flops to time the model without it."
        ) from e
    finally:
        model.train(was_training)
    return {
        "per_image": total,
        "gflops_per_image": total / 1e9,
        "image_size": list(image.shape[-2:]),
        "by_operator": {k: int(v) for k, v in sorted(by_operator.items(), key=lambda kv: -kv[1])},
        "uncounted_ops": dict(sorted(uncounted.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def model_size(model: nn.Module, image: Optional[torch.Tensor]) -> Dict[str, Any]:
    """{"parameters": count_parameters(model), "flops": count_flops(model, image), or None when ``image``
    is None}."""
    return {"parameters": count_parameters(model), "flops": None if image is None else count_flops(model, image)}

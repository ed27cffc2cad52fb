"""A detector's inference call run by the backend of MODEL.INFERENCE_BACKEND / INFERENCE_PRECISION.

``wrap_for_inference(cfg, model)`` returns a module with the detector's eval-mode interface (a list
of {"image" (3, h, w) uint8 at its test size, optional "height", "width"} in, a list of {"boxes",
"scores", "labels"} in each input's requested frame out), so DefaultPredictor, ``train_net.py
--eval-only`` and the benchmark run any backend through one call:

- "eager": the model itself (bfloat16: under CPU autocast, outputs back in float32);
- "compile": its dense parts torch.compile'd (MODEL.COMPILE's code path);
- "torchscript", "onnxruntime", "openvino": the model exported without the resize (the caller's
  data pipeline resizes, as for the eager model), checked against it, and run image by image.
"""
import difflib
import tempfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..config import CfgNode
from ..modeling.meta_arch.postprocess import rescale_to_inputs

__all__ = ["INFERENCE_BACKENDS", "BFLOAT16_BACKENDS", "AutocastInference", "ExportedInference",
           "check_inference_backend", "wrap_for_inference"]

INFERENCE_BACKENDS = ("eager", "compile", "torchscript", "onnxruntime", "openvino")
BFLOAT16_BACKENDS = ("eager", "compile", "openvino")


def check_inference_backend(cfg: CfgNode) -> Tuple[str, str]:
    """(MODEL.INFERENCE_BACKEND, MODEL.INFERENCE_PRECISION), or a ValueError naming the bad value."""
    backend, precision = cfg.MODEL.INFERENCE_BACKEND, cfg.MODEL.INFERENCE_PRECISION
    if backend not in INFERENCE_BACKENDS:
        close = ([b for b in INFERENCE_BACKENDS if str(backend) and b.startswith(str(backend))]
                 or difflib.get_close_matches(str(backend), INFERENCE_BACKENDS, n=1))
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"MODEL.INFERENCE_BACKEND = {backend!r} is not one of {list(INFERENCE_BACKENDS)}.{hint}")
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"MODEL.INFERENCE_PRECISION = {precision!r} is not one of ['float32', 'bfloat16'].")
    if precision == "bfloat16" and backend not in BFLOAT16_BACKENDS:
        raise ValueError(f"MODEL.INFERENCE_PRECISION = 'bfloat16' needs MODEL.INFERENCE_BACKEND in "
                         f"{list(BFLOAT16_BACKENDS)}; {backend!r} runs float32.")
    if backend not in ("eager", "compile") and cfg.MODEL.DEVICE != "cpu":
        raise ValueError(f"MODEL.INFERENCE_BACKEND = {backend!r} runs on the CPU, but MODEL.DEVICE is "
                         f"{cfg.MODEL.DEVICE!r}; use eager or compile there.")
    return backend, precision


class AutocastInference(nn.Module):
    """``model``'s inference under CPU bfloat16 autocast; floating outputs returned in float32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batched_inputs: Sequence[Dict[str, Any]]) -> List[Dict[str, torch.Tensor]]:
        """As the model's eval-mode forward."""
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = self.model(batched_inputs)
        return [{k: v.float() if v.is_floating_point() else v for k, v in o.items()} for o in outputs]


class ExportedInference(nn.Module):
    """``model`` exported (``fmt`` for ``backend``, no resize in the graph) to a temporary folder,
    checked against it on ``sample_images`` ((3, H, W) uint8; default: the exporter's), and run by
    ``backend`` one image at a time; the boxes are then rescaled to each input's "height" x "width" as
    the model's postprocess does."""

    def __init__(self, cfg: CfgNode, model: nn.Module, backend: str, precision: str = "float32",
                 class_names: Optional[List[str]] = None, num_threads: Optional[int] = None,
                 sample_images: Optional[Sequence] = None):
        super().__init__()
        from .exporter import export_model
        from .runtime import load_exported

        self.model = model.eval()
        self.backend = backend
        self._folder = tempfile.TemporaryDirectory(prefix="retinadet-export-")
        fmt = "torchscript" if backend == "torchscript" else "onnx"
        self.export_result = export_model(cfg, fmt, self._folder.name, images=sample_images, model=self.model,
                                          class_names=class_names, resize=False, num_threads=num_threads)
        self.runner = load_exported(self.export_result.path, backend, num_threads, precision)

    def forward(self, batched_inputs: Sequence[Dict[str, Any]]) -> List[Dict[str, torch.Tensor]]:
        """As the model's eval-mode forward (one runtime call per image)."""
        detections = [self.runner(item["image"]) for item in batched_inputs]
        sizes = [tuple(int(s) for s in item["image"].shape[-2:]) for item in batched_inputs]
        return rescale_to_inputs(detections, sizes, batched_inputs, drop_empty=bool(self.model.drop_empty_boxes))


def wrap_for_inference(cfg: CfgNode, model: nn.Module, class_names: Optional[List[str]] = None,
                       num_threads: Optional[int] = None, sample_images: Optional[Sequence] = None) -> nn.Module:
    """``model`` (weights loaded) run as MODEL.INFERENCE_BACKEND / INFERENCE_PRECISION ask; see the
    module docstring. Returns ``model`` itself for eager float32."""
    backend, precision = check_inference_backend(cfg)
    model.eval()
    if backend == "compile" and not cfg.MODEL.COMPILE:
        from ..modeling.compile import compile_submodules

        compile_submodules(model, model.compile_targets, key="MODEL.INFERENCE_BACKEND compile")
    if backend in ("eager", "compile"):
        return AutocastInference(model) if precision == "bfloat16" else model
    return ExportedInference(cfg, model, backend, precision, class_names, num_threads, sample_images)


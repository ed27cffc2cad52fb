"""Running an exported detector: TorchScript with torch, ONNX with onnxruntime or OpenVINO.

``load_exported(path, backend)`` returns an :class:`ExportedDetector`: ``detector(image)`` takes one
``(3, H, W)`` uint8 image (numpy array or tensor) and returns ``{"boxes": (D, 4) float32 xyxy,
"scores": (D,) float32, "labels": (D,) int64}`` as tensors. The image is checked first (dtype, rank,
size), since an ONNX runtime's own messages for a wrong input are terse and a traced TorchScript
graph cannot raise.

This module needs neither the model code nor the config: a TorchScript file needs torch and
torchvision (whose ``nms`` and ``roi_align`` ops are in the graph), an ONNX file its runtime.
"""
import os
from collections import OrderedDict
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from ..data.image_io import check_uint8_image
from .errors import require

__all__ = ["EXPORTED_BACKENDS", "PRECISIONS", "ExportedDetector", "check_exported_input", "load_exported"]

EXPORTED_BACKENDS = ("torchscript", "onnxruntime", "openvino")
# Arithmetic of a backend's network: float32 everywhere, or bfloat16 convolutions where the CPU has them.
PRECISIONS = ("float32", "bfloat16")
_FILE_FORMAT = {"torchscript": "torchscript", "onnxruntime": "onnx", "openvino": "onnx"}

ImageArray = Union[np.ndarray, torch.Tensor]


def check_exported_input(image: ImageArray, where: str = "exported model") -> np.ndarray:
    """``image`` (array or tensor) as a contiguous (3, H, W) uint8 numpy array, or a ValueError naming
    what is wrong (``retinadet.data.image_io.check_uint8_image``)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    return check_uint8_image(
        image, channels_first=True, where=f"{where}: the image", accepted="a (3, H, W) uint8 array or tensor",
        layout_hint="channels first (a 2-D gray image: stack it to 3 channels; an (H, W, 3) image: transpose "
        "it to (3, H, W))")


class ExportedDetector:
    """An exported file run by one backend; see the module docstring.

    Args:
        path: the exported file (``model.ts`` for "torchscript", ``model.onnx`` for the others).
        backend: one of :data:`EXPORTED_BACKENDS`.
        num_threads: CPU threads of the runtime (None: torch's current count).
        precision: "float32", or "bfloat16" (OpenVINO only: its CPU plugin's bf16 inference).
    """

    # OpenVINO runs the dynamic-shape network, and compiles a static one (about 1.3x faster, for about
    # a second) for a size once it has seen it _COMPILE_AFTER times; at most _MAX_COMPILED_SIZES are kept.
    _COMPILE_AFTER = 8
    _MAX_COMPILED_SIZES = 8

    def __init__(self, path: str, backend: str, num_threads: Optional[int] = None, precision: str = "float32"):
        if backend not in EXPORTED_BACKENDS:
            raise ValueError(f"Unknown exported-model backend {backend!r}; valid: {list(EXPORTED_BACKENDS)}.")
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; valid: {list(PRECISIONS)}.")
        if precision == "bfloat16" and backend != "openvino":
            raise ValueError(f"precision bfloat16 is an OpenVINO option; backend {backend!r} runs float32.")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No exported model at {path!r} (backend {backend!r} reads a "
                                    f"{_FILE_FORMAT[backend]} file; make one with tools/export_model.py).")
        self.path, self.backend, self.precision = path, backend, precision
        self.num_threads = int(num_threads or torch.get_num_threads())
        self._run = getattr(self, f"_load_{backend}")()

    def __call__(self, image: ImageArray) -> Dict[str, torch.Tensor]:
        """Detections of one (3, H, W) uint8 image in its frame; see the module docstring."""
        array = check_exported_input(image, f"{self.backend} model {self.path}")
        boxes, scores, labels = self._run(array)
        return {"boxes": torch.as_tensor(boxes, dtype=torch.float32),
                "scores": torch.as_tensor(scores, dtype=torch.float32),
                "labels": torch.as_tensor(labels).to(torch.int64)}

    def _load_torchscript(self):
        import torchvision  # noqa: F401  (registers torchvision::nms / roi_align, which the graph calls)

        module = torch.jit.load(self.path, map_location="cpu").eval()

        def run(array: np.ndarray):
            with torch.no_grad():
                return module(torch.from_numpy(array))
        return run

    def _load_onnxruntime(self):
        ort = require("onnxruntime", f"Running {self.path} with onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.num_threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(array: np.ndarray):
            return session.run(None, {name: array})
        return run

    def _load_openvino(self):
        ov = require("openvino", f"Running {self.path} with OpenVINO")
        core = ov.Core()
        network = core.read_model(self.path)
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bfloat16" else "f32",
                  "INFERENCE_NUM_THREADS": self.num_threads, "PERFORMANCE_HINT": "LATENCY"}
        dynamic = core.compile_model(network, "CPU", config)
        compiled: "OrderedDict[Tuple[int, int], object]" = OrderedDict()
        seen: Dict[Tuple[int, int], int] = {}

        def compile_for(size: Tuple[int, int]):
            sized = network.clone()
            sized.reshape({sized.inputs[0].any_name: [3, *size]})
            model = compiled[size] = core.compile_model(sized, "CPU", config)
            if len(compiled) > self._MAX_COMPILED_SIZES:
                compiled.popitem(last=False)
            return model

        def run(array: np.ndarray):
            size = (int(array.shape[1]), int(array.shape[2]))
            model = compiled.get(size)
            if model is not None:
                compiled.move_to_end(size)
            else:
                seen[size] = seen.get(size, 0) + 1
                model = compile_for(size) if seen[size] >= self._COMPILE_AFTER else dynamic
            outputs = model(array)
            return [outputs[i] for i in range(3)]
        self._compile_for = compile_for
        return run

    def compile_for(self, height: int, width: int) -> None:
        """OpenVINO: compile the network for images of ``height`` x ``width`` now (static shapes run
        about 1.3x faster than the dynamic network); other backends need nothing."""
        if self.backend == "openvino":
            self._compile_for((int(height), int(width)))


def load_exported(path: str, backend: str, num_threads: Optional[int] = None,
                  precision: str = "float32") -> ExportedDetector:
    """An :class:`ExportedDetector` for ``path`` run by ``backend``."""
    return ExportedDetector(path, backend, num_threads, precision)

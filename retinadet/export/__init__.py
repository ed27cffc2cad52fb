"""Export: a detector as one graph (TorchScript or ONNX) from a uint8 image to detections, and the
runtimes that run such a file (torch, onnxruntime, OpenVINO). See tools/export_model.py."""
from .errors import ExportError, MissingPackageError
from .exporter import (
    BOX_TOLERANCE,
    EXPORT_FORMATS,
    ONNX_OPSET,
    SCORE_TOLERANCE,
    Comparison,
    ExportResult,
    build_detection_graph,
    compare_detections,
    export_graph,
    export_model,
    sample_images,
    synthetic_scene,
)
from .graph import DetectionGraph, resized_shape
from .runtime import EXPORTED_BACKENDS, PRECISIONS, ExportedDetector, check_exported_input, load_exported

__all__ = [
    "BOX_TOLERANCE", "EXPORT_FORMATS", "EXPORTED_BACKENDS", "ONNX_OPSET", "PRECISIONS", "SCORE_TOLERANCE",
    "Comparison", "DetectionGraph", "ExportError", "ExportResult", "ExportedDetector", "MissingPackageError",
    "build_detection_graph", "check_exported_input", "compare_detections", "export_graph", "export_model",
    "load_exported", "resized_shape", "sample_images", "synthetic_scene",
]

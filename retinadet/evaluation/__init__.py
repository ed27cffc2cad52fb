"""Evaluation: the evaluator interface, the inference loop, COCO box AP and a fast COCOeval.

Names are imported on first use, so ``from retinadet.evaluation import COCOeval`` (the drop-in for
pycocotools' class) does not import torch or the data pipeline.
"""
import importlib
from typing import Any

# public name -> the submodule that defines it
_SUBMODULE_OF = {
    "COCOEvaluator": "coco_evaluation",
    "COCOeval": "fast_cocoeval",
    "DetectionResults": "coco_results",
    "load_results": "coco_results",
    "DatasetEvaluator": "evaluator",
    "default_output_dir": "evaluator",
    "inference_on_dataset": "evaluator",
}
__all__ = sorted(_SUBMODULE_OF)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULE_OF:
        value = getattr(importlib.import_module(f".{_SUBMODULE_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

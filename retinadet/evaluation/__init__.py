"""Evaluation: the evaluator interface, the inference loop, COCO box AP and a fast COCOeval."""
from .coco_evaluation import COCOEvaluator
from .coco_results import DetectionResults, load_results
from .evaluator import DatasetEvaluator, default_output_dir, inference_on_dataset
from .fast_cocoeval import COCOeval

__all__ = ["COCOEvaluator", "COCOeval", "DetectionResults", "DatasetEvaluator", "default_output_dir",
           "inference_on_dataset", "load_results"]

"""Evaluation: the evaluator interface, the inference loop and COCO box AP."""
from .coco_evaluation import COCOEvaluator
from .evaluator import DatasetEvaluator, default_output_dir, inference_on_dataset

__all__ = ["COCOEvaluator", "DatasetEvaluator", "default_output_dir", "inference_on_dataset"]

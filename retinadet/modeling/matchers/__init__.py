"""Matchers: assign each anchor a ground-truth box and a NEGATIVE / IGNORE / POSITIVE label; the
matching-and-sampling step built on them (assignment.py)."""
from .assignment import ImageAssignment, assign_targets, match_image, sample_image
from .iou_matcher import IGNORE, LABELS_BY_NAME, NEGATIVE, POSITIVE, IoUMatcher

__all__ = [
    "NEGATIVE",
    "IGNORE",
    "POSITIVE",
    "LABELS_BY_NAME",
    "IoUMatcher",
    "ImageAssignment",
    "assign_targets",
    "match_image",
    "sample_image",
]

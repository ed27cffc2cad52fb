"""Matchers: assign each anchor a ground-truth box and a NEGATIVE / IGNORE / POSITIVE label."""
from .iou_matcher import IGNORE, LABELS_BY_NAME, NEGATIVE, POSITIVE, IoUMatcher

__all__ = ["NEGATIVE", "IGNORE", "POSITIVE", "LABELS_BY_NAME", "IoUMatcher"]

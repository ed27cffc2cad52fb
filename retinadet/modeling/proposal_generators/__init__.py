"""Proposal generators of the two-stage detector (RPN)."""
from .rpn import RPN

__all__ = ["RPN"]

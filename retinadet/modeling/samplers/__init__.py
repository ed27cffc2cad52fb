"""Training-example samplers: which anchors or proposals enter the classification loss."""
from .balanced import BalancedRandomSampler
from .base import ExampleSampler, check_sampler_args
from .ohem import OHEMSampler

__all__ = ["BalancedRandomSampler", "ExampleSampler", "OHEMSampler", "check_sampler_args"]

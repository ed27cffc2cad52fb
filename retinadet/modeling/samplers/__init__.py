"""Training-example samplers: which anchors or proposals enter the classification loss."""
from .balanced import BalancedRandomSampler, check_sampler_args
from .ohem import OHEMSampler

__all__ = ["BalancedRandomSampler", "OHEMSampler", "check_sampler_args"]

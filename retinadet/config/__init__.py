"""The config system: get_cfg() returns the defaults, plug-ins extend them."""
from .config import CfgNode, config_extension, get_cfg

__all__ = ["CfgNode", "config_extension", "get_cfg"]

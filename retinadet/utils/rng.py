"""Seeding and saving the random number generators (Python, numpy, torch CPU and CUDA)."""
import logging
import os
import random
from datetime import datetime
from typing import Any, Dict

import numpy as np
import torch

__all__ = ["get_rng_states", "seed_all_rng", "set_rng_states"]

logger = logging.getLogger(__name__)


def seed_all_rng(seed: int) -> int:
    """Seed Python's, numpy's and torch's generators with ``seed``; ``seed < 0`` draws one from the
    time and the process id. Returns the seed used."""
    if seed < 0:
        seed = (os.getpid() + int(datetime.now().strftime("%S%f")) + int.from_bytes(os.urandom(2), "big")) % 2**31
        logger.info("Using a random seed %d", seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def get_rng_states() -> Dict[str, Any]:
    """Every generator's state in types ``torch.load(weights_only=True)`` accepts (tensors, ints,
    floats, tuples, strings)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    states: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    """Restore what ``get_rng_states()`` returned (the CUDA part only where CUDA is in use)."""
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

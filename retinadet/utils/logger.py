"""Logging set-up of a run: a console handler (main process) and OUTPUT_DIR/log.txt (per process)."""
import logging
import os
import sys
from typing import Optional

__all__ = ["setup_logger"]

_FORMAT = "[%(asctime)s %(name)s %(levelname)s]: %(message)s"


def setup_logger(output_dir: Optional[str] = None, distributed_rank: int = 0, name: str = "retinadet",
                 level: int = logging.INFO) -> logging.Logger:
    """Configure the ``name`` logger: INFO to stdout on rank 0 (WARNING and above on other ranks), and
    all records to ``output_dir/log.txt`` (rank 0) or ``log.txt.rank<N>``. Idempotent: handlers added
    by an earlier call are replaced. Returns the logger."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_retinadet", False):
            logger.removeHandler(handler)
            handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt="%m/%d %H:%M:%S")
    console = logging.StreamHandler(sys.stdout)
    console.setLevel(level if distributed_rank == 0 else logging.WARNING)
    console.setFormatter(logging.Formatter(_FORMAT if distributed_rank == 0 else f"[rank {distributed_rank}] " + _FORMAT,
                                           datefmt="%m/%d %H:%M:%S"))
    console._retinadet = True
    logger.addHandler(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        filename = os.path.join(output_dir, "log.txt" if distributed_rank == 0 else f"log.txt.rank{distributed_rank}")
        file_handler = logging.FileHandler(filename)
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        file_handler._retinadet = True
        logger.addHandler(file_handler)
    return logger

#!/usr/bin/env python
"""Train a detector from a config and evaluate it, or evaluate saved weights with --eval-only: the
command of ``retinadet.engine.train_net`` (also ``retinadet-train`` and ``python -m
retinadet.engine.train_net``), kept here so ``python tools/train_net.py ...`` works as before.

    python tools/train_net.py --config-file configs/shapes/retinanet_R_18_FPN.yaml [--resume] [KEY VALUE ...]
"""
import sys

from retinadet.engine.train_net import INTERRUPTED_EXIT_CODE, default_argument_parser, invoke_main, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(invoke_main())

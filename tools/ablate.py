#!/usr/bin/env python
"""Reproduce the focal-loss paper's ablations (Lin et al. 2017, Table 1) on the shapes data set: the
command of ``retinadet.experiments.ablate`` (also ``retinadet-ablate`` and ``python -m
retinadet.experiments.ablate``; --help tells the rest), kept here so ``python tools/ablate.py ...``
works as before.
"""
import sys

from retinadet.experiments.ablate import build_parser, main, plan  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())

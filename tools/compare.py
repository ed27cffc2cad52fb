#!/usr/bin/env python
"""Train and evaluate several configs with the same iteration budget and report them side by side:
the command of ``retinadet.experiments.compare`` (also ``retinadet-compare`` and ``python -m
retinadet.experiments.compare``; --help tells the rest), kept here so ``python tools/compare.py ...``
works as before.
"""
import sys

from retinadet.experiments.compare import build_parser, main, plan  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Convert a detectron2 YAML config (with its _BASE_ chain) into a plain retinadet YAML that loads on its own.

    python tools/convert_config.py --source detectron2 IN.yaml OUT.yaml

OUT.yaml holds every value that differs from retinadet's defaults: the detectron2 config translated from
detectron2's defaults (retinadet.config.detectron2). A detectron2 key asking for what retinadet lacks
(MODEL.MASK_ON: True, a C4 backbone, ...) is an error naming it, and nothing is written.
"""
import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and convert; 0 when written, 1 (with the reason on stderr) when refused."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--source", required=True, choices=["detectron2"], help="the framework of IN.yaml")
    parser.add_argument("input", metavar="IN.yaml", help="the config to convert")
    parser.add_argument("output", metavar="OUT.yaml", help="where to write the retinadet config")
    args = parser.parse_args(argv)
    from retinadet.config.convert import convert_config

    try:
        convert_config(args.input, args.output, args.source)
    except (ValueError, KeyError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Wrote {args.output} (the {args.source} config {args.input} as a retinadet config).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

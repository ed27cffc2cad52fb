#!/usr/bin/env python
"""Convert torchvision (RetinaNet, Faster R-CNN, ResNet) or detectron2 (RetinaNet, Faster / Mask R-CNN) weights to a retinadet
checkpoint file."""
import argparse
import os
import sys
from typing import TYPE_CHECKING, Dict, List, Optional

if TYPE_CHECKING:
    from torch import Tensor

# --source value -> key layouts of retinadet.checkpoint.detect_format() that it accepts.
SOURCE_LAYOUTS: Dict[str, List[str]] = {
    "torchvision": ["torchvision", "torchvision_faster_rcnn", "torchvision_resnet"],
    "detectron2": ["detectron2"],
}


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser (--source, --input, --output)."""
    parser = argparse.ArgumentParser(
        description=(
            "Rename the keys of a torchvision RetinaNet / Faster R-CNN / ResNet or detectron2 "
            "RetinaNet / Faster R-CNN / Mask R-CNN checkpoint to retinadet's and save {'model': state_dict, '__source__': source}. "
            "A torchvision Faster R-CNN's classifier is reordered to put background last. "
            "detectron2 .pkl files are read by a restricted unpickler that admits only numpy arrays and plain "
            "data, so a file cannot run code while it loads."
        )
    )
    parser.add_argument("--source", required=True, choices=sorted(SOURCE_LAYOUTS))
    parser.add_argument("--input", required=True, help="checkpoint to convert (.pth, .pt, .pkl)")
    parser.add_argument("--output", required=True, help="where to write the converted .pth")
    return parser


def convert_file(source: str, input_path: str) -> Dict[str, "Tensor"]:
    """Read ``input_path`` and convert it from ``source``; ValueError if it is another layout."""
    # torch is imported here and in save_atomically, not at the top, so that usage errors
    # answer at once instead of after the seconds torch takes to import.
    from retinadet.checkpoint import CONVERTERS, detect_format, load_checkpoint_file

    state_dict = load_checkpoint_file(input_path)
    try:
        layout = detect_format(state_dict)
    except ValueError as e:
        raise ValueError(f"{input_path} does not look like a {source} checkpoint: {e}") from e
    if layout not in SOURCE_LAYOUTS[source]:
        keys = ", ".join(list(state_dict)[:3])
        raise ValueError(
            f"{input_path} does not look like a {source} checkpoint: its keys (e.g. {keys}) "
            f"have the {layout} layout. Pass --source to match the file."
        )
    return CONVERTERS[layout](state_dict)


def save_atomically(obj: object, path: str) -> None:
    """torch.save ``obj`` to ``path`` through the project's atomic writer: a crash never leaves half a file."""
    import torch

    from retinadet.utils.file_io import atomic_save

    atomic_save(path, lambda f: torch.save(obj, f))


def main(argv: Optional[List[str]] = None) -> int:
    """Run the conversion; return the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        converted = convert_file(args.source, args.input)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_atomically({"model": converted, "__source__": args.source}, args.output)
    print(f"Converted {len(converted)} tensors from {args.source} ({args.input}) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

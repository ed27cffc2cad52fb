"""Embedded synthetic detection set: seeded PNG images of shapes on cluttered backgrounds, COCO json."""
import argparse
import collections
import functools
import json
import logging
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .catalog import DatasetCatalog, MetadataCatalog
from .shapes_drawing import (
    DEFAULT_IMAGE_SIZE, SHAPE_NAMES, SHAPES_TIERS, Shape, ShapesTier, get_tier, mask_box, render_sample,
)

__all__ = [
    "SHAPE_NAMES", "DEFAULT_IMAGE_SIZE", "SHAPES_SPLITS", "SHAPES_TIERS", "Shape", "ShapesTier", "get_tier",
    "mask_box", "render_sample", "generate", "register_shapes", "register_shapes_from_config", "main",
]

logger = logging.getLogger(__name__)

# Registered name -> (split folder, number of images, seed, tier); a 3-tuple means the hard tier.
SHAPES_SPLITS = {
    # The hard tier: the benchmark (mostly COCO-small objects, low contrast, shape-like clutter).
    "shapes_train": ("train", 1000, 0, "hard"),
    "shapes_val": ("val", 200, 1, "hard"),
    # Seconds to generate: for configs/quick/ and the end-to-end tests.
    "shapes_train_tiny": ("train_tiny", 32, 2, "hard"),
    "shapes_val_tiny": ("val_tiny", 16, 3, "hard"),
    # The easy tier: what the demo learns in minutes on a CPU (see shapes_drawing.SHAPES_TIERS).
    "shapes_easy_train": ("easy_train", 2000, 4, "easy"),
    "shapes_easy_val": ("easy_val", 200, 5, "easy"),
}
_VERSION = 2  # bump when shapes_drawing.py changes, so stale sets on disk are regenerated


def _split_spec(spec: Sequence) -> Tuple[str, int, int, str]:
    """(folder, num_images, seed[, tier]) -> (folder, num_images, seed, tier)."""
    if len(spec) == 3:
        return (spec[0], int(spec[1]), int(spec[2]), "hard")
    if len(spec) == 4:
        return (spec[0], int(spec[1]), int(spec[2]), get_tier(spec[3]).name)
    raise ValueError(f"A shapes split is (folder, num_images, seed) or (folder, num_images, seed, tier); got {spec!r}.")


def _image_shape(rng: np.random.Generator, image_size: Tuple[int, int]) -> Tuple[int, int]:
    """(height, width): the long side uniform in ``image_size``, the short side 60-100% of it."""
    long_side = int(rng.integers(image_size[0], image_size[1] + 1))
    short_side = max(1, int(round(long_side * rng.uniform(0.6, 1.0))))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def _params(split: str, num_images: int, seed: int, num_classes: int, image_size: Sequence[int],
            tier: str = "hard") -> Dict:
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes={num_classes} for shapes split '{split}'; valid: "
                         f"1..{len(SHAPE_NAMES)} ({', '.join(SHAPE_NAMES)}).")
    if num_images < 1 or seed < 0:
        raise ValueError(f"Shapes split '{split}': num_images={num_images} must be >= 1 and "
                         f"seed={seed} >= 0.")
    size = [int(image_size[0]), int(image_size[-1])]
    if not 32 <= size[0] <= size[1]:
        raise ValueError(f"image_size={tuple(image_size)} for shapes split '{split}'; need (min, max) of the "
                         f"longer side with 32 <= min <= max.")
    return {"generator": __name__, "version": _VERSION, "split": split, "num_images": int(num_images),
            "seed": int(seed), "num_classes": int(num_classes), "image_size": size, "tier": get_tier(tier).name}


def _is_complete(folder: str, params: Dict) -> bool:
    """True when ``folder`` holds an annotations.json made with ``params`` and every image it lists."""
    try:
        with open(os.path.join(folder, "annotations.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return False
    if data.get("info", {}).get("params") != params:
        return False
    return all(os.path.isfile(os.path.join(folder, "images", im["file_name"])) for im in data["images"])


def _write_image(folder: str, params: Dict, index: int) -> Tuple[Dict, List[Dict]]:
    """Draw and save image ``index``; returns its COCO image entry and its objects."""
    # One generator per image: image i is the same whatever num_images is, and any drawing order works.
    rng = np.random.default_rng([params["seed"], index])
    height, width = _image_shape(rng, params["image_size"])
    pixels, objects = render_sample(rng, height, width, params["num_classes"], tier=params["tier"])
    file_name = f"{index:06d}.png"
    # Noisy images hardly compress; level 1 is several times faster than the default at nearly the same size.
    Image.fromarray(pixels).save(os.path.join(folder, "images", file_name), format="PNG", compress_level=1)
    return {"id": index + 1, "file_name": file_name, "height": height, "width": width}, objects


def _write_split(folder: str, params: Dict) -> None:
    """Write images/*.png and annotations.json for ``params`` into ``folder`` (which must be new)."""
    os.makedirs(os.path.join(folder, "images"))
    images, annotations = [], []
    # numpy and the PNG encoder release the GIL, so threads draw several images at once.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(functools.partial(_write_image, folder, params), range(params["num_images"]))
        for image, objects in results:
            images.append(image)
            for obj in objects:
                x0, y0, x1, y1 = obj["box"]
                annotations.append({"id": len(annotations) + 1, "image_id": image["id"],
                                    "category_id": obj["category_id"], "bbox": [x0, y0, x1 - x0, y1 - y0],
                                    "area": float(obj["area"]), "iscrowd": 0})
    categories = [{"id": k + 1, "name": name, "supercategory": "shape"}
                  for k, name in enumerate(SHAPE_NAMES[:params["num_classes"]])]
    data = {"info": {"description": "retinadet synthetic shapes", "params": params}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}
    with open(os.path.join(folder, "annotations.json"), "w") as f:
        json.dump(data, f)


def generate(root: str, split: str, num_images: int, seed: int, num_classes: int = 6,
             image_size: Optional[Tuple[int, int]] = None, tier: str = "hard") -> str:
    """Write ``root/shapes/<split>/images/*.png`` and ``annotations.json`` (COCO format, bbox xywh) of
    ``tier`` (a name of SHAPES_TIERS) and return the json path. ``image_size`` is the (min, max) of the
    longer side (default: the tier's). The split is built in a temporary folder and renamed into place;
    a complete split made with the same parameters is reused."""
    image_size = get_tier(tier).image_size if image_size is None else image_size
    params = _params(split, num_images, seed, num_classes, image_size, tier)
    base = os.path.join(root, "shapes")
    target = os.path.join(base, split)
    json_file = os.path.join(target, "annotations.json")
    if _is_complete(target, params):
        return json_file
    os.makedirs(base, exist_ok=True)
    temporary = os.path.join(base, f".{split}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    try:
        _write_split(temporary, params)
        if os.path.exists(target):
            stale = f"{temporary}-stale"
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(temporary, target)
    except OSError:
        # Another process (e.g. another rank) may have put an identical split in place first.
        if not _is_complete(target, params):
            raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    logger.info("Generated %d shapes images in %s in %.1f s.", num_images, target,
                time.perf_counter() - start)
    return json_file


def _load_split(name: str, root: str, split: str, num_images: int, seed: int, num_classes: int,
                image_size: Tuple[int, int], tier: str = "hard") -> List[Dict]:
    from retinadet.data.coco import load_coco_json  # imported late: registration must not need it

    json_file = generate(root, split, num_images, seed, num_classes, image_size, tier)
    return load_coco_json(json_file, os.path.join(os.path.dirname(json_file), "images"), dataset_name=name)


def register_shapes(root: str = "./datasets", num_classes: int = 6,
                    image_size: Optional[Tuple[int, int]] = None,
                    splits: Optional[Dict[str, Tuple]] = None) -> List[str]:
    """Register the shapes splits (name -> (split folder, num_images, seed[, tier]), default
    SHAPES_SPLITS) lazily: images are generated under ``root`` on the first ``DatasetCatalog.get``.
    ``image_size`` overrides every tier's longer-side range. Registering again with the same root is a
    no-op; another root re-points the names to it. Returns the names."""
    root = os.path.abspath(os.path.expanduser(root))
    for name, spec in (splits or SHAPES_SPLITS).items():
        split, num_images, seed, tier = _split_spec(spec)
        size = tuple(get_tier(tier).image_size if image_size is None else image_size)
        _params(split, num_images, seed, num_classes, size, tier)  # fail now, not at first use
        folder = os.path.join(root, "shapes", split)
        json_file = os.path.join(folder, "annotations.json")
        if name in DatasetCatalog:
            registered = MetadataCatalog.get(name).get("json_file")
            if registered == json_file:
                continue
            # The config in use decides where the embedded set lives: point the name at the new root.
            logger.info("Data set '%s' moves from %s to root %s.", name, registered, root)
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, functools.partial(_load_split, name, root, split, num_images, seed,
                                                        num_classes, size, tier))
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_NAMES[:num_classes]), json_file=json_file,
                                      image_root=os.path.join(folder, "images"), evaluator_type="coco",
                                      shapes_tier=tier)
    return list(splits or SHAPES_SPLITS)


def register_shapes_from_config(cfg: Any) -> List[str]:
    """Register the default shapes splits under ``cfg.DATASETS.ROOT``; returns the names."""
    return register_shapes(cfg.DATASETS.ROOT)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: generate one split and print where it is and how many objects each class has."""
    parser = argparse.ArgumentParser(prog="python -m retinadet.data.shapes", description=__doc__)
    parser.add_argument("--root", default="./datasets", help="data set folder; writes <root>/shapes/<split>")
    parser.add_argument("--split", default="val", help="split folder name (default: val)")
    parser.add_argument("--num-images", type=int, default=200, help="number of images (default: 200)")
    parser.add_argument("--seed", type=int, default=1, help="random seed, >= 0 (default: 1)")
    parser.add_argument("--num-classes", type=int, default=6, help=f"1..{len(SHAPE_NAMES)} (default: 6)")
    parser.add_argument("--tier", default="hard", choices=list(SHAPES_TIERS),
                        help="how hard the images are (default: hard; easy is the demo's)")
    parser.add_argument("--image-size", type=int, nargs="+", default=None, metavar="PIXELS",
                        help="longer side: MIN MAX, or one value (default: the tier's, 256 384 for hard)")
    args = parser.parse_args(argv)
    if args.image_size is not None and len(args.image_size) > 2:
        parser.error(f"--image-size takes one or two values, got {args.image_size}")
    start = time.perf_counter()
    json_file = generate(args.root, args.split, args.num_images, args.seed, args.num_classes, args.image_size,
                         args.tier)
    with open(json_file) as f:
        data = json.load(f)
    counts = collections.Counter(a["category_id"] for a in data["annotations"])
    image_root = os.path.join(os.path.dirname(json_file), "images")
    print(f"{len(data['images'])} images, {len(data['annotations'])} objects: {json_file} "
          f"(images in {image_root}, {time.perf_counter() - start:.1f} s)")
    for cat in data["categories"]:
        print(f"  {cat['id']:>2} {cat['name']:<10} {counts.get(cat['id'], 0):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

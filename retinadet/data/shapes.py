"""Embedded synthetic detection set: seeded PNG images of shapes on cluttered backgrounds, COCO json."""
import argparse
import collections
import functools
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .catalog import DatasetCatalog, MetadataCatalog

__all__ = [
    "SHAPE_NAMES", "DEFAULT_IMAGE_SIZE", "SHAPES_SPLITS", "Shape", "mask_box", "render_sample", "generate",
    "register_shapes", "register_shapes_from_config", "main",
]

logger = logging.getLogger(__name__)

# Class names by category id - 1; ``num_classes`` K takes the first K.
SHAPE_NAMES = ("circle", "square", "triangle", "ellipse", "rectangle", "star", "cross", "hexagon")
DEFAULT_IMAGE_SIZE = (256, 384)  # (min, max) of the longer image side, pixels
# Registered name -> (split folder, number of images, seed).
SHAPES_SPLITS = {"shapes_train": ("train", 1000, 0), "shapes_val": ("val", 200, 1)}
_VERSION = 1  # bump when the drawing changes, so stale sets on disk are regenerated
_REFERENCE_SIDE = 384.0  # object sizes 8-160 px are quoted for a 384 px image and scale with it
_SMALL_FRACTION = 0.35  # share of objects drawn in the small band (8-24 px at the reference side)
_LOW_CONTRAST_FRACTION = 0.2  # share of objects coloured close to the background under them
_MIN_VISIBLE = 0.3  # keep an annotation while at least 30% of its shape is visible (in frame, not covered)


def _unit_polygon(sides: int, phase: float = math.pi / 2) -> np.ndarray:
    """Regular polygon on the unit circle, (sides, 2); the default phase puts a vertex straight up."""
    t = phase - np.arange(sides) * 2 * math.pi / sides
    return np.stack([np.cos(t), -np.sin(t)], axis=1)


def _star() -> List[np.ndarray]:
    # A star is not convex: the inner pentagon plus one triangle per spike covers it exactly.
    outer, inner = _unit_polygon(5), 0.45 * _unit_polygon(5, math.pi / 2 - math.pi / 5)
    return [inner] + [np.stack([inner[k - 1], outer[k], inner[k]]) for k in range(5)]


def _cross(arm: float = 0.3) -> List[np.ndarray]:
    r = math.hypot(1.0, arm)  # scale so the arm corners lie on the unit circle
    bar = np.array([[-1, -arm], [1, -arm], [1, arm], [-1, arm]]) / r
    return [bar, bar[:, ::-1].copy()]


@dataclass
class Shape:
    """One shape to draw; a pixel belongs to it when the pixel's centre lies inside it.

    Attributes:
        kind: one of SHAPE_NAMES.
        center: (x, y) in pixels, pixel i covering [i, i + 1).
        size: diameter of the circumscribed circle in pixels, so the box is at most ``size`` wide at
            any rotation.
        angle: rotation in degrees.
        aspect: short / long side of an ellipse or rectangle (ignored by the other kinds).
    """

    kind: str
    center: Tuple[float, float]
    size: float
    angle: float = 0.0
    aspect: float = 0.5

    def _pieces(self) -> List[np.ndarray]:
        if self.kind in ("circle", "ellipse"):
            return []
        if self.kind == "rectangle":
            phi = math.atan(self.aspect)
            return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [math.cos(phi), math.sin(phi)]]
        table = {"square": lambda: [_unit_polygon(4, math.pi / 4)], "triangle": lambda: [_unit_polygon(3)],
                 "hexagon": lambda: [_unit_polygon(6)], "star": _star, "cross": _cross}
        if self.kind not in table:
            raise ValueError(f"Unknown shape kind {self.kind!r}; valid kinds are {list(SHAPE_NAMES)}.")
        return table[self.kind]()

    def rasterize(self, height: int, width: int) -> Tuple[int, int, np.ndarray, int]:
        """Pixels whose centres lie inside the shape, clipped to a ``height`` x ``width`` image.

        Returns (y0, x0, mask, full_area): ``mask`` is a bool (h, w) window whose top-left pixel is
        (y0, x0), and ``full_area`` counts the shape's pixels before clipping to the image.
        """
        r = self.size / 2.0
        cx, cy = self.center
        x0, y0 = math.floor(cx - r) - 1, math.floor(cy - r) - 1
        xs = np.arange(x0, math.ceil(cx + r) + 2) + 0.5 - cx
        ys = (np.arange(y0, math.ceil(cy + r) + 2) + 0.5 - cy)[:, None]
        # Rotate the pixel centres into the shape's own frame, in units of the circumscribed radius.
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        u, v = (xs * c - ys * s) / r, (xs * s + ys * c) / r
        pieces = self._pieces()
        if not pieces:
            ry = 1.0 if self.kind == "circle" else self.aspect
            mask = u * u + (v / ry) ** 2 <= 1.0
        else:
            mask = np.zeros(np.broadcast(u, v).shape, dtype=bool)
            for poly in pieces:
                mask |= _inside_convex(poly, u, v)
        full_area = int(mask.sum())
        top, left = max(0, -y0), max(0, -x0)
        bottom, right = min(mask.shape[0], height - y0), min(mask.shape[1], width - x0)
        return y0 + top, x0 + left, mask[top:max(top, bottom), left:max(left, right)], full_area

    def mask(self, height: int, width: int) -> np.ndarray:
        """Bool (height, width) mask of the pixels the shape covers."""
        out = np.zeros((height, width), dtype=bool)
        y0, x0, window, _ = self.rasterize(height, width)
        out[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window
        return out


def _inside_convex(poly: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # A point is inside a convex polygon when it is on the inner side of every edge (edges included).
    (ax, ay), (bx, by) = poly[1] - poly[0], poly[2] - poly[1]
    orientation = 1.0 if ax * by - ay * bx >= 0 else -1.0
    inside = np.ones(np.broadcast(u, v).shape, dtype=bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        inside &= orientation * ((b[0] - a[0]) * (v - a[1]) - (b[1] - a[1]) * (u - a[0])) >= 0
    return inside


def mask_box(mask: np.ndarray, y0: int = 0, x0: int = 0) -> Optional[List[float]]:
    """Tight box of a bool mask as [x0, y0, x1, y1] (xyxy absolute pixels, exclusive right/bottom edges),
    offset by the window origin (y0, x0); None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return [float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1)]


def _resize(channels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a float32 (h, w, C) array to (height, width, C)."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., k])).resize(
        (width, height), Image.BILINEAR)) for k in range(channels.shape[-1])], axis=-1)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float32 (H, W, 3) background: a gradient, low-frequency texture, soft blobs, sometimes stripes."""
    # The smooth parts are drawn at a quarter of the resolution and upsampled: same look, 16x less work.
    h, w = -(-height // 4), -(-width // 4)
    theta = rng.uniform(0, 2 * math.pi)
    xs, ys = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
    t = xs * math.cos(theta) + ys * math.sin(theta)
    t = (t - t.min()) / max(float(np.ptp(t)), 1.0)
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    img = c0 + t[..., None] * (c1 - c0)
    coarse = rng.uniform(-1, 1, (int(rng.integers(3, 9)),) * 2 + (3,)).astype(np.float32)
    img += np.float32(rng.uniform(5, 30)) * _resize(coarse, h, w)
    for _ in range(int(rng.integers(1, 6))):
        sigma = rng.uniform(0.05, 0.25) * max(h, w)
        gx = np.exp(-0.5 * ((np.arange(w) - rng.uniform(0, w)) / sigma) ** 2).astype(np.float32)
        gy = np.exp(-0.5 * ((np.arange(h) - rng.uniform(0, h)) / sigma) ** 2).astype(np.float32)
        alpha = (np.float32(rng.uniform(0.3, 0.8)) * np.outer(gy, gx))[..., None]
        img += alpha * (rng.uniform(0, 255, 3).astype(np.float32) - img)
    img = _resize(img, height, width)
    if rng.random() < 0.5:
        xs, ys = np.arange(width, dtype=np.float32)[None, :], np.arange(height, dtype=np.float32)[:, None]
        period = rng.uniform(5, 40)
        phase = (xs * math.cos(theta + 1.0) + ys * math.sin(theta + 1.0)) * np.float32(2 * math.pi / period)
        wave = np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))
        img += wave[..., None] * (rng.uniform(8, 35) * rng.uniform(-1, 1, 3)).astype(np.float32)
    return img


def _draw_clutter(rng: np.random.Generator, image: Image.Image) -> None:
    """Distractors that belong to no class: lines, arcs, scribbles, irregular blobs, dots."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    long_side = max(width, height)
    for _ in range(int(rng.integers(2, 6 + long_side // 48))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        extent = rng.uniform(0.03, 0.3) * long_side
        kind = rng.integers(0, 5)
        if kind == 0:
            a = rng.uniform(0, 2 * math.pi)
            draw.line([(x, y), (x + extent * math.cos(a), y + extent * math.sin(a))], fill=colour,
                      width=int(rng.integers(1, 4)))
        elif kind == 1:
            start = rng.uniform(0, 360)
            draw.arc([x - extent / 2, y - extent / 2, x + extent / 2, y + extent / 2], start,
                     start + rng.uniform(40, 200), fill=colour, width=int(rng.integers(1, 4)))
        elif kind == 2:
            steps = rng.normal(0, extent / 4, (int(rng.integers(3, 8)), 2)).cumsum(axis=0) + [x, y]
            draw.line([tuple(p) for p in steps], fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 3:
            # Strongly jittered radii keep blobs from looking like circles or regular polygons.
            n = int(rng.integers(9, 17))
            a = np.sort(rng.uniform(0, 2 * math.pi, n))
            rad = extent / 3 * rng.uniform(0.3, 1.0, n)
            draw.polygon([(x + r * math.cos(t), y + r * math.sin(t)) for r, t in zip(rad, a)], fill=colour)
        else:
            r = rng.uniform(1, 3)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def _object_size(rng: np.random.Generator, height: int, width: int) -> float:
    """Circumscribed diameter in pixels: 8-160 at a 384 px long side, scaled with the image, often small."""
    scale = max(height, width) / _REFERENCE_SIDE
    lo = max(8.0, 8.0 * scale)
    hi = max(lo, min(160.0 * scale, 0.9 * min(height, width)))
    small_hi = min(hi, 3.0 * lo)
    if rng.random() < _SMALL_FRACTION or small_hi >= hi:
        return float(rng.uniform(lo, small_hi))
    return float(math.exp(rng.uniform(math.log(small_hi), math.log(hi))))


def _place(rng: np.random.Generator, kind: str, size: float, height: int, width: int) -> Shape:
    """A shape of ``kind`` at a random pose with at least 60% of it inside the image."""
    angle, aspect = float(rng.uniform(0, 360)), float(rng.uniform(0.35, 0.65))
    for _ in range(20):
        center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        shape = Shape(kind, center, size, angle, aspect)
        _, _, window, full_area = shape.rasterize(height, width)
        if window.sum() >= 0.6 * full_area:
            return shape
    return Shape(kind, (width / 2.0, height / 2.0), size, angle, aspect)  # size <= 0.9 short side: fits


def render_sample(rng: np.random.Generator, height: int, width: int, num_classes: int,
                  noise_sigma: Tuple[float, float] = (2.0, 12.0)) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Draw one image with 1-6 objects (later ones may cover earlier ones).

    Returns (image, objects): ``image`` uint8 (H, W, 3) RGB; ``objects`` the kept objects in drawing
    order, each {"category_id": int in [1, K], "box": [x0, y0, x1, y1] xyxy absolute pixels (the full
    shape, clipped to the image), "area": pixels of the shape inside the image, "mask": bool (H, W) of
    the same pixels, "visible": bool (H, W) of the pixels showing its colour, "colour": (3,) uint8,
    "size": circumscribed diameter in pixels}. Objects more than 70% hidden are dropped; the last drawn
    is never covered, so at least one is kept. Gaussian noise with a sigma drawn from ``noise_sigma``
    covers everything after drawing.
    """
    image = Image.fromarray(np.clip(_background(rng, height, width), 0, 255).astype(np.uint8))
    _draw_clutter(rng, image)
    pixels = np.asarray(image, dtype=np.float32).copy()
    owner = np.full((height, width), -1, dtype=np.int16)
    drawn = []
    for index in range(int(rng.integers(1, 7))):
        shape = _place(rng, SHAPE_NAMES[int(rng.integers(num_classes))], _object_size(rng, height, width),
                       height, width)
        y0, x0, window, full_area = shape.rasterize(height, width)
        region = (slice(y0, y0 + window.shape[0]), slice(x0, x0 + window.shape[1]))
        if rng.random() < _LOW_CONTRAST_FRACTION:
            # Close to what lies underneath: hard to see, but still distinct from the background.
            direction = rng.normal(size=3)
            offset = direction / max(float(np.linalg.norm(direction)), 1e-6) * rng.uniform(18, 35)
            colour = np.clip(pixels[region][window].mean(axis=0) + offset, 0, 255)
        else:
            colour = rng.uniform(0, 255, 3)
        colour = np.round(colour).astype(np.uint8)
        pixels[region][window] = colour
        owner[region][window] = index
        drawn.append((shape, y0, x0, window, full_area, colour))
    objects = []
    for index, (shape, y0, x0, window, full_area, colour) in enumerate(drawn):
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window
        visible = owner == index
        if visible.sum() < _MIN_VISIBLE * full_area:
            continue
        objects.append({"category_id": SHAPE_NAMES.index(shape.kind) + 1, "box": mask_box(window, y0, x0),
                        "area": int(window.sum()), "mask": mask, "visible": visible, "colour": colour,
                        "size": shape.size})
    sigma = rng.uniform(*noise_sigma)
    if sigma > 0:
        pixels += sigma * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), objects


def _image_shape(rng: np.random.Generator, image_size: Tuple[int, int]) -> Tuple[int, int]:
    """(height, width): the long side uniform in ``image_size``, the short side 60-100% of it."""
    long_side = int(rng.integers(image_size[0], image_size[1] + 1))
    short_side = max(1, int(round(long_side * rng.uniform(0.6, 1.0))))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def _params(split: str, num_images: int, seed: int, num_classes: int, image_size: Sequence[int]) -> Dict:
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
            "seed": int(seed), "num_classes": int(num_classes), "image_size": size}


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
    pixels, objects = render_sample(rng, height, width, params["num_classes"])
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
             image_size: Tuple[int, int] = DEFAULT_IMAGE_SIZE) -> str:
    """Write ``root/shapes/<split>/images/*.png`` and ``annotations.json`` (COCO format, bbox xywh) and
    return the json path. ``image_size`` is the (min, max) of the longer side. The split is built in a
    temporary folder and renamed into place; a complete split made with the same parameters is reused."""
    params = _params(split, num_images, seed, num_classes, image_size)
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
                image_size: Tuple[int, int]) -> List[Dict]:
    from retinadet.data.coco import load_coco_json  # imported late: registration must not need it

    json_file = generate(root, split, num_images, seed, num_classes, image_size)
    return load_coco_json(json_file, os.path.join(os.path.dirname(json_file), "images"), dataset_name=name)


def register_shapes(root: str = "./datasets", num_classes: int = 6,
                    image_size: Tuple[int, int] = DEFAULT_IMAGE_SIZE,
                    splits: Optional[Dict[str, Tuple[str, int, int]]] = None) -> List[str]:
    """Register the shapes splits (name -> (split folder, num_images, seed), default SHAPES_SPLITS)
    lazily: images are generated under ``root`` on the first ``DatasetCatalog.get``. Registering again
    with the same root is a no-op; another root re-points the names to it. Returns the names."""
    root = os.path.abspath(os.path.expanduser(root))
    for name, (split, num_images, seed) in (splits or SHAPES_SPLITS).items():
        _params(split, num_images, seed, num_classes, image_size)  # fail now, not at first use
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
                                                        num_classes, tuple(image_size)))
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_NAMES[:num_classes]), json_file=json_file,
                                      image_root=os.path.join(folder, "images"), evaluator_type="coco")
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
    parser.add_argument("--image-size", type=int, nargs="+", default=list(DEFAULT_IMAGE_SIZE),
                        metavar="PIXELS", help="longer side: MIN MAX, or one value (default: 256 384)")
    args = parser.parse_args(argv)
    if len(args.image_size) > 2:
        parser.error(f"--image-size takes one or two values, got {args.image_size}")
    start = time.perf_counter()
    json_file = generate(args.root, args.split, args.num_images, args.seed, args.num_classes, args.image_size)
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

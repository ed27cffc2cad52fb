"""Drawing of the embedded shapes set: shape geometry, textured backgrounds, clutter, one sample."""
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_NAMES", "DEFAULT_IMAGE_SIZE", "SHAPES_TIERS", "Shape", "ShapesTier", "get_tier", "mask_box",
           "render_sample"]

# Class names by category id - 1; ``num_classes`` K takes the first K.
SHAPE_NAMES = ("circle", "square", "triangle", "ellipse", "rectangle", "star", "cross", "hexagon")
DEFAULT_IMAGE_SIZE = (256, 384)  # (min, max) of the longer image side of the hard tier, pixels


@dataclass(frozen=True)
class ShapesTier:
    """How hard the drawn images are. Every tier draws the same 1-6 objects of the first K classes on a
    textured background, later objects covering earlier ones; the tiers differ in these knobs.

    Attributes:
        name: the tier's name ("hard", "easy").
        image_size: (min, max) of the longer image side in pixels (the short side is 60-100% of it).
        object_size: (min, max) circumscribed diameter in pixels at ``reference_side``; sizes scale
            with the image's longer side.
        reference_side: the longer side ``object_size`` is quoted for.
        small_fraction: share of objects drawn in the small band (min to 3 x min); 0 = sizes are
            log-uniform over the whole range.
        low_contrast_fraction: share of objects coloured close to what lies under them.
        min_contrast: the other objects' colour differs from the mean colour under them by at least this
            much (mean absolute difference over RGB, 0-255); 0 = any colour.
        min_visible: an object stays annotated while at least this share of it is visible.
        min_in_frame: at least this share of every object lies inside the image (the rest is cut off by
            the border; a cut-off rectangle can look like a square, a cut-off circle like an ellipse).
        clutter_count: (low, high) of the number of distractors (high exclusive), plus
            ``clutter_per_48px`` more per 48 px of the longer side.
        clutter_per_48px: see ``clutter_count``.
        clutter_blobs: whether irregular filled blobs are among the distractors.
        noise_sigma: (min, max) of the Gaussian pixel noise's standard deviation.
    """

    name: str
    image_size: Tuple[int, int]
    object_size: Tuple[float, float]
    reference_side: float
    small_fraction: float
    low_contrast_fraction: float
    min_contrast: float
    min_visible: float
    min_in_frame: float
    clutter_count: Tuple[int, int]
    clutter_per_48px: int
    clutter_blobs: bool
    noise_sigma: Tuple[float, float]


SHAPES_TIERS = {
    # The benchmark tier: 35% of objects small (8-24 px at a 384 px side), 20% low-contrast, shape-like
    # clutter, heavy occlusion allowed and strong noise. Most of its objects are COCO-small.
    "hard": ShapesTier(
        name="hard", image_size=DEFAULT_IMAGE_SIZE, object_size=(8.0, 160.0), reference_side=384.0,
        small_fraction=0.35, low_contrast_fraction=0.2, min_contrast=0.0, min_visible=0.3, min_in_frame=0.6,
        clutter_count=(2, 6), clutter_per_48px=1, clutter_blobs=True, noise_sigma=(2.0, 12.0),
    ),
    # The demo tier, learnable from scratch in minutes on a CPU: small images (longer side 160-192),
    # objects of 20-96 px log-uniform, every object clearly coloured, at least 95% inside the frame and
    # 60% visible, a few thin distractors and mild noise; textured backgrounds and occlusion as in the
    # hard tier.
    "easy": ShapesTier(
        name="easy", image_size=(160, 192), object_size=(20.0, 96.0), reference_side=192.0,
        small_fraction=0.0, low_contrast_fraction=0.0, min_contrast=60.0, min_visible=0.6, min_in_frame=0.95,
        clutter_count=(0, 4), clutter_per_48px=0, clutter_blobs=False, noise_sigma=(2.0, 6.0),
    ),
}


def get_tier(tier: "str | ShapesTier") -> ShapesTier:
    """The ShapesTier named ``tier`` (or ``tier`` itself); an unknown name lists the valid ones."""
    if isinstance(tier, ShapesTier):
        return tier
    if tier not in SHAPES_TIERS:
        import difflib

        close = difflib.get_close_matches(str(tier), SHAPES_TIERS, n=1, cutoff=0.0)
        raise ValueError(f"Unknown shapes tier {tier!r}; valid tiers: {', '.join(SHAPES_TIERS)}"
                         f"{f' (closest: {close[0]!r})' if close else ''}.")
    return SHAPES_TIERS[tier]


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


def _draw_clutter(rng: np.random.Generator, image: Image.Image, tier: ShapesTier) -> None:
    """Distractors that belong to no class: lines, arcs, scribbles, irregular blobs (if the tier has
    them), dots."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    long_side = max(width, height)
    low, high = tier.clutter_count
    kinds = (0, 1, 2, 3, 4) if tier.clutter_blobs else (0, 1, 2, 4)
    for _ in range(int(rng.integers(low, high + tier.clutter_per_48px * (long_side // 48)))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        extent = rng.uniform(0.03, 0.3) * long_side
        kind = kinds[int(rng.integers(0, len(kinds)))]
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


def _object_size(rng: np.random.Generator, height: int, width: int, tier: ShapesTier) -> float:
    """Circumscribed diameter in pixels: the tier's range at its reference side, scaled with the image
    (never below the range's minimum), at most 90% of the short side; ``small_fraction`` of them small."""
    scale = max(height, width) / tier.reference_side
    smallest, largest = tier.object_size
    lo = max(smallest, smallest * scale)
    hi = max(lo, min(largest * scale, 0.9 * min(height, width)))
    if tier.small_fraction <= 0:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    small_hi = min(hi, 3.0 * lo)
    if rng.random() < tier.small_fraction or small_hi >= hi:
        return float(rng.uniform(lo, small_hi))
    return float(math.exp(rng.uniform(math.log(small_hi), math.log(hi))))


def _place(rng: np.random.Generator, kind: str, size: float, height: int, width: int,
           min_in_frame: float = 0.6) -> Shape:
    """A shape of ``kind`` at a random pose with at least ``min_in_frame`` of it inside the image."""
    angle, aspect = float(rng.uniform(0, 360)), float(rng.uniform(0.35, 0.65))
    for _ in range(20):
        center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        shape = Shape(kind, center, size, angle, aspect)
        _, _, window, full_area = shape.rasterize(height, width)
        if window.sum() >= min_in_frame * full_area:
            return shape
    return Shape(kind, (width / 2.0, height / 2.0), size, angle, aspect)  # size <= 0.9 short side: fits


def _object_colour(rng: np.random.Generator, under: np.ndarray, tier: ShapesTier) -> np.ndarray:
    """uint8 (3,) colour of an object drawn over the float (P, 3) pixels ``under`` it."""
    if rng.random() < tier.low_contrast_fraction:
        # Close to what lies underneath: hard to see, but still distinct from the background.
        direction = rng.normal(size=3)
        offset = direction / max(float(np.linalg.norm(direction)), 1e-6) * rng.uniform(18, 35)
        return np.round(np.clip(under.mean(axis=0) + offset, 0, 255)).astype(np.uint8)
    colour = rng.uniform(0, 255, 3)
    if tier.min_contrast > 0:
        mean = under.mean(axis=0)
        for _ in range(20):  # redraw until clearly distinct; P(miss) per draw is well under one half
            if np.abs(colour - mean).mean() >= tier.min_contrast:
                break
            colour = rng.uniform(0, 255, 3)
    return np.round(colour).astype(np.uint8)


def render_sample(rng: np.random.Generator, height: int, width: int, num_classes: int,
                  noise_sigma: Optional[Tuple[float, float]] = None,
                  tier: "str | ShapesTier" = "hard") -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """Draw one image of ``tier`` (a name of SHAPES_TIERS or a ShapesTier) with 1-6 objects (later
    ones may cover earlier ones).

    Returns (image, objects): ``image`` uint8 (H, W, 3) RGB; ``objects`` the kept objects in drawing
    order, each {"category_id": int in [1, K], "box": [x0, y0, x1, y1] xyxy absolute pixels (the full
    shape, clipped to the image), "area": pixels of the shape inside the image, "mask": bool (H, W) of
    the same pixels, "visible": bool (H, W) of the pixels showing its colour, "colour": (3,) uint8,
    "size": circumscribed diameter in pixels}. Objects less visible than the tier's ``min_visible`` are
    dropped; the last drawn is never covered, so at least one is kept. Gaussian noise with a sigma drawn
    from ``noise_sigma`` (default: the tier's) covers everything after drawing.
    """
    tier = get_tier(tier)
    noise_sigma = tier.noise_sigma if noise_sigma is None else noise_sigma
    image = Image.fromarray(np.clip(_background(rng, height, width), 0, 255).astype(np.uint8))
    _draw_clutter(rng, image, tier)
    pixels = np.asarray(image, dtype=np.float32).copy()
    owner = np.full((height, width), -1, dtype=np.int16)
    drawn = []
    for index in range(int(rng.integers(1, 7))):
        shape = _place(rng, SHAPE_NAMES[int(rng.integers(num_classes))],
                       _object_size(rng, height, width, tier), height, width, tier.min_in_frame)
        y0, x0, window, full_area = shape.rasterize(height, width)
        region = (slice(y0, y0 + window.shape[0]), slice(x0, x0 + window.shape[1]))
        colour = _object_colour(rng, pixels[region][window], tier)
        pixels[region][window] = colour
        owner[region][window] = index
        drawn.append((shape, y0, x0, window, full_area, colour))
    objects = []
    for index, (shape, y0, x0, window, full_area, colour) in enumerate(drawn):
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window
        visible = owner == index
        if visible.sum() < tier.min_visible * full_area:
            continue
        objects.append({"category_id": SHAPE_NAMES.index(shape.kind) + 1, "box": mask_box(window, y0, x0),
                        "area": int(window.sum()), "mask": mask, "visible": visible, "colour": colour,
                        "size": shape.size})
    sigma = rng.uniform(*noise_sigma)
    if sigma > 0:
        pixels += sigma * rng.standard_normal(pixels.shape, dtype=np.float32)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), objects

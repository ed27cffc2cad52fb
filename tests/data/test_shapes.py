"""The synthetic shapes set: determinism, tight boxes, sizes, COCO validity, reuse, CLI, registration."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from retinadet.config import get_cfg
from retinadet.data import shapes, shapes_drawing
from retinadet.data.catalog import DatasetCatalog, MetadataCatalog
from retinadet.data.shapes import SHAPE_NAMES, Shape, generate, mask_box, render_sample

SMALL = (64, 96)  # longer side of the test images, pixels


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _image(path):
    with Image.open(path) as image:
        return np.asarray(image)


def _load(json_file):
    with open(json_file) as f:
        return json.load(f)


@pytest.fixture
def isolated_catalog():
    """Restore both catalogs afterwards, so registrations here do not leak into other tests."""
    functions, metadata = dict(DatasetCatalog._functions), dict(MetadataCatalog._metadata)
    yield
    DatasetCatalog._functions.clear()
    DatasetCatalog._functions.update(functions)
    MetadataCatalog._metadata.clear()
    MetadataCatalog._metadata.update(metadata)


# ---------------------------------------------------------------------------- geometry


def test_unrotated_square_box_is_hand_computed():
    # Circumscribed diameter 20*sqrt(2) -> side 20 centred at (40, 40): pixel centres 30.5..49.5 are inside.
    mask = Shape("square", (40.0, 40.0), 20 * math.sqrt(2), 0.0).mask(64, 64)
    assert mask_box(mask) == [30.0, 30.0, 50.0, 50.0]
    assert mask.sum() == 400
    # Same square centred at (5, 5): clipped to the image it covers columns and rows 0..14.
    clipped = Shape("square", (5.0, 5.0), 20 * math.sqrt(2), 0.0)
    y0, x0, window, full_area = clipped.rasterize(64, 64)
    assert mask_box(window, y0, x0) == [0.0, 0.0, 15.0, 15.0]
    assert (window.sum(), full_area) == (225, 400)


def test_circle_and_rotated_rectangle_boxes():
    # Radius 10 at (32, 32): the outermost inside centres are 22.5 and 41.5 (9.5 from the centre).
    assert mask_box(Shape("circle", (32.0, 32.0), 20.0).mask(64, 64)) == [22.0, 22.0, 42.0, 42.0]
    # A rectangle turned by 90 degrees swaps its width and height.
    flat = mask_box(Shape("rectangle", (32.0, 32.0), 30.0, 0.0, aspect=0.5).mask(64, 64))
    turned = mask_box(Shape("rectangle", (32.0, 32.0), 30.0, 90.0, aspect=0.5).mask(64, 64))
    assert flat[2] - flat[0] == turned[3] - turned[1] > flat[3] - flat[1] == turned[2] - turned[0]


@pytest.mark.parametrize("kind", SHAPE_NAMES)
def test_every_kind_fits_its_circumscribed_circle(kind):
    for angle in (0.0, 17.0, 45.0, 123.0):
        box = mask_box(Shape(kind, (50.0, 50.0), 40.0, angle, aspect=0.4).mask(100, 100))
        assert box is not None and box[0] >= 30 and box[1] >= 30 and box[2] <= 70 and box[3] <= 70
        assert max(box[2] - box[0], box[3] - box[1]) >= 40 * 0.4  # not degenerate


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="'blob'.*circle"):
        Shape("blob", (10.0, 10.0), 8.0).mask(32, 32)


# ---------------------------------------------------------------------------- rendering


def test_rendered_boxes_are_tight_and_painted():
    for seed in range(6):
        image, objects = render_sample(np.random.default_rng(seed), 80, 112, 6, noise_sigma=(0.0, 0.0))
        assert image.shape == (80, 112, 3) and image.dtype == np.uint8
        assert 1 <= len(objects) <= 6
        covered = np.zeros((80, 112), dtype=bool)
        for obj in reversed(objects):
            x0, y0, x1, y1 = (int(v) for v in obj["box"])
            assert obj["box"] == mask_box(obj["mask"]) and obj["area"] == obj["mask"].sum()
            assert not (obj["visible"] & ~obj["mask"]).any()
            # Without noise every visible pixel shows exactly the object's colour.
            assert (image[obj["visible"]] == obj["colour"]).all()
            if not (obj["mask"] & covered).any():
                # Unoccluded: the colour reaches each of the four edges of the box from the inside.
                paint = (image[y0:y1, x0:x1] == obj["colour"]).all(axis=-1)
                assert paint[0].any() and paint[-1].any() and paint[:, 0].any() and paint[:, -1].any()
            covered |= obj["mask"]


def test_sizes_stay_in_range_and_include_small_objects():
    sizes = []
    for seed in range(12):
        image, objects = render_sample(np.random.default_rng(seed), 384, 384, 6)
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            # Box sides are at most the circumscribed diameter (+1 for pixel rounding).
            assert 8 <= obj["size"] <= 160 and max(x1 - x0, y1 - y0) <= obj["size"] + 1
            sizes.append(obj["size"])
    assert min(sizes) <= 24 and max(sizes) > 48
    assert np.mean(np.array(sizes) <= 24) > 0.15  # small objects are common, not rare
    # On a 64 px image the range scales down but never below 8 px.
    for seed in range(12):
        for obj in render_sample(np.random.default_rng(seed), 48, 64, 6)[1]:
            assert 8 <= obj["size"] <= 160 * 64 / 384


def test_generated_files_match_render_sample(tmp_path):
    data = _load(generate(str(tmp_path), "t", 3, seed=5, image_size=SMALL))
    for index, entry in enumerate(data["images"]):
        rng = np.random.default_rng([5, index])
        height, width = shapes._image_shape(rng, SMALL)
        image, objects = render_sample(rng, height, width, 6)
        png = _image(tmp_path / "shapes" / "t" / "images" / entry["file_name"])
        assert (entry["height"], entry["width"]) == (height, width) and np.array_equal(png, image)
        boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == entry["id"]]
        assert boxes == [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (o["box"] for o in objects)]


# ---------------------------------------------------------------------------- tiers


def test_hard_tier_draws_what_it_drew_before_tiers_existed():
    # Captured from the generator before tiers were introduced: the benchmark's images must not change.
    import hashlib

    image, objects = render_sample(np.random.default_rng(7), 120, 160, 6)
    assert hashlib.sha256(image.tobytes()).hexdigest()[:16] == "4d76dfc57d050910"
    assert [o["box"] for o in objects] == [[114.0, 0.0, 160.0, 50.0], [31.0, 65.0, 74.0, 108.0],
                                           [33.0, 47.0, 46.0, 61.0], [64.0, 4.0, 108.0, 47.0], [12.0, 2.0, 37.0, 30.0]]


def test_easy_tier_objects_are_large_visible_and_distinct():
    tier = shapes.get_tier("easy")
    sizes, visible_shares = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        height, width = shapes._image_shape(rng, tier.image_size)
        assert 160 <= max(height, width) <= 192
        image, objects = render_sample(rng, height, width, 6, noise_sigma=(0.0, 0.0), tier="easy")
        assert 1 <= len(objects) <= 6
        scale = max(height, width) / 192.0
        for obj in objects:
            # 20-96 px at a 192 px side, scaled with the image, never below 20 and at most 90% of the short side.
            assert max(20.0, 20 * scale) - 1e-6 <= obj["size"] <= min(96 * scale, 0.9 * min(height, width)) + 1e-6
            sizes.append(obj["size"])
            visible_shares.append(obj["visible"].sum() / obj["mask"].sum())
    assert min(visible_shares) >= 0.6 - 1e-9  # min_visible of the easy tier (hard: 0.3)
    # log-uniform over 20..~96: about half the objects are below sqrt(20 * 96) ~ 44 px
    assert 0.3 < np.mean(np.array(sizes) < 44) < 0.7 and min(sizes) < 25 and max(sizes) > 70


def test_easy_tier_colours_differ_from_what_lies_under_them():
    tier = shapes.get_tier("easy")
    under = np.full((50, 3), 128.0)
    for seed in range(200):
        colour = shapes_drawing._object_colour(np.random.default_rng(seed), under, tier).astype(float)
        assert np.abs(colour - 128.0).mean() >= tier.min_contrast


def test_unknown_tier_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="'esay'.*hard, easy.*closest: 'easy'"):
        generate(str(tmp_path), "t", 2, seed=0, tier="esay")
    with pytest.raises(ValueError, match="'medium'"):
        shapes.register_shapes(str(tmp_path), splits={"x": ("x", 2, 0, "medium")})


def test_tier_is_part_of_the_split_parameters(tmp_path):
    easy = _load(generate(str(tmp_path), "t", 2, seed=0, tier="easy"))
    assert easy["info"]["params"]["tier"] == "easy" and easy["info"]["params"]["image_size"] == [160, 192]
    hard = _load(generate(str(tmp_path), "t", 2, seed=0, tier="hard", image_size=(160, 192)))
    assert hard["info"]["params"]["tier"] == "hard"
    assert [a["bbox"] for a in hard["annotations"]] != [a["bbox"] for a in easy["annotations"]]


# ---------------------------------------------------------------------------- files


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate(str(tmp_path / "a"), "t", 4, seed=3, image_size=SMALL)
    b = generate(str(tmp_path / "b"), "t", 4, seed=3, image_size=SMALL)
    c = generate(str(tmp_path / "c"), "t", 4, seed=4, image_size=SMALL)
    assert _read(a) == _read(b) and _read(a) != _read(c)
    for name in sorted(os.listdir(os.path.join(os.path.dirname(a), "images"))):
        assert _read(os.path.join(os.path.dirname(a), "images", name)) == \
            _read(os.path.join(os.path.dirname(b), "images", name))
    assert _read(os.path.join(os.path.dirname(a), "images", "000000.png")) != \
        _read(os.path.join(os.path.dirname(c), "images", "000000.png"))


def test_json_is_valid_coco(tmp_path):
    json_file = generate(str(tmp_path), "t", 6, seed=0, num_classes=8, image_size=SMALL)
    assert json_file == str(tmp_path / "shapes" / "t" / "annotations.json")
    coco = COCO(json_file)
    assert coco.getCatIds() == list(range(1, 9))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_NAMES)
    assert sorted(coco.getImgIds()) == [1, 2, 3, 4, 5, 6]
    data = _load(json_file)
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    assert data["info"]["params"]["num_images"] == 6 and data["info"]["params"]["image_size"] == list(SMALL)
    for img in coco.loadImgs(coco.getImgIds()):
        assert SMALL[0] <= max(img["width"], img["height"]) <= SMALL[1]
        assert min(img["width"], img["height"]) >= 0.6 * max(img["width"], img["height"]) - 1
        assert _image(tmp_path / "shapes" / "t" / "images" / img["file_name"]).shape == \
            (img["height"], img["width"], 3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert 1 <= len(anns) <= 6
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 8 and 0 < ann["area"] <= w * h
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= img["width"] and y + h <= img["height"]


def test_second_call_reuses_and_changed_parameters_regenerate(tmp_path):
    json_file = generate(str(tmp_path), "t", 4, seed=2, image_size=SMALL)
    image = os.path.join(os.path.dirname(json_file), "images", "000001.png")
    os.utime(json_file, (1, 1))
    os.utime(image, (1, 1))
    assert generate(str(tmp_path), "t", 4, seed=2, image_size=SMALL) == json_file
    assert os.stat(json_file).st_mtime == 1 and os.stat(image).st_mtime == 1
    # An image gone missing makes the set incomplete: it is written again.
    os.remove(image)
    generate(str(tmp_path), "t", 4, seed=2, image_size=SMALL)
    assert os.path.isfile(image) and os.stat(json_file).st_mtime != 1
    # Other parameters replace the split; no temporary folders are left behind.
    assert len(_load(generate(str(tmp_path), "t", 5, seed=2, image_size=SMALL))["images"]) == 5
    assert os.listdir(tmp_path / "shapes") == ["t"]


def test_bad_parameters_name_the_valid_range(tmp_path):
    with pytest.raises(ValueError, match="num_classes=9.*1..8"):
        generate(str(tmp_path), "t", 2, seed=0, num_classes=9)
    with pytest.raises(ValueError, match="image_size=\\(96, 64\\)"):
        generate(str(tmp_path), "t", 2, seed=0, image_size=(96, 64))
    with pytest.raises(ValueError, match="seed=-1"):
        generate(str(tmp_path), "t", 2, seed=-1)


def test_cli_help_and_tiny_run(tmp_path):
    run = [sys.executable, "-m", "retinadet.data.shapes"]
    help_text = subprocess.run(run + ["--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--root", "--split", "--num-images", "--seed", "--num-classes", "--image-size"):
        assert flag in help_text
    out = subprocess.run(run + ["--root", str(tmp_path), "--split", "cli", "--num-images", "3", "--seed", "7",
                                "--num-classes", "3", "--image-size", "64", "80"],
                         capture_output=True, text=True, check=True).stdout
    data = _load(tmp_path / "shapes" / "cli" / "annotations.json")
    assert str(tmp_path / "shapes" / "cli" / "annotations.json") in out
    assert f"3 images, {len(data['annotations'])} objects" in out
    for k, name in enumerate(SHAPE_NAMES[:3]):
        count = sum(a["category_id"] == k + 1 for a in data["annotations"])
        assert f"{k + 1:>2} {name:<10} {count:>6}" in out
    assert "star" not in out


# ---------------------------------------------------------------------------- registration


def test_register_is_lazy_and_idempotent(tmp_path, isolated_catalog):
    splits = {"shapes_tiny_a": ("a", 2, 0), "shapes_tiny_b": ("b", 3, 1)}
    assert shapes.register_shapes(str(tmp_path), splits=splits) == list(splits)
    assert not (tmp_path / "shapes").exists()  # nothing drawn until the first get
    meta = MetadataCatalog.get("shapes_tiny_b")
    assert meta.json_file == str(tmp_path / "shapes" / "b" / "annotations.json")
    assert meta.image_root == str(tmp_path / "shapes" / "b" / "images")
    assert meta.thing_classes == list(SHAPE_NAMES[:6]) and meta.evaluator_type == "coco"
    shapes.register_shapes(str(tmp_path), splits=splits)  # same root: nothing happens
    # Another root (another config's DATASETS.ROOT) re-points the names there.
    shapes.register_shapes(str(tmp_path / "other"), splits=splits)
    assert MetadataCatalog.get("shapes_tiny_b").json_file == str(tmp_path / "other" / "shapes" / "b" / "annotations.json")


def test_register_from_config_uses_datasets_root(tmp_path, isolated_catalog):
    for name in shapes.SHAPES_SPLITS:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    cfg = get_cfg()
    cfg.DATASETS.ROOT = str(tmp_path)
    assert shapes.register_shapes_from_config(cfg) == ["shapes_train", "shapes_val", "shapes_train_tiny", "shapes_val_tiny",
                                                       "shapes_easy_train", "shapes_easy_val"]
    assert MetadataCatalog.get("shapes_easy_val").shapes_tier == "easy"
    assert MetadataCatalog.get("shapes_val").shapes_tier == "hard"
    assert MetadataCatalog.get("shapes_val").json_file == str(tmp_path / "shapes/val/annotations.json")


@pytest.mark.skipif(importlib.util.find_spec("retinadet.data.coco") is None,
                    reason="needs retinadet.data.coco")
def test_get_generates_and_loads_through_coco(tmp_path, isolated_catalog):
    shapes.register_shapes(str(tmp_path), splits={"shapes_tiny_c": ("c", 3, 2)}, image_size=SMALL)
    dicts = DatasetCatalog.get("shapes_tiny_c")
    data = _load(tmp_path / "shapes" / "c" / "annotations.json")
    assert len(dicts) == 3 and sum(len(d["boxes"]) for d in dicts) == len(data["annotations"])
    first = dicts[0]
    x, y, w, h = [a for a in data["annotations"] if a["image_id"] == first["image_id"]][0]["bbox"]
    assert first["boxes"][0].tolist() == [x, y, x + w, y + h]
    assert os.path.isfile(first["file_name"]) and first["labels"].max() < 6

"""Tests for retinadet.data.image_io.read_image and retinadet.data.mapper.DatasetMapper."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from retinadet.config import get_cfg
from retinadet.data.image_io import read_image
from retinadet.data.mapper import DatasetMapper, build_augmentations
from retinadet.data.transforms import RandomFlip, ResizeShortestEdge

EXIF_ORIENTATION = 0x0112


def _save(path, array, exif_orientation=None, **kwargs):
    exif = Image.Exif()
    if exif_orientation is not None:
        exif[EXIF_ORIENTATION] = exif_orientation
    Image.fromarray(array).save(path, exif=exif, **kwargs)
    return str(path)


def _marked_image(h, w):
    """Dark image with a red top-left pixel and a green bottom-left pixel."""
    image = np.full((h, w, 3), 10, dtype=np.uint8)
    image[0, 0] = (255, 0, 0)
    image[h - 1, 0] = (0, 255, 0)
    return image


# ---------------------------------------------------------------------------- read_image


def test_read_image_applies_exif_rotation_png(tmp_path):
    # Stored 20 high x 40 wide; orientation 6 means "rotate 90 degrees clockwise to display":
    # (x, y) -> (H - 1 - y, x) in a 40 x 20 (H x W) result, so the red top-left pixel goes to
    # the top-right (row 0, column 19) and the green bottom-left pixel to the top-left.
    path = _save(tmp_path / "o6.png", _marked_image(20, 40), exif_orientation=6)
    image = read_image(path)
    assert image.shape == (40, 20, 3) and image.dtype == np.uint8
    assert image[0, 19].tolist() == [255, 0, 0]
    assert image[0, 0].tolist() == [0, 255, 0]


def test_read_image_applies_exif_rotation_180_and_jpeg(tmp_path):
    # Orientation 3: rotate 180 degrees; red top-left -> bottom-right (row 19, column 39).
    image = read_image(_save(tmp_path / "o3.png", _marked_image(20, 40), exif_orientation=3))
    assert image.shape == (20, 40, 3) and image[19, 39].tolist() == [255, 0, 0]
    # JPEG: lossy pixels, but the displayed size must be transposed (orientation 8: 90 degrees counter-clockwise).
    jpeg = read_image(_save(tmp_path / "o8.jpg", _marked_image(20, 40), exif_orientation=8, quality=95))
    assert jpeg.shape == (40, 20, 3)
    # Without a tag nothing changes.
    assert read_image(_save(tmp_path / "plain.png", _marked_image(20, 40))).shape == (20, 40, 3)


def test_read_image_channel_order_and_grayscale(tmp_path):
    path = _save(tmp_path / "c.png", np.full((4, 5, 3), (10, 20, 30), dtype=np.uint8))
    assert read_image(path, "RGB")[2, 3].tolist() == [10, 20, 30]
    bgr = read_image(path, "BGR")
    assert bgr[2, 3].tolist() == [30, 20, 10] and bgr.flags["C_CONTIGUOUS"]
    gray = tmp_path / "g.png"
    Image.fromarray(np.full((4, 5), 99, dtype=np.uint8), mode="L").save(gray)
    assert read_image(str(gray)).shape == (4, 5, 3) and (read_image(str(gray)) == 99).all()


def test_read_image_scales_16_bit_images_to_8_bits(tmp_path):
    # A 16-bit grayscale PNG: 0, 257, 32767, 65535 -> v * 255 / 65535 rounded: 0, 1, 127, 255 (not clipped
    # to a white image).
    values = np.array([[0, 257], [32767, 65535]], dtype=np.uint16)
    path = str(tmp_path / "deep.png")
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    assert image[:, :, 0].tolist() == [[0, 1], [127, 255]]
    assert (image[:, :, 0] == image[:, :, 2]).all()
    # An EXIF-rotated one keeps the rotation: 90 degrees clockwise to view (orientation 6).
    rotated = read_image(_save(tmp_path / "rot.png", values, exif_orientation=6))
    assert rotated[:, :, 0].tolist() == [[127, 0], [255, 1]]


def test_read_image_refuses_images_whose_range_is_unknown(tmp_path):
    path = str(tmp_path / "float.tiff")
    Image.fromarray(np.full((3, 4), 0.5, dtype=np.float32)).save(path)
    with pytest.raises(ValueError, match=r"float\.tiff' \(data set 'mine'\) holds 32-bit float pixels"):
        read_image(path, dataset_name="mine")
    path = str(tmp_path / "wide.tiff")
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(path)
    with pytest.raises(ValueError, match="pixels from 0 to 70000, outside the 16-bit range"):
        read_image(path)


def test_read_image_errors_name_file_and_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"'L'.*\['RGB', 'BGR'\]"):
        read_image(str(tmp_path / "x.png"), "L")
    missing = str(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match=r"missing\.png.*data set 'toy_train'"):
        read_image(missing, dataset_name="toy_train")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.png"):
        read_image(str(broken))


# ---------------------------------------------------------------------------- DatasetMapper


@pytest.fixture
def toy_dict(tmp_path):
    """A 48 x 64 (H x W) RGB image with two boxes, one crowd region and one box off the right edge."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = _save(tmp_path / "toy.png", image)
    record = {
        "file_name": path,
        "height": 48,
        "width": 64,
        "image_id": 7,
        "boxes": np.array([[6, 3, 30, 27], [40, 0, 64, 48], [64, 10, 70, 20]], dtype=np.float32),
        "labels": np.array([2, 0, 1], dtype=np.int64),
        "iscrowd": np.array([False, True, False]),
        "annotation_ids": np.array([11, 12, 13], dtype=np.int64),
    }
    return record, image


def test_mapper_resize_flip_geometry(toy_dict):
    record, image = toy_dict
    original = copy.deepcopy(record)
    mapper = DatasetMapper(True, [ResizeShortestEdge(32, 1000), RandomFlip(prob=1.0)], "RGB")
    out = mapper(record, rng=np.random.default_rng(0))

    # (48, 64), short 32: scale 2/3 -> (32, 42.67) -> (32, 43); sx = 43/64 = 0.671875, sy = 2/3.
    assert out["image"].dtype == torch.uint8 and tuple(out["image"].shape) == (3, 32, 43)
    expected = np.asarray(Image.fromarray(image).resize((43, 32), Image.BILINEAR))[:, ::-1]
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), expected)
    assert (out["height"], out["width"], out["image_id"], out["file_name"]) == (48, 64, 7, record["file_name"])

    # Box (6, 3, 30, 27) -> resized (4.03125, 2, 20.15625, 18) -> flipped in width 43:
    # (43 - 20.15625, 2, 43 - 4.03125, 18) = (22.84375, 2, 38.96875, 18).
    # The box off the right edge, (64, 10, 70, 20) -> (43, 6.67, 47.03, 13.33) -> flipped
    # (-4.03, 6.67, 0, 13.33) -> clipped to zero width: dropped with its label 1.
    np.testing.assert_allclose(out["boxes"].numpy(), [[22.84375, 2.0, 38.96875, 18.0]], atol=1e-4)
    assert out["boxes"].dtype == torch.float32
    assert out["labels"].tolist() == [2] and out["labels"].dtype == torch.int64
    # Crowd (40, 0, 64, 48) -> (26.875, 0, 43, 32) -> flipped (0, 0, 16.125, 32).
    np.testing.assert_allclose(out["crowd_boxes"].numpy(), [[0.0, 0.0, 16.125, 32.0]], atol=1e-4)
    # The input dict is left as it was.
    for key in original:
        np.testing.assert_array_equal(record[key], original[key])


def test_mapper_bgr_and_no_annotations(toy_dict):
    record, image = toy_dict
    bare = {k: record[k] for k in ("file_name", "height", "width", "image_id")}
    rgb = DatasetMapper(False, [], "RGB")(bare)
    bgr = DatasetMapper(False, [], "BGR")(bare)
    np.testing.assert_array_equal(rgb["image"].numpy(), image.transpose(2, 0, 1))
    np.testing.assert_array_equal(bgr["image"].numpy(), image.transpose(2, 0, 1)[::-1])
    assert "boxes" not in rgb and "crowd_boxes" not in rgb


def test_mapper_empty_annotations(toy_dict):
    record, _ = toy_dict
    record = dict(record, boxes=np.zeros((0, 4), np.float32), labels=np.zeros(0, np.int64), iscrowd=np.zeros(0, bool))
    out = DatasetMapper(True, [ResizeShortestEdge(32, 1000)], "RGB")(record, rng=np.random.default_rng(0))
    assert tuple(out["boxes"].shape) == (0, 4) and tuple(out["labels"].shape) == (0,)
    assert tuple(out["crowd_boxes"].shape) == (0, 4)


def test_mapper_same_rng_seed_same_output(toy_dict):
    record, _ = toy_dict
    mapper = DatasetMapper(True, [ResizeShortestEdge((24, 32, 40), 1000), RandomFlip()], "RGB")
    outs = [mapper(record, rng=np.random.default_rng(s)) for s in (3, 3, 4, 5, 6, 7)]
    assert torch.equal(outs[0]["image"], outs[1]["image"]) and torch.equal(outs[0]["boxes"], outs[1]["boxes"])
    # Different seeds give different sizes or flips at least once among five.
    assert len({(tuple(o["image"].shape), tuple(o["boxes"][0].tolist())) for o in outs[1:]}) > 1


def test_mapper_size_mismatch_names_file(toy_dict):
    record, _ = toy_dict
    record = dict(record, height=50)
    with pytest.raises(ValueError, match=r"toy\.png.*\(48, 64\).*\(50, 64\)"):
        DatasetMapper(False, [], "RGB", dataset_name="toy")(record)


def test_mapper_bad_annotation_shapes(toy_dict):
    record, _ = toy_dict
    with pytest.raises(ValueError, match=r"'labels'.*toy\.png.*shape \(2,\)"):
        DatasetMapper(False, [], "RGB")(dict(record, labels=np.array([1, 2])))
    no_labels = {k: v for k, v in record.items() if k != "labels"}
    with pytest.raises(ValueError, match=r"no 'labels'"):
        DatasetMapper(False, [], "RGB")(no_labels)
    with pytest.raises(ValueError, match=r"image_format 'RGBA'"):
        DatasetMapper(False, [], "RGBA")


def test_from_config_builds_input_augmentations():
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TRAIN = [20, 30]
    cfg.INPUT.MAX_SIZE_TRAIN = 50
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    cfg.INPUT.MIN_SIZE_TEST = 25
    cfg.INPUT.MAX_SIZE_TEST = 40
    cfg.INPUT.FORMAT = "BGR"
    args = DatasetMapper.from_config(cfg, is_train=True)
    assert args["image_format"] == "BGR" and args["is_train"] is True
    resize, flip = args["augmentations"]
    assert (resize.short_edge_lengths, resize.max_size, resize.sample_style) == ((20, 30), 50, "range")
    assert isinstance(flip, RandomFlip) and flip.horizontal and flip.prob == 0.5
    (test_resize,) = DatasetMapper.from_config(cfg, is_train=False)["augmentations"]
    assert (test_resize.short_edge_lengths, test_resize.max_size) == ((25,), 40)

    cfg.INPUT.RANDOM_FLIP = "none"
    assert [type(a) for a in build_augmentations(cfg, True)] == [ResizeShortestEdge]
    cfg.INPUT.RANDOM_FLIP = "sideways"
    with pytest.raises(ValueError, match=r"'sideways'.*'horizontal'"):
        build_augmentations(cfg, True)


def test_a_short_side_beyond_the_long_side_cap_is_refused_naming_both_keys():
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 800, 500
    with pytest.raises(ValueError, match=r"INPUT.MIN_SIZE_TEST 800 exceeds INPUT.MAX_SIZE_TEST 500.*>= 800"):
        build_augmentations(cfg, False)
    cfg.INPUT.MAX_SIZE_TEST = 0  # no cap: any short side is fine
    assert build_augmentations(cfg, False)[0].max_size == 0
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (640, 672, 704), 700
    with pytest.raises(ValueError, match=r"INPUT.MIN_SIZE_TRAIN \(640, 672, 704\) exceeds INPUT.MAX_SIZE_TRAIN 700"):
        build_augmentations(cfg, True)
    cfg.INPUT.MAX_SIZE_TRAIN = 704  # equal is fine
    assert build_augmentations(cfg, True)[0].max_size == 704

"""Reliability catalogue, data family: bad image files, bad COCO annotation files and bad data set dicts."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from retinadet.data.catalog import DatasetCatalog
from retinadet.data.coco import (
    CLIPPED, DROPPED_NON_POSITIVE, DROPPED_OUTSIDE, filter_images, get_detection_dataset_dicts,
    load_coco_json, read_coco_instances,
)
from retinadet.data.image_io import read_image
from retinadet.data.mapper import DatasetMapper

# ------------------------------------------------------------------------------------------ image files


def _png(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def test_missing_image_names_the_file_and_the_data_set(tmp_path):
    path = str(tmp_path / "nowhere.png")
    with pytest.raises(FileNotFoundError, match=rf"Image file '{re.escape(path)}' \(data set 'my_set'\) does not "
                                                r"exist"):
        read_image(path, dataset_name="my_set")


def test_text_file_named_png_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ValueError, match=rf"Cannot read image file '{re.escape(str(path))}'"):
        read_image(str(path))


def test_empty_image_file_is_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=rf"Cannot read image file '{re.escape(str(path))}'"):
        read_image(str(path))


def test_truncated_png_is_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    whole = (tmp_path / "whole.png")
    _png(whole, noise)
    cut = tmp_path / "cut.png"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"Cannot read image file '{re.escape(str(cut))}' \(data set 'shapes'\)"):
        read_image(str(cut), dataset_name="shapes")


def test_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    values = np.array([[0, 32768], [65535, 257]], dtype=np.uint16)
    path = _png(tmp_path / "depth.png", values)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    # v * 255 / 65535, rounded: 32768 -> 128 (PIL's convert("RGB") would give 255, a white image).
    assert image[:, :, 0].tolist() == [[0, 128], [255, 1]]
    assert (image[:, :, 0] == image[:, :, 2]).all()


def test_float_tiff_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32)).save(path)
    with pytest.raises(ValueError, match=rf"Image file '{re.escape(str(path))}' holds 32-bit float pixels \(PIL mode "
                                         r"'F'\) whose range is not known"):
        read_image(str(path))


def test_negative_32_bit_integer_image_is_refused(tmp_path):
    path = tmp_path / "signed.tif"
    Image.fromarray(np.array([[-5, 70000]], dtype=np.int32)).save(path)
    with pytest.raises(ValueError, match=rf"Image file '{re.escape(str(path))}' has 'I' pixels from -5 to 70000, "
                                         r"outside the 16-bit range 0-65535"):
        read_image(str(path))


def test_unknown_channel_order_is_refused(tmp_path):
    path = _png(tmp_path / "ok.png", np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=rf"Unknown image format 'YUV' for '{re.escape(path)}'; valid formats: "
                                         r"\['RGB', 'BGR'\]"):
        read_image(path, format="YUV")


# ------------------------------------------------------------------------------------------ COCO json files


def _coco(images=None, annotations=None, categories=None):
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 10, "width": 20}] if images is None else images,
        "annotations": [] if annotations is None else annotations,
        "categories": [{"id": 1, "name": "cat"}] if categories is None else categories,
    }


def _ann(ann_id=1, bbox=(1, 1, 4, 4), image_id=1, category_id=1):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": list(bbox)}


def _json(tmp_path, data, name="instances.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_missing_json_names_the_file(tmp_path):
    path = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        read_coco_instances(path, tmp_path)


def test_missing_json_of_a_registered_set_names_the_set(tmp_path):
    path = str(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError, match=rf"COCO json '{re.escape(path)}' of data set 'lazy_set' does not exist"):
        load_coco_json(path, tmp_path, dataset_name="lazy_set")


def test_invalid_json_is_refused(tmp_path):
    path = _json(tmp_path, '{"images": [')
    with pytest.raises(ValueError, match=rf"COCO json '{re.escape(path)}' is not valid JSON"):
        read_coco_instances(path, tmp_path)


def test_json_that_is_a_list_is_refused(tmp_path):
    path = _json(tmp_path, [1, 2])
    with pytest.raises(ValueError, match=rf"COCO json '{re.escape(path)}' holds a list; a COCO instances file is an "
                                         r"object"):
        read_coco_instances(path, tmp_path)


def test_json_without_annotations_is_refused(tmp_path):
    data = _coco()
    del data["annotations"]
    path = _json(tmp_path, data)
    with pytest.raises(ValueError, match=rf"COCO json '{re.escape(path)}' is missing \['annotations'\]"):
        read_coco_instances(path, tmp_path)


def test_images_that_are_not_a_list_are_refused(tmp_path):
    path = _json(tmp_path, _coco(images={"id": 1}))
    with pytest.raises(ValueError, match=r"'images' is a dict, not a list"):
        read_coco_instances(path, tmp_path)


def test_undeclared_category_id_is_named(tmp_path):
    path = _json(tmp_path, _coco(annotations=[_ann(ann_id=7, category_id=5)]))
    with pytest.raises(ValueError, match=rf"COCO json '{re.escape(path)}': annotation id 7 has category_id 5, which is "
                                         r"not declared in 'categories'; declared ids: \[1\]"):
        read_coco_instances(path, tmp_path)


def test_undeclared_image_id_is_named(tmp_path):
    path = _json(tmp_path, _coco(annotations=[_ann(ann_id=3, image_id=99)]))
    with pytest.raises(ValueError, match=r"annotation id 3 refers to image_id 99, which is not in 'images' "
                                         r"\(1 images declared\)"):
        read_coco_instances(path, tmp_path)


@pytest.mark.parametrize("field,data,message", [
    ("image id", _coco(images=[{"id": 4, "file_name": "a.png", "height": 10, "width": 20}] * 2),
     r"image id 4 appears twice; ids must be unique"),
    ("annotation id", _coco(annotations=[_ann(ann_id=8), _ann(ann_id=8)]),
     r"annotation id 8 appears twice; ids must be unique"),
    ("category id", _coco(categories=[{"id": 2, "name": "cat"}, {"id": 2, "name": "dog"}]),
     r"category id 2 is declared twice \('cat' and 'dog'\)"),
])
def test_repeated_ids_are_named(tmp_path, field, data, message):
    with pytest.raises(ValueError, match=message):
        read_coco_instances(_json(tmp_path, data), tmp_path)


@pytest.mark.parametrize("bbox", [[1.0, float("nan"), 4.0, 4.0], [1, 2, 3], ["1", "2", "3", "4"]])
def test_bbox_that_is_not_four_finite_numbers_is_named(tmp_path, bbox):
    path = _json(tmp_path, _coco(annotations=[_ann(ann_id=5, bbox=bbox)]))
    with pytest.raises(ValueError, match=r"annotation id 5 has bbox=.*; it needs a 'bbox' of 4 finite numbers"):
        read_coco_instances(path, tmp_path)


def test_image_with_zero_width_is_refused(tmp_path):
    path = _json(tmp_path, _coco(images=[{"id": 6, "file_name": "a.png", "height": 10, "width": 0}]))
    with pytest.raises(ValueError, match=r"image id 6 is 0x10 \(width x height\); both must be positive"):
        read_coco_instances(path, tmp_path)


def test_boolean_id_is_refused(tmp_path):
    path = _json(tmp_path, _coco(categories=[{"id": True, "name": "cat"}]))
    with pytest.raises(ValueError, match=r"category #0 has id=True; it needs an integer 'id'"):
        read_coco_instances(path, tmp_path)


def test_no_categories_is_refused(tmp_path):
    path = _json(tmp_path, _coco(categories=[]))
    with pytest.raises(ValueError, match=rf"COCO json '{re.escape(path)}' declares no categories"):
        read_coco_instances(path, tmp_path)


@pytest.mark.parametrize("bbox,reason", [
    ((5, 5, -3, 4), DROPPED_NON_POSITIVE),   # negative width
    ((5, 5, 4, 0), DROPPED_NON_POSITIVE),    # zero height
    ((30, 2, 4, 4), DROPPED_OUTSIDE),        # entirely right of the 20 x 10 image
])
def test_unusable_box_is_dropped_and_counted(tmp_path, bbox, reason):
    path = _json(tmp_path, _coco(annotations=[_ann(ann_id=1, bbox=(1, 1, 4, 4)), _ann(ann_id=2, bbox=bbox)]))
    loaded = read_coco_instances(path, tmp_path)
    record = loaded.dataset_dicts[0]
    assert record["annotation_ids"].tolist() == [1]
    assert record["boxes"].tolist() == [[1.0, 1.0, 5.0, 5.0]]
    assert loaded.fixes[reason] == 1 and sum(loaded.fixes.values()) == 1


def test_box_partly_outside_is_clipped_and_counted(tmp_path):
    path = _json(tmp_path, _coco(annotations=[_ann(bbox=(-2, 8, 6, 6))]))
    loaded = read_coco_instances(path, tmp_path)
    assert loaded.dataset_dicts[0]["boxes"].tolist() == [[0.0, 8.0, 4.0, 10.0]]
    assert loaded.fixes == {DROPPED_NON_POSITIVE: 0, DROPPED_OUTSIDE: 0, CLIPPED: 1}


# ------------------------------------------------------------------------------------------ data set dicts


def test_unregistered_data_set_lists_the_registered_ones():
    DatasetCatalog.register("reliability_set_a", lambda: [])
    try:
        with pytest.raises(KeyError, match=r"Data set 'reliability_set_b' is not registered\. Did you mean "
                                           r"'reliability_set_a'\?"):
            get_detection_dataset_dicts(["reliability_set_b"])
    finally:
        DatasetCatalog.remove("reliability_set_a")


def test_data_set_without_any_box_is_refused():
    records = [{"file_name": "a.png", "boxes": np.zeros((0, 4), np.float32)},
               {"file_name": "b.png", "boxes": np.ones((1, 4), np.float32), "iscrowd": np.array([True])}]
    with pytest.raises(ValueError, match=r"data set 'empty_set' has no images with boxes: 2 images, none with a "
                                         r"non-crowd box \(1 with crowd regions only\)"):
        filter_images(records, filter_empty=True, dataset_name="empty_set")


def _mapper():
    return DatasetMapper(is_train=False, augmentations=[], dataset_name="dicts")


def test_declared_size_that_does_not_fit_the_image_is_refused(tmp_path):
    path = _png(tmp_path / "small.png", np.zeros((6, 8, 3), dtype=np.uint8))
    record = {"file_name": path, "image_id": 3, "height": 8, "width": 6}
    with pytest.raises(ValueError, match=rf"image '{re.escape(path)}' \(image_id 3, data set 'dicts'\) has "
                                         r"\(height, width\) = \(6, 8\) after applying its EXIF orientation, but the "
                                         r"data set declares \(8, 6\)"):
        _mapper()(record)


def test_boxes_without_labels_are_refused(tmp_path):
    path = _png(tmp_path / "img.png", np.zeros((6, 8, 3), dtype=np.uint8))
    record = {"file_name": path, "image_id": 4, "boxes": np.ones((1, 4), np.float32)}
    with pytest.raises(ValueError, match=rf"Image '{re.escape(path)}' \(image_id 4\) has 'boxes' but no 'labels'"):
        _mapper()(record)


def test_boxes_of_five_columns_are_refused(tmp_path):
    path = _png(tmp_path / "img.png", np.zeros((6, 8, 3), dtype=np.uint8))
    record = {"file_name": path, "image_id": 5, "boxes": np.ones((2, 5), np.float32), "labels": [0, 0]}
    with pytest.raises(ValueError, match=rf"'boxes' of image '{re.escape(path)}' \(image_id 5\) has shape \(2, 5\); "
                                         r"expected \(-1, 4\)"):
        _mapper()(record)

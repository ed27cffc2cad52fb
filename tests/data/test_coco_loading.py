"""Tests of COCO json loading: boxes and ids, validation errors, fixes, summary, filtering, registration."""
import json
import logging
import math
import os
import re
import uuid

import numpy as np
import pytest
from PIL import Image

from retinadet.data.catalog import DatasetCatalog, MetadataCatalog
from retinadet.data.coco import (
    CLIPPED, DROPPED_NON_POSITIVE, DROPPED_OUTSIDE, filter_images, get_detection_dataset_dicts,
    load_coco_json, read_coco_instances, register_coco_instances, summarize,
)

# Category ids are not contiguous and not in order; labels follow increasing id: 1, 3, 7, 90.
CATEGORIES = [
    {"id": 90, "name": "toothbrush"},
    {"id": 1, "name": "person"},
    {"id": 7, "name": "train"},
    {"id": 3, "name": "car"},
]
CLASSES = ["person", "car", "train", "toothbrush"]
ID_MAP = {1: 0, 3: 1, 7: 2, 90: 3}

IMAGES = [
    {"id": 42, "file_name": "b.png", "width": 64, "height": 48},
    {"id": 7, "file_name": "a.png", "width": 32, "height": 40},
    {"id": 100, "file_name": "sub/c.png", "width": 40, "height": 40},  # no annotations
]

ANNOTATIONS = [
    # image 7 (32 wide, 40 high)
    {"id": 11, "image_id": 7, "category_id": 3, "bbox": [2, 3, 10, 20]},  # -> [2, 3, 12, 23]
    # -> [0.5, 1.25, 5, 3.75]
    {"id": 12, "image_id": 7, "category_id": 90, "bbox": [0.5, 1.25, 4.5, 2.5], "iscrowd": 0},
    # x from 32 to 36: only touches the border x=32, dropped as outside
    {"id": 19, "image_id": 7, "category_id": 7, "bbox": [32, 0, 4, 4]},
    {"id": 20, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]},  # -> [1, 1, 3, 3]
    # image 42 (64 wide, 48 high)
    # crowd region [10, 10, 15, 15]
    {"id": 13, "image_id": 42, "category_id": 1, "bbox": [10, 10, 5, 5], "iscrowd": 1},
    # [60, 40, 70, 60] -> [60, 40, 64, 48]
    {"id": 14, "image_id": 42, "category_id": 7, "bbox": [60, 40, 10, 20]},
    {"id": 15, "image_id": 42, "category_id": 1, "bbox": [-5, -5, 10, 10]},  # [-5, -5, 5, 5] -> [0, 0, 5, 5]
    {"id": 16, "image_id": 42, "category_id": 1, "bbox": [5, 5, 0, 10]},  # width 0: dropped
    {"id": 17, "image_id": 42, "category_id": 3, "bbox": [5, 5, -3, 4]},  # width -3: dropped
    {"id": 18, "image_id": 42, "category_id": 3, "bbox": [70, 10, 5, 5]},  # right of x=64: dropped
]


def write_coco(folder, images=None, annotations=None, categories=None, name="instances.json",
               write_images=True):
    """Write a COCO json and one PNG per image (its declared size) under ``folder``; return both paths."""
    images = IMAGES if images is None else images
    image_root = folder / "images"
    for image in images if write_images else []:
        path = image_root / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (image["width"], image["height"]), (image["id"] % 256, 0, 0)).save(path)
    data = {
        "images": images,
        "annotations": ANNOTATIONS if annotations is None else annotations,
        "categories": CATEGORIES if categories is None else categories,
    }
    json_file = folder / name
    json_file.write_text(json.dumps(data))
    return str(json_file), str(image_root)


@pytest.fixture
def new_name():
    """Unique data set names; every name handed out is removed from both catalogs afterwards."""
    names = []

    def make(prefix="coco_test"):
        names.append(f"{prefix}_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_boxes_labels_crowd_and_ids(tmp_path):
    json_file, image_root = write_coco(tmp_path)
    loaded = read_coco_instances(json_file, image_root)
    dicts = loaded.dataset_dicts

    assert [d["image_id"] for d in dicts] == [7, 42, 100]  # sorted by image id
    assert [(d["width"], d["height"]) for d in dicts] == [(32, 40), (64, 48), (40, 40)]
    for d, name in zip(dicts, ["a.png", "b.png", os.path.join("sub", "c.png")]):
        assert d["file_name"] == os.path.join(image_root, name)
        with Image.open(d["file_name"]) as image:
            assert image.size == (d["width"], d["height"])
        assert d["boxes"].dtype == np.float32 and d["boxes"].shape[1:] == (4,)
        assert d["labels"].dtype == np.int64 and d["annotation_ids"].dtype == np.int64
        assert d["iscrowd"].dtype == np.bool_

    a, b, c = dicts
    np.testing.assert_array_equal(a["boxes"], [[2, 3, 12, 23], [0.5, 1.25, 5, 3.75], [1, 1, 3, 3]])
    np.testing.assert_array_equal(a["labels"], [1, 3, 0])  # car (3), toothbrush (90), person (1)
    np.testing.assert_array_equal(a["iscrowd"], [False, False, False])
    np.testing.assert_array_equal(a["annotation_ids"], [11, 12, 20])

    np.testing.assert_array_equal(b["boxes"], [[10, 10, 15, 15], [60, 40, 64, 48], [0, 0, 5, 5]])
    np.testing.assert_array_equal(b["labels"], [0, 2, 0])  # person (1), train (7), person (1)
    np.testing.assert_array_equal(b["iscrowd"], [True, False, False])
    np.testing.assert_array_equal(b["annotation_ids"], [13, 14, 15])

    assert c["boxes"].shape == (0, 4) and c["labels"].shape == (0,)
    assert c["iscrowd"].shape == (0,) and c["annotation_ids"].shape == (0,)

    # Dropped: 16 and 17 (width <= 0), 18 and 19 (outside); clipped: 14 and 15.
    assert loaded.fixes == {DROPPED_NON_POSITIVE: 2, DROPPED_OUTSIDE: 2, CLIPPED: 2}


def test_non_contiguous_ids_map_in_id_order(tmp_path, new_name):
    json_file, image_root = write_coco(tmp_path)
    loaded = read_coco_instances(json_file, image_root)
    assert loaded.thing_classes == CLASSES
    assert loaded.thing_dataset_id_to_contiguous_id == ID_MAP

    name = new_name()
    load_coco_json(json_file, image_root, dataset_name=name)
    metadata = MetadataCatalog.get(name)
    assert metadata.thing_classes == CLASSES
    assert metadata.thing_dataset_id_to_contiguous_id == ID_MAP


def test_fixes_on_boundaries(tmp_path):
    # One 20 x 10 image; boxes exactly on the border are kept untouched, not counted as clipped.
    images = [{"id": 1, "file_name": "x.png", "width": 20, "height": 10}]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 10]},  # the whole image, kept
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [-1, 2, 3, 3]},  # -> [0, 2, 2, 5], clipped
        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [5, 10, 3, 3]},  # starts at y=10: outside
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [-10, -10, 30, 30]},  # -> [0, 0, 20, 10]
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 0]},  # height 0
        {"id": 6, "image_id": 1, "category_id": 1, "bbox": [-5, 1, 5, 2]},  # ends at x=0: outside
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [50, 50, -1, -1]},  # size checked first: <= 0
    ]
    json_file, image_root = write_coco(tmp_path, images, annotations, [{"id": 1, "name": "thing"}])
    loaded = read_coco_instances(json_file, image_root)
    (d,) = loaded.dataset_dicts
    np.testing.assert_array_equal(d["boxes"], [[0, 0, 20, 10], [0, 2, 2, 5], [0, 0, 20, 10]])
    np.testing.assert_array_equal(d["annotation_ids"], [1, 2, 4])
    assert loaded.fixes == {DROPPED_NON_POSITIVE: 2, DROPPED_OUTSIDE: 2, CLIPPED: 2}


def _malformed(tmp_path, text):
    json_file = tmp_path / "broken.json"
    json_file.write_text(text)
    return str(json_file)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"images": [', "not valid JSON"),
        ("[1, 2]", "holds a list"),
        ('{"images": [], "categories": []}', "missing ['annotations']"),
        ('{"annotations": []}', "missing ['images', 'categories']"),
        ('{"images": {}, "annotations": [], "categories": []}', "'images' is a dict"),
    ],
)
def test_malformed_json_names_file_and_problem(tmp_path, text, expected):
    json_file = _malformed(tmp_path, text)
    with pytest.raises(ValueError) as info:
        load_coco_json(json_file, str(tmp_path))
    assert json_file in str(info.value)
    assert expected in str(info.value)


BAD_ANNOTATIONS = [
    # (annotation, text the error must contain besides the json path and "annotation id 77")
    ({"id": 77, "image_id": 7, "category_id": 5, "bbox": [1, 1, 2, 2]}, "declared ids: [1, 3, 7, 90]"),
    ({"id": 77, "image_id": 999, "category_id": 1, "bbox": [1, 1, 2, 2]}, "image_id 999"),
    ({"id": 77, "image_id": 7, "category_id": 1}, "bbox=None"),
    ({"id": 77, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2]}, "bbox=[1, 1, 2]"),
    ({"id": 77, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2, 3]}, "4 finite numbers"),
    ({"id": 77, "image_id": 7, "category_id": 1, "bbox": [1, "1", 2, 2]}, "4 finite numbers"),
    ({"id": 77, "image_id": 7, "category_id": 1, "bbox": [1, 1, math.nan, 2]}, "bbox=[1, 1, nan, 2]"),
    ({"id": 77, "image_id": 7, "category_id": 1, "bbox": [1, True, 2, 2]}, "4 finite numbers"),
    ({"id": 77, "image_id": 7, "bbox": [1, 1, 2, 2]}, "category_id=None"),
    ({"id": 77, "image_id": "7", "category_id": 1, "bbox": [1, 1, 2, 2]}, "image_id='7'"),
    ({"id": 11, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2]}, "annotation id 11 appears twice"),
]


@pytest.mark.parametrize("annotation, expected", BAD_ANNOTATIONS)
def test_bad_annotation_names_file_and_annotation(tmp_path, annotation, expected):
    json_file, image_root = write_coco(tmp_path, annotations=ANNOTATIONS + [annotation])
    with pytest.raises(ValueError) as info:
        load_coco_json(json_file, image_root)
    message = str(info.value)
    assert json_file in message
    assert expected in message
    if annotation["id"] == 77:
        assert "annotation id 77" in message or "annotation #10 (id 77)" in message


@pytest.mark.parametrize(
    "images, annotations, categories, expected",
    [
        ([{"id": 7, "file_name": "a.png", "width": 32}], [], None, "image #0 (id 7) has height=None"),
        ([{"id": 7, "file_name": "a.png", "width": 0, "height": 5}], [], None, "image id 7 is 0x5"),
        ([{"id": 7, "width": 8, "height": 5}], [], None, "image #0 (id 7) has file_name=None"),
        (IMAGES + [{"id": 42, "file_name": "d.png", "width": 8, "height": 8}], None, None,
         "image id 42 appears twice"),
        (IMAGES, None, CATEGORIES + [{"id": 3, "name": "bus"}], "category id 3 is declared twice"),
        (IMAGES, [], [{"id": 1}], "category #0 has name=None"),
        (IMAGES, [], [], "declares no categories"),
    ],
)
def test_bad_images_and_categories(tmp_path, images, annotations, categories, expected):
    # No PNGs: some of these sizes cannot be written, and nothing is read before the json is valid.
    json_file, image_root = write_coco(tmp_path, images, annotations, categories, write_images=False)
    with pytest.raises(ValueError) as info:
        load_coco_json(json_file, image_root)
    assert json_file in str(info.value)
    assert expected in str(info.value)


def test_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        load_coco_json(missing, str(tmp_path))


def _row(name, count):
    """Regex for a tabulate pipe cell pair "| name | count" with any padding."""
    return re.compile(r"\|\s*" + re.escape(name) + r"\s*\|\s*" + str(count) + r"\s*\|")


def test_load_logs_summary_table(tmp_path, caplog, new_name):
    json_file, image_root = write_coco(tmp_path)
    name = new_name()
    with caplog.at_level(logging.INFO, logger="retinadet.data"):
        load_coco_json(json_file, image_root, dataset_name=name)
    (record,) = [r for r in caplog.records if r.name == "retinadet.data"]
    text = record.getMessage()
    assert name in text and json_file in text
    # 3 images, image 100 without annotations; non-crowd: 11, 12, 20, 14, 15; crowd: 13.
    for label, count in [
        ("images", 3),
        ("images without annotations", 1),
        ("boxes (non-crowd)", 5),
        ("crowd boxes", 1),
        (f"boxes {DROPPED_NON_POSITIVE}", 2),
        (f"boxes {DROPPED_OUTSIDE}", 2),
        (f"boxes {CLIPPED}", 2),
        ("person", 2),  # 20 and 15 (13 is a crowd region)
        ("car", 1),
        ("train", 1),
        ("toothbrush", 1),
        ("total", 5),
    ]:
        assert _row(label, count).search(text), (label, count, text)


def test_summarize_counts_by_class():
    dicts = [
        {"labels": np.array([2, 2, 0, 2]), "iscrowd": np.array([False, True, False, False])},
        {"labels": np.zeros(0, np.int64), "iscrowd": np.zeros(0, bool)},
        {"labels": np.array([1]), "iscrowd": np.array([True])},
    ]
    text = summarize(dicts, ["a", "b", "c"], {"dropped (why not)": 4})
    # non-crowd: a 1, b 0, c 2; crowd 2; one image without annotations.
    for label, count in [("images", 3), ("images without annotations", 1), ("boxes (non-crowd)", 3),
                         ("crowd boxes", 2), ("boxes dropped (why not)", 4), ("a", 1), ("b", 0), ("c", 2),
                         ("total", 3)]:
        assert _row(label, count).search(text), (label, count, text)

    with pytest.raises(ValueError, match=r"has label 3; valid labels are 0\.\.2"):
        summarize([{"labels": np.array([3]), "iscrowd": np.array([False])}], ["a", "b", "c"], {})


def _image(image_id, crowd_flags):
    n = len(crowd_flags)
    return {"image_id": image_id, "boxes": np.zeros((n, 4), np.float32), "labels": np.zeros(n, np.int64),
            "iscrowd": np.asarray(crowd_flags, dtype=bool)}


def test_filter_images():
    dicts = [_image(1, []), _image(2, [True]), _image(3, [True, False]), _image(4, [False])]
    assert [d["image_id"] for d in filter_images(dicts, True, "toy")] == [3, 4]  # 1 empty, 2 crowd only
    assert [d["image_id"] for d in filter_images(dicts, False, "toy")] == [1, 2, 3, 4]

    for filter_empty in (True, False):
        crowd_only = r"data set 'toy' has no images with boxes: 2 images.*\(1 with crowd regions only\)"
        with pytest.raises(ValueError, match=crowd_only):
            filter_images([_image(1, []), _image(2, [True, True])], filter_empty, "toy")
        with pytest.raises(ValueError, match=r"data set 'toy' has no images with boxes: 0 images"):
            filter_images([], filter_empty, "toy")


def test_lazy_registration(tmp_path, new_name):
    name = new_name()
    json_file = str(tmp_path / "later.json")
    image_root = str(tmp_path / "images")
    register_coco_instances(name, json_file, image_root)  # the file does not exist yet: nothing is read
    metadata = MetadataCatalog.get(name)
    assert (metadata.json_file, metadata.image_root) == (json_file, image_root)
    assert metadata.evaluator_type == "coco"
    assert metadata.get("thing_classes") is None
    missing = rf"'{re.escape(json_file)}' of data set '{name}' does not exist"
    with pytest.raises(FileNotFoundError, match=missing):
        DatasetCatalog.get(name)

    write_coco(tmp_path, name="later.json")
    dicts = DatasetCatalog.get(name)
    assert [d["image_id"] for d in dicts] == [7, 42, 100]
    assert metadata.thing_classes == CLASSES and metadata.thing_dataset_id_to_contiguous_id == ID_MAP

    with pytest.raises(ValueError, match=f"'{name}' is already registered"):
        register_coco_instances(name, json_file, image_root)


def test_registration_rolls_back_on_conflicting_metadata(tmp_path, new_name):
    name = new_name()
    MetadataCatalog.get(name).set(evaluator_type="lvis")
    with pytest.raises(ValueError, match="evaluator_type"):
        register_coco_instances(name, str(tmp_path / "a.json"), str(tmp_path))
    assert name not in DatasetCatalog


def test_get_detection_dataset_dicts(tmp_path, new_name):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = new_name(), new_name()
    register_coco_instances(first, *write_coco(tmp_path / "one"))
    two_images = [{"id": 5, "file_name": "e.png", "width": 16, "height": 16},
                  {"id": 6, "file_name": "f.png", "width": 16, "height": 16}]
    two_annotations = [{"id": 1, "image_id": 6, "category_id": 90, "bbox": [1, 1, 4, 4]}]
    register_coco_instances(second, *write_coco(tmp_path / "two", two_images, two_annotations))

    # Filtered: 7 and 42 from the first (100 has nothing), 6 from the second (5 has nothing).
    assert [d["image_id"] for d in get_detection_dataset_dicts([first, second])] == [7, 42, 6]
    assert [d["image_id"] for d in get_detection_dataset_dicts([first, second], filter_empty=False)] == [
        7, 42, 100, 5, 6]
    assert [d["image_id"] for d in get_detection_dataset_dicts(second)] == [6]

    (tmp_path / "three").mkdir()
    other = new_name()
    cat_only = [{"id": 1, "name": "cat"}]
    register_coco_instances(other, *write_coco(tmp_path / "three", two_images, [], cat_only))
    with pytest.raises(ValueError, match=rf"'{first}' and '{other}' have different thing_classes"):
        get_detection_dataset_dicts([first, other])
    with pytest.raises(ValueError, match=rf"data set '{other}' has no images with boxes"):
        get_detection_dataset_dicts(other, filter_empty=False)

    with pytest.raises(KeyError) as info:
        get_detection_dataset_dicts([first, "not_registered_anywhere"])
    assert "not_registered_anywhere" in str(info.value) and first in str(info.value)

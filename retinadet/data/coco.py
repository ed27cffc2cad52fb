"""COCO instance annotations -> retinadet data set dicts: validation, registration, filtering."""
import contextlib
import functools
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import numpy as np
from iopath.common.file_io import g_pathmgr
from pycocotools.coco import COCO

from .catalog import DatasetCatalog, MetadataCatalog
from .summary import summarize

__all__ = [
    "CLIPPED",
    "DROPPED_NON_POSITIVE",
    "DROPPED_OUTSIDE",
    "CocoInstances",
    "filter_images",
    "get_detection_dataset_dicts",
    "load_coco_json",
    "read_coco_instances",
    "register_coco_instances",
    "summarize",
]

logger = logging.getLogger("retinadet.data")

# Reasons a box is changed on load; the keys of CocoInstances.fixes and rows of the summary.
DROPPED_NON_POSITIVE = "dropped (width or height <= 0)"
DROPPED_OUTSIDE = "dropped (entirely outside the image)"
CLIPPED = "clipped (partly outside the image)"
_REQUIRED_KEYS = ("images", "annotations", "categories")
PathLike = Union[str, os.PathLike]


class CocoInstances(NamedTuple):
    """What one COCO json holds, in retinadet's terms.

    ``dataset_dicts``: one dict per image, sorted by image id (format in ``retinadet.data.catalog``);
    ``thing_classes``: class names by contiguous label; ``thing_dataset_id_to_contiguous_id``:
    category id -> label, labels given in increasing id order; ``fixes``: reason -> number of boxes
    dropped or clipped (every reason present, zero included).
    """

    dataset_dicts: List[Dict[str, Any]]
    thing_classes: List[str]
    thing_dataset_id_to_contiguous_id: Dict[int, int]
    fixes: Dict[str, int]


_KIND_NAMES = {int: "integer", str: "string"}


def _is_int(value: Any) -> bool:
    # bool is an int subclass; a flag where an id belongs is a broken file, not id 0/1.
    return isinstance(value, int) and not isinstance(value, bool)


def _require(record: Any, fields: Dict[str, type], json_file: str, what: str) -> None:
    """Raise ValueError unless ``record`` is a dict whose ``fields`` have the given types."""
    if not isinstance(record, dict):
        raise ValueError(f"COCO json '{json_file}': {what} is a {type(record).__name__}, not an object.")
    for field, kind in fields.items():
        value = record.get(field)
        valid = _is_int(value) if kind is int else isinstance(value, kind)
        if not valid:
            raise ValueError(
                f"COCO json '{json_file}': {what} has {field}={value!r}; "
                f"it needs an {_KIND_NAMES[kind]} '{field}'."
            )


def _read_json(json_file: str) -> Dict[str, Any]:
    """The parsed file, checked to have the three COCO lists."""
    try:
        # iopath's shared PathManager: a handler a user registers (s3://, http://) applies here too.
        with g_pathmgr.open(json_file, "r") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"COCO json '{json_file}' is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(
            f"COCO json '{json_file}' holds a {type(data).__name__}; a COCO instances file is an "
            f"object with the lists {list(_REQUIRED_KEYS)}."
        )
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(
            f"COCO json '{json_file}' is missing {missing}; a COCO instances file has the lists "
            f"{list(_REQUIRED_KEYS)} (this one has keys {sorted(data)})."
        )
    for key in _REQUIRED_KEYS:
        if not isinstance(data[key], list):
            raise ValueError(
                f"COCO json '{json_file}': '{key}' is a {type(data[key]).__name__}, not a list."
            )
    return data


def _parse_categories(categories: List[Any], json_file: str) -> Tuple[Dict[int, int], List[str]]:
    """Category id -> contiguous label (ids in increasing order) and the names by label."""
    names: Dict[int, str] = {}
    for index, category in enumerate(categories):
        _require(category, {"id": int, "name": str}, json_file, f"category #{index}")
        if category["id"] in names:
            raise ValueError(
                f"COCO json '{json_file}': category id {category['id']} is declared twice "
                f"('{names[category['id']]}' and '{category['name']}'); ids must be unique."
            )
        names[category["id"]] = category["name"]
    if not names:
        raise ValueError(f"COCO json '{json_file}' declares no categories; 'categories' is empty.")
    ids = sorted(names)
    return {cid: label for label, cid in enumerate(ids)}, [names[cid] for cid in ids]


def _check_images(images: List[Any], json_file: str) -> None:
    seen = set()
    for index, image in enumerate(images):
        what = f"image #{index}" + (f" (id {image.get('id')!r})" if isinstance(image, dict) else "")
        _require(image, {"id": int, "file_name": str, "height": int, "width": int}, json_file, what)
        if image["height"] <= 0 or image["width"] <= 0:
            raise ValueError(
                f"COCO json '{json_file}': image id {image['id']} is {image['width']}x{image['height']} "
                f"(width x height); both must be positive."
            )
        if image["id"] in seen:
            raise ValueError(
                f"COCO json '{json_file}': image id {image['id']} appears twice; ids must be unique."
            )
        seen.add(image["id"])


def _check_bbox(bbox: Any, json_file: str, ann_id: int) -> None:
    numbers = isinstance(bbox, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
    )
    if not numbers or len(bbox) != 4:
        raise ValueError(
            f"COCO json '{json_file}': annotation id {ann_id} has bbox={bbox!r}; it needs a 'bbox' "
            f"of 4 finite numbers [x, y, width, height] in pixels."
        )


def _check_annotations(
    annotations: List[Any], image_ids: Set[int], id_map: Dict[int, int], json_file: str
) -> None:
    seen = set()
    for index, ann in enumerate(annotations):
        what = f"annotation #{index}" + (f" (id {ann.get('id')!r})" if isinstance(ann, dict) else "")
        _require(ann, {"id": int, "image_id": int, "category_id": int}, json_file, what)
        ann_id = ann["id"]
        if ann_id in seen:
            raise ValueError(
                f"COCO json '{json_file}': annotation id {ann_id} appears twice; ids must be unique."
            )
        seen.add(ann_id)
        if ann["image_id"] not in image_ids:
            raise ValueError(
                f"COCO json '{json_file}': annotation id {ann_id} refers to image_id {ann['image_id']}, "
                f"which is not in 'images' ({len(image_ids)} images declared)."
            )
        if ann["category_id"] not in id_map:
            raise ValueError(
                f"COCO json '{json_file}': annotation id {ann_id} has category_id {ann['category_id']}, "
                f"which is not declared in 'categories'; declared ids: {sorted(id_map)}."
            )
        _check_bbox(ann.get("bbox"), json_file, ann_id)


def _coco_api(data: Dict[str, Any]) -> COCO:
    """A pycocotools index over already-parsed, validated data (its progress prints silenced)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _to_xyxy(
    bbox: Sequence[float], width: int, height: int, fixes: Dict[str, int]
) -> Optional[List[float]]:
    """COCO [x, y, w, h] -> xyxy clipped to [0, width] x [0, height]; None when the box is dropped."""
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        fixes[DROPPED_NON_POSITIVE] += 1
        return None
    box = [x, y, x + w, y + h]
    clipped = [min(max(box[0], 0.0), width), min(max(box[1], 0.0), height),
               min(max(box[2], 0.0), width), min(max(box[3], 0.0), height)]
    # A positive-size box left with no area after clipping lies outside (or on the border of) the image.
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        fixes[DROPPED_OUTSIDE] += 1
        return None
    if clipped != box:
        fixes[CLIPPED] += 1
    return clipped


def _image_record(
    image: Dict[str, Any], anns: List[Dict[str, Any]], image_root: str, id_map: Dict[int, int],
    fixes: Dict[str, int],
) -> Dict[str, Any]:
    boxes, labels, iscrowd, ann_ids = [], [], [], []
    for ann in anns:
        box = _to_xyxy(ann["bbox"], image["width"], image["height"], fixes)
        if box is None:
            continue
        boxes.append(box)
        labels.append(id_map[ann["category_id"]])
        iscrowd.append(bool(ann.get("iscrowd", 0)))
        ann_ids.append(ann["id"])
    return {
        "file_name": os.path.join(image_root, image["file_name"]),
        "height": image["height"],
        "width": image["width"],
        "image_id": image["id"],
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64),
        "iscrowd": np.asarray(iscrowd, dtype=bool),
        "annotation_ids": np.asarray(ann_ids, dtype=np.int64),
    }


def read_coco_instances(json_file: PathLike, image_root: PathLike) -> CocoInstances:
    """Parse and validate a COCO instances json; no metadata is set and nothing is logged.

    Boxes become float32 (N, 4) xyxy absolute pixels, clipped to the image; boxes with width or
    height <= 0, or entirely outside the image, are dropped. Crowd annotations are kept with
    iscrowd True. Both kinds of fix are counted in ``fixes``.

    Raises:
        ValueError: the file is not JSON or lacks "images"/"annotations"/"categories"; an image,
            category or annotation lacks a field or repeats an id; an annotation's image_id or
            category_id is not declared; a bbox is missing or not 4 finite numbers. The message
            names the json file and the image, category or annotation id.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    data = _read_json(json_file)
    id_map, class_names = _parse_categories(data["categories"], json_file)
    _check_images(data["images"], json_file)
    _check_annotations(data["annotations"], {image["id"] for image in data["images"]}, id_map, json_file)
    coco = _coco_api(data)
    fixes = {DROPPED_NON_POSITIVE: 0, DROPPED_OUTSIDE: 0, CLIPPED: 0}
    dataset_dicts = [
        _image_record(coco.imgs[image_id], coco.imgToAnns[image_id], image_root, id_map, fixes)
        for image_id in sorted(coco.imgs)
    ]
    return CocoInstances(dataset_dicts, class_names, id_map, fixes)


def load_coco_json(
    json_file: PathLike, image_root: PathLike, dataset_name: Optional[str] = None
) -> List[Dict]:
    """Load a COCO instances json as a list of image dicts and log a summary table.

    Args:
        json_file: path or iopath URI of the annotations.
        image_root: folder the images' "file_name" entries are relative to.
        dataset_name: when given, its metadata gets ``thing_classes`` and
            ``thing_dataset_id_to_contiguous_id`` from the json.

    Returns:
        One dict per image, sorted by image id: "file_name", "height", "width", "image_id",
        "boxes" float32 (N, 4) xyxy absolute pixels, "labels" int64 (N,) in [0, K), "iscrowd"
        bool (N,), "annotation_ids" int64 (N,). See ``read_coco_instances`` for validation.
    """
    json_file = os.fspath(json_file)
    try:
        loaded = read_coco_instances(json_file, image_root)
    except FileNotFoundError as e:
        if dataset_name is None:
            raise
        # Registered sets load lazily, far from where the path was given: say which set wants it.
        raise FileNotFoundError(
            f"COCO json '{json_file}' of data set '{dataset_name}' does not exist ({e})."
        ) from e
    if dataset_name is not None:
        MetadataCatalog.get(dataset_name).set(
            thing_classes=loaded.thing_classes,
            thing_dataset_id_to_contiguous_id=loaded.thing_dataset_id_to_contiguous_id,
        )
    source = f"data set '{dataset_name}' ({json_file})" if dataset_name is not None else f"'{json_file}'"
    table = summarize(loaded.dataset_dicts, loaded.thing_classes, loaded.fixes)
    logger.info("Loaded %d images from %s:\n%s", len(loaded.dataset_dicts), source, table)
    return loaded.dataset_dicts


def register_coco_instances(name: str, json_file: PathLike, image_root: PathLike) -> None:
    """Register COCO json ``json_file`` as data set ``name``; it is read on ``DatasetCatalog.get``.

    Sets metadata ``json_file``, ``image_root`` and ``evaluator_type="coco"`` now; the class names
    and the id map are set when the json is loaded. Registering a name twice is a ValueError.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_coco_instances needs a non-empty data set name; got {name!r}.")
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    # partial (not a lambda) so the catalog entry can be pickled into data loader workers.
    DatasetCatalog.register(name, functools.partial(load_coco_json, json_file, image_root, name))
    try:
        MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")
    except ValueError:
        DatasetCatalog.remove(name)  # keep the two catalogs consistent when the metadata conflicts
        raise


def _usable_boxes(record: Dict[str, Any]) -> int:
    """Non-crowd boxes of one image dict (all boxes when it carries no "iscrowd")."""
    if "iscrowd" not in record:
        return len(record["boxes"])
    return int(np.count_nonzero(~np.asarray(record["iscrowd"], dtype=bool)))


def filter_images(dataset_dicts: List[Dict], filter_empty: bool, dataset_name: str) -> List[Dict]:
    """Drop images without any non-crowd box when ``filter_empty``; fail early on a set without boxes.

    Raises:
        ValueError: ``dataset_dicts`` has no non-crowd box at all (training would find nothing to
            learn), whatever ``filter_empty`` says.
    """
    usable = [_usable_boxes(record) for record in dataset_dicts]
    if sum(usable) == 0:
        crowd_only = sum(1 for record, n in zip(dataset_dicts, usable) if len(record["boxes"]) > n)
        raise ValueError(
            f"data set '{dataset_name}' has no images with boxes: {len(dataset_dicts)} images, none with "
            f"a non-crowd box ({crowd_only} with crowd regions only). Check its annotation file and "
            f"the dropped-box counts in the load summary."
        )
    if not filter_empty:
        return list(dataset_dicts)
    kept = [record for record, n in zip(dataset_dicts, usable) if n > 0]
    logger.info(
        "Removed %d images without non-crowd boxes from data set '%s'; %d images left.",
        len(dataset_dicts) - len(kept), dataset_name, len(kept),
    )
    return kept


def _check_same_classes(names: Sequence[str]) -> None:
    """All sets that declare thing_classes must declare the same ones (labels mean the same class)."""
    declared = [(n, MetadataCatalog.get(n).get("thing_classes")) for n in names]
    declared = [(n, classes) for n, classes in declared if classes is not None]
    if not declared:
        return
    first_name, first = declared[0]
    for name, classes in declared[1:]:
        if list(classes) != list(first):
            raise ValueError(
                f"Data sets '{first_name}' and '{name}' have different thing_classes "
                f"({list(first)} vs {list(classes)}); sets trained together must share their classes."
            )


def get_detection_dataset_dicts(
    names: Union[str, Sequence[str]], filter_empty: bool = True
) -> List[Dict]:
    """Load the registered data sets ``names``, concatenate them and apply ``filter_images``.

    Raises:
        KeyError: a name is not registered (the message lists the registered names).
        ValueError: no names, a set with no images, sets with different thing_classes, or no
            non-crowd box in the result.
    """
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(
            "get_detection_dataset_dicts needs at least one data set name; "
            f"registered: {DatasetCatalog.list()}."
        )
    dataset_dicts: List[Dict] = []
    for name in names:
        records = DatasetCatalog.get(name)
        if len(records) == 0:
            raise ValueError(f"Data set '{name}' has no images.")
        dataset_dicts.extend(records)
    _check_same_classes(names)
    return filter_images(dataset_dicts, filter_empty, "+".join(names))

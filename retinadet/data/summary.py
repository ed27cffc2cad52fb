"""Text summary of a loaded data set: images, boxes per class, crowd regions, boxes fixed or dropped."""
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from tabulate import tabulate

__all__ = ["summarize"]

# Class/count pairs per row of the per-class table: 80 COCO classes fit in 27 rows instead of 80.
_PAIRS_PER_ROW = 3


def _count(dataset_dicts: Sequence[Dict], num_classes: int) -> Tuple[np.ndarray, int, int]:
    """Non-crowd boxes per label (K,), the number of crowd boxes, images without any annotation."""
    per_class = np.zeros(num_classes, dtype=np.int64)
    crowd = 0
    without = 0
    for record in dataset_dicts:
        labels = np.asarray(record["labels"], dtype=np.int64).reshape(-1)
        iscrowd = np.asarray(record["iscrowd"], dtype=bool).reshape(-1)
        if labels.size == 0:
            without += 1
            continue
        if iscrowd.shape != labels.shape:
            raise ValueError(
                f"Image {record.get('file_name')!r} (image id {record.get('image_id')}) has "
                f"{labels.size} labels but {iscrowd.size} iscrowd flags; they must match one to one."
            )
        outside = labels[(labels < 0) | (labels >= num_classes)]
        if outside.size:
            raise ValueError(
                f"Image {record.get('file_name')!r} (image id {record.get('image_id')}) has label "
                f"{int(outside[0])}; valid labels are 0..{num_classes - 1} for the {num_classes} class names."
            )
        per_class += np.bincount(labels[~iscrowd], minlength=num_classes)
        crowd += int(iscrowd.sum())
    return per_class, crowd, without


def _per_class_table(class_names: Sequence[str], per_class: np.ndarray) -> str:
    cells: List[object] = []
    for name, count in zip(class_names, per_class.tolist()):
        cells += [name, count]
    cells += ["total", int(per_class.sum())]
    width = 2 * _PAIRS_PER_ROW
    cells += [""] * (-len(cells) % width)
    rows = [cells[i : i + width] for i in range(0, len(cells), width)]
    headers = ["class", "boxes"] * min(_PAIRS_PER_ROW, len(class_names) + 1)
    rows = [row[: len(headers)] for row in rows]
    return tabulate(rows, headers=headers, tablefmt="pipe", numalign="right", stralign="left")


def summarize(dataset_dicts: Sequence[Dict], class_names: Sequence[str], dropped: Mapping[str, int]) -> str:
    """Two tables (tabulate "pipe" format) describing a loaded data set.

    Args:
        dataset_dicts: image dicts as in ``retinadet.data.catalog``: "labels" int64 (N,) in
            [0, K), "iscrowd" bool (N,).
        class_names: the K class names, indexed by contiguous label.
        dropped: reason -> number of boxes, for boxes the loader dropped or clipped (e.g.
            ``{"dropped (entirely outside the image)": 2}``); each becomes a row "boxes <reason>".

    Returns:
        An overview (images, images without annotations, non-crowd and crowd boxes, every
        reason in ``dropped``) followed by the non-crowd boxes of each class ("name | count"
        pairs, then "total").
    """
    per_class, crowd, without = _count(dataset_dicts, len(class_names))
    overview = [
        ("images", len(dataset_dicts)),
        ("images without annotations", without),
        ("boxes (non-crowd)", int(per_class.sum())),
        ("crowd boxes", crowd),
    ]
    overview += [(f"boxes {reason}", int(count)) for reason, count in dropped.items()]
    first = tabulate(overview, headers=["", "count"], tablefmt="pipe", numalign="right")
    return first + "\n" + _per_class_table(class_names, per_class)

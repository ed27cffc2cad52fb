"""COCOeval: pycocotools' box evaluation, compiled (Cython) and threaded, with pycocotools' numbers.

A drop-in for ``pycocotools.cocoeval.COCOeval`` with ``iouType="bbox"``: the same constructor,
``params`` (pycocotools' own ``Params``), ``evaluate()``, ``accumulate(p=None)``, ``summarize()``,
``eval`` (``precision``/``scores`` (T, R, K, A, M), ``recall`` (T, K, A, M), ``counts``, ``params``,
``date``) and ``stats``. The arrays are equal to pycocotools' exactly (the same floating-point
operations in the same order), for every ``iouThrs``, ``recThrs``, ``areaRng``, ``maxDets`` and
``useCats``. ``evalImgs`` and ``ious`` are not kept (the per-image results stay in compact arrays).

``cocoDt`` is a pycocotools COCO (``cocoGt.loadRes(...)``) or, faster, the
:class:`~retinadet.evaluation.coco_results.DetectionResults` of ``load_results(cocoGt, results)``.

The compiled part is ``retinadet.evaluation._cocoeval``; when it was not built (or
``RETINADET_DISABLE_EXT=1``), evaluate() and accumulate() run pycocotools' own, say why once, and
give the same numbers.
"""
import copy
import datetime
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from pycocotools.cocoeval import Params

from . import compiled
from .coco_results import DetectionResults, id_positions
from .compiled import extension_load_error, extension_loaded

__all__ = ["COCOeval", "extension_loaded", "extension_load_error", "default_num_threads"]

logger = logging.getLogger(__name__)


def default_num_threads() -> int:
    """Threads the evaluator splits its work over: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


class COCOeval:
    """pycocotools' COCOeval for boxes (see the module docstring); ``num_threads`` (default
    :func:`default_num_threads`) splits images and categories over threads, with results
    independent of the count."""

    def __init__(self, cocoGt: Any = None, cocoDt: Any = None, iouType: str = "segm", *,
                 num_threads: Optional[int] = None) -> None:
        if iouType != "bbox":
            raise ValueError(f"retinadet.evaluation.COCOeval evaluates boxes only (iouType='bbox'); got "
                             f"iouType={iouType!r}. Use pycocotools.cocoeval.COCOeval for 'segm' and 'keypoints'.")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads={num_threads}; it must be >= 1 (None: the CPUs available).")
        self.cocoGt = cocoGt
        self.cocoDt = cocoDt
        self.params = Params(iouType=iouType)
        self.eval: Dict[str, Any] = {}
        self.stats: Any = []
        self._paramsEval: Any = {}
        self.num_threads = int(num_threads) if num_threads is not None else default_num_threads()
        self._matches: Optional[_Matches] = None
        if cocoGt is not None:
            self.params.imgIds = sorted(cocoGt.getImgIds())
            self.params.catIds = sorted(cocoGt.getCatIds())

    def evaluate(self) -> None:
        """Match detections to ground truth per image and category (pycocotools' evaluate())."""
        tic = time.time()
        print("Running per image evaluation...")
        p = self.params
        if p.useSegm is not None:
            p.iouType = "segm" if p.useSegm == 1 else "bbox"
        if p.iouType != "bbox":
            raise ValueError(f"params.iouType is {p.iouType!r}; retinadet.evaluation.COCOeval evaluates boxes only.")
        print(f"Evaluate annotation type *{p.iouType}*")
        p.imgIds = list(np.unique(p.imgIds))
        if p.useCats:
            p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        if compiled.kernels() is None:
            compiled.report_fallback()
            self._reference = _pycocotools_eval(self.cocoGt, self.cocoDt, p)
            self._reference.evaluate()
        else:
            self._matches = _match(self.cocoGt, self.cocoDt, p, self.num_threads)
        self._paramsEval = copy.deepcopy(p)
        self.eval = {}
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def accumulate(self, p: Any = None) -> None:
        """Precision, recall and scores over images (pycocotools' accumulate()) into ``self.eval``."""
        print("Accumulating evaluation results...")
        tic = time.time()
        if not self._paramsEval:
            raise RuntimeError("Please run evaluate() first")
        if p is None:
            p = self.params
        if compiled.kernels() is None:
            self._reference.accumulate(p)
            self.eval = self._reference.eval
        else:
            self.eval = _accumulate(self._matches, p, self._paramsEval, self.num_threads)
        print(f"DONE (t={time.time() - tic:0.2f}s).")

    def summarize(self) -> None:
        """Print the 12 summary lines and set ``self.stats`` (12,), exactly as pycocotools does."""
        if not self.eval:
            raise RuntimeError("Please run accumulate() first")
        p = self.params
        m = p.maxDets
        rows = [(1, None, "all", 100), (1, 0.5, "all", m[2]), (1, 0.75, "all", m[2]), (1, None, "small", m[2]),
                (1, None, "medium", m[2]), (1, None, "large", m[2]), (0, None, "all", m[0]), (0, None, "all", m[1]),
                (0, None, "all", m[2]), (0, None, "small", m[2]), (0, None, "medium", m[2]), (0, None, "large", m[2])]
        stats = np.zeros((len(rows),))
        for n, (ap, iou, area, max_dets) in enumerate(rows):
            stats[n] = _summary_value(self.eval, p, ap, iou, area, max_dets)
        self.stats = stats

    def __str__(self) -> str:
        self.summarize()
        return ""


def _summary_value(evaluation: Dict[str, Any], p: Any, ap: int, iou_thr: Optional[float], area: str,
                   max_dets: int) -> float:
    """One summary line: the mean of the defined (> -1) entries at that setting, printed; -1 when none."""
    area_index = [i for i, label in enumerate(p.areaRngLbl) if label == area]
    det_index = [i for i, m in enumerate(p.maxDets) if m == max_dets]
    s = evaluation["precision"] if ap == 1 else evaluation["recall"]
    if iou_thr is not None:
        s = s[np.where(iou_thr == p.iouThrs)[0]]
    s = s[:, :, :, area_index, det_index] if ap == 1 else s[:, :, area_index, det_index]
    mean = -1 if len(s[s > -1]) == 0 else np.mean(s[s > -1])
    iou_text = f"{p.iouThrs[0]:0.2f}:{p.iouThrs[-1]:0.2f}" if iou_thr is None else f"{iou_thr:0.2f}"
    title, kind = ("Average Precision", "(AP)") if ap == 1 else ("Average Recall", "(AR)")
    print(f" {title:<18} {kind} @[ IoU={iou_text:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] = {mean:0.3f}")
    return mean


def _pycocotools_eval(coco_gt: Any, coco_dt: Any, p: Any) -> Any:
    """pycocotools' COCOeval on the same data and parameters (the fallback)."""
    from pycocotools.cocoeval import COCOeval as ReferenceCOCOeval

    if isinstance(coco_dt, DetectionResults):
        coco_dt = coco_dt.to_coco(coco_gt)
    reference = ReferenceCOCOeval(coco_gt, coco_dt, "bbox")
    reference.params = copy.deepcopy(p)
    return reference


class _Matches:
    """What evaluate() leaves for accumulate(): each kept detection's flags and the counted ground truth.

    ``flags`` (A, T, D) uint8: IGNORED / TRUE_POSITIVE / FALSE_POSITIVE of each detection;
    ``counted`` (A, K0, I0) int64: ground truth counted per area range, category and image;
    ``category``/``image``/``rank``/``score`` (D,): each detection's evaluated category position (0
    without useCats), image position, rank in its (image, category) group and score.
    """

    def __init__(self, flags, counted, category, image, rank, score, num_categories):
        self.flags, self.counted = flags, counted
        self.category, self.image, self.rank, self.score = category, image, rank, score
        self.num_categories = num_categories


def _read_ground_truth(coco_gt: Any, images: Dict[Any, int], categories: Dict[Any, int]) -> Dict[str, np.ndarray]:
    """The ground truth's annotations as arrays, with positions among the evaluated images and categories."""
    return compiled.kernels().read_annotations(_annotation_list(coco_gt, "cocoGt"), images, categories,
                                               "ground_truth", "cocoGt.dataset['annotations']")


def _read_detections(coco_dt: Any, images: Dict[Any, int], categories: Dict[Any, int]) -> Dict[str, np.ndarray]:
    """The detections (DetectionResults or a COCO) as arrays, with positions as for the ground truth."""
    if isinstance(coco_dt, DetectionResults):
        image_lookup = np.array([images.get(i, -1) for i in coco_dt.image_ids] + [-1], dtype=np.int32)
        category_lookup = np.array([categories.get(c, -1) for c in coco_dt.category_ids] + [-1], dtype=np.int32)
        n = len(coco_dt)
        return {"image": image_lookup[coco_dt.image_index], "category": category_lookup[coco_dt.category_index],
                "boxes": coco_dt.boxes, "area": coco_dt.area, "id_flag": np.ones(n, dtype=np.uint8),
                "score": coco_dt.scores}
    return compiled.kernels().read_annotations(_annotation_list(coco_dt, "cocoDt"), images, categories,
                                               "detections", "cocoDt.dataset['annotations']")


def _category_positions(p: Any) -> Dict[Any, int]:
    if not p.useCats and len(set(p.catIds)) != len(p.catIds):
        raise ValueError(f"params.catIds {list(p.catIds)} repeats a category; with useCats=0 pycocotools would "
                         "count its objects twice.")
    return id_positions(p.catIds)


def _annotation_list(coco: Any, name: str) -> List[Dict[str, Any]]:
    """The annotations of a COCO object in file order, checked to have unique ids."""
    if coco is None:
        raise ValueError(f"{name} is None; COCOeval needs the ground truth and the detections.")
    annotations = coco.dataset.get("annotations", [])
    if len(coco.anns) != len(annotations):
        seen, repeated = set(), None
        for annotation in annotations:
            if annotation.get("id") in seen:
                repeated = annotation.get("id")
                break
            seen.add(annotation.get("id"))
        raise ValueError(f"{name} has {len(annotations)} annotations but {len(coco.anns)} distinct ids (id "
                         f"{repeated!r} repeats); pycocotools would evaluate the last of them in place of the others.")
    return annotations


def _group_order(image: np.ndarray, category: np.ndarray, p: Any, score: Optional[np.ndarray] = None
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """(kept indices in evaluation order, their group) for annotations with evaluated image and category.

    A group is (category, image) with useCats, else the image with its categories in params order.
    Inside a group: file order, or with ``score`` best score first (ties in that order).
    """
    kept = np.flatnonzero((image >= 0) & (category >= 0))
    num_images = len(p.imgIds)
    image, category = image[kept].astype(np.int64), category[kept].astype(np.int64)
    group = category * num_images + image if p.useCats else image
    keys: List[np.ndarray] = []
    if not p.useCats:
        keys.append(category)
    if score is not None:
        keys.append(-score[kept])
    keys.append(group)
    order = np.lexsort(keys) if len(keys) > 1 else np.argsort(group, kind="stable")
    return kept[order], group[order]


def _boundaries(group: np.ndarray, num_groups: int) -> np.ndarray:
    """(num_groups + 1,) int64 start of each group in a group-sorted array."""
    starts = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=num_groups), out=starts[1:])
    return starts


def _split(weights: np.ndarray, parts: int) -> List[Tuple[int, int]]:
    """Consecutive index ranges covering ``weights`` with about equal sums, at most ``parts`` of them."""
    n = len(weights)
    if n == 0:
        return []
    parts = max(1, min(parts, n))
    cumulative = np.cumsum(weights, dtype=np.float64)
    cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, parts) / parts, side="left") + 1
    edges = np.unique(np.concatenate([[0], np.clip(cuts, 0, n), [n]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _run_parallel(function: Any, ranges: List[Tuple[int, int]], num_threads: int) -> None:
    """``function(begin, end)`` for every range, on up to ``num_threads`` threads (the kernels drop the GIL)."""
    if num_threads <= 1 or len(ranges) <= 1:
        for begin, end in ranges:
            function(begin, end)
        return
    with ThreadPoolExecutor(max_workers=min(num_threads, len(ranges))) as pool:
        for future in [pool.submit(function, begin, end) for begin, end in ranges]:
            future.result()


def _match(coco_gt: Any, coco_dt: Any, p: Any, num_threads: int) -> _Matches:
    """pycocotools' evaluate(): per (image, category) group, match at every IoU threshold and area range."""
    images, categories = id_positions(p.imgIds), _category_positions(p)
    gt = _read_ground_truth(coco_gt, images, categories)
    dt = _read_detections(coco_dt, images, categories)
    num_images = len(p.imgIds)
    num_categories = len(p.catIds) if p.useCats else 1
    num_groups = num_images * num_categories
    gt_order, gt_group = _group_order(gt["image"], gt["category"], p)
    dt_order, dt_group = _group_order(dt["image"], dt["category"], p, score=dt["score"])
    # Keep each group's best maxDets[-1] detections.
    dt_start = _boundaries(dt_group, num_groups)
    rank = np.arange(len(dt_order), dtype=np.int64) - dt_start[dt_group]
    keep = rank < p.maxDets[-1]
    dt_order, dt_group, rank = dt_order[keep], dt_group[keep], rank[keep]
    gt_start, dt_start = _boundaries(gt_group, num_groups), _boundaries(dt_group, num_groups)
    iou_thresholds = np.ascontiguousarray(p.iouThrs, dtype=np.float64).reshape(-1)
    area_ranges = np.ascontiguousarray(p.areaRng, dtype=np.float64).reshape(-1, 2)
    flags = np.zeros((len(area_ranges), len(iou_thresholds), len(dt_order)), dtype=np.uint8)
    counted = np.zeros((len(area_ranges), num_groups), dtype=np.int32)
    gt_arrays = [np.ascontiguousarray(gt[key][gt_order]) for key in ("boxes", "area", "crowd", "id_flag")]
    dt_arrays = [np.ascontiguousarray(dt[key][dt_order]) for key in ("boxes", "area", "id_flag")]

    kernels = compiled.kernels()

    def match_range(begin: int, end: int) -> None:
        kernels.match_groups(begin, end, gt_start, dt_start, *gt_arrays, *dt_arrays, area_ranges, iou_thresholds,
                             flags, counted)

    work = np.diff(gt_start) * np.diff(dt_start) + np.diff(gt_start) + np.diff(dt_start)
    _run_parallel(match_range, _split(work, 4 * num_threads), num_threads)
    category = dt_group // num_images if p.useCats else np.zeros_like(dt_group)
    image = dt_group % num_images if p.useCats else dt_group
    return _Matches(flags, counted.astype(np.int64).reshape(len(area_ranges), num_categories, num_images),
                    category, image, rank, np.ascontiguousarray(dt["score"][dt_order]), num_categories)


def _accumulate(matches: _Matches, p: Any, pe: Any, num_threads: int) -> Dict[str, Any]:
    """pycocotools' accumulate(), index arithmetic included, from the matches evaluate() left."""
    p.catIds = p.catIds if p.useCats == 1 else [-1]
    T, R, A, M = len(p.iouThrs), len(p.recThrs), len(p.areaRng), len(p.maxDets)
    K = len(p.catIds) if p.useCats else 1
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    evaluated_categories = set(pe.catIds if pe.useCats else [-1])
    area_set, max_dets_set, image_set = set(map(tuple, pe.areaRng)), set(pe.maxDets), set(pe.imgIds)
    # As pycocotools: positions in p's lists index the evaluated (pe) layout.
    k_list = np.array([n for n, k in enumerate(p.catIds) if k in evaluated_categories], dtype=np.int64)
    m_list = np.array([m for m in p.maxDets if m in max_dets_set], dtype=np.int64)
    a_list = np.array([n for n, a in enumerate(map(tuple, p.areaRng)) if a in area_set], dtype=np.int64)
    i_list = np.array([n for n, i in enumerate(p.imgIds) if i in image_set], dtype=np.int64)
    counted_a, counted_k, counted_i = matches.counted.shape
    for name, positions, size in (("category", k_list, counted_k), ("area range", a_list, counted_a),
                                  ("image", i_list, counted_i)):
        if positions.size and positions.max() >= size:
            raise ValueError(f"accumulate(p): {name} position {int(positions.max())} of p is past the {size} "
                             "evaluated; pycocotools indexes evaluate()'s results by p's positions, so p must "
                             "start with the evaluated ones.")
    if matches.flags.shape[1] != T or not np.array_equal(np.asarray(p.iouThrs), np.asarray(pe.iouThrs)):
        raise ValueError(f"accumulate(p): p.iouThrs {list(p.iouThrs)} differ from the evaluated {list(pe.iouThrs)}.")
    counted = np.ascontiguousarray(matches.counted[:, :, i_list].sum(axis=2), dtype=np.int64)
    included = np.zeros(counted_i, dtype=bool)
    included[i_list] = True
    dets = np.flatnonzero(included[matches.image])
    # Each category's detections in pycocotools' concatenation order: score, then image, then rank.
    order = dets[np.lexsort((matches.rank[dets], matches.image[dets], -matches.score[dets],
                             matches.category[dets]))]
    blocks = _boundaries(matches.category[order], matches.num_categories)
    rank32 = np.ascontiguousarray(matches.rank, dtype=np.int32)
    recall_thresholds = np.ascontiguousarray(p.recThrs, dtype=np.float64).reshape(-1)

    kernels = compiled.kernels()

    def accumulate_range(begin: int, end: int) -> None:
        kernels.accumulate_categories(begin, end, blocks, order, rank32, matches.score, matches.flags, counted,
                                      k_list, a_list, m_list, recall_thresholds, precision, recall, scores)

    sizes = np.diff(blocks)[k_list] + 1 if k_list.size else np.zeros(0)
    _run_parallel(accumulate_range, _split(sizes, 2 * num_threads), num_threads)
    return {"params": p, "counts": [T, R, K, A, M], "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "precision": precision, "recall": recall, "scores": scores}

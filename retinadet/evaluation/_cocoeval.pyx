# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True, cdivision=True
# distutils: language = c++
"""Compiled kernels of retinadet.evaluation.COCOeval: COCO box matching and accumulation.

They do what pycocotools' ``COCOeval.evaluate()`` and ``accumulate()`` do, with the same
floating-point operations in the same order, so the results are equal to pycocotools' bit for bit:

- ``read_annotations`` reads COCO annotation dicts (ground truth or results) into arrays and
  refuses what would give a wrong AP silently (missing keys, NaN or negative-size boxes);
- ``match_groups`` matches the detections of each (image, category) group to its ground truth at
  every IoU threshold and area range (crowd regions as ignore, crowd IoU = intersection over the
  detection's area), for a range of groups, without the GIL;
- ``accumulate_categories`` turns the matches into the precision, recall and score arrays of
  pycocotools' shapes, for a range of categories, without the GIL.

The IoU is computed here rather than by ``retinadet.ops``: it must be pycocotools' double-precision
``bbIou`` on (x, y, w, h) boxes, operation for operation, to give equal AP; ``retinadet.ops`` works
on (x1, y1, x2, y2) float tensors. Every array index that comes from the input is checked (the
module keeps Cython's bounds checking on), so bad input raises instead of reading out of bounds.
"""
from libc.math cimport fmax, fmin, isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t
from libcpp.string cimport string
from libcpp.vector cimport vector

import numpy as np

# A detection's state at one IoU threshold and area range (pycocotools' dtMatches/dtIgnore, folded).
cdef enum:
    IGNORED = 0
    TRUE_POSITIVE = 1
    FALSE_POSITIVE = 2

FLAG_IGNORED = IGNORED
FLAG_TRUE_POSITIVE = TRUE_POSITIVE
FLAG_FALSE_POSITIVE = FALSE_POSITIVE
# pycocotools' np.spacing(1): the precision denominator's guard against 0 / 0.
cdef double EPSILON = 2.220446049250313e-16


def _entry_name(str source, Py_ssize_t index, object annotation):
    """How an error names one annotation: its list, index, id and image."""
    if isinstance(annotation, dict):
        return (f"{source}[{index}] (id {annotation.get('id')!r}, image_id {annotation.get('image_id')!r}, "
                f"category_id {annotation.get('category_id')!r})")
    return f"{source}[{index}]"


cdef int _read_box(object bbox, double[:, ::1] boxes, Py_ssize_t i, str source, Py_ssize_t index,
                   object annotation) except -1:
    """Store ``bbox`` ([x, y, w, h], finite, w and h >= 0) into ``boxes[i]``."""
    cdef double x, y, w, h
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(f"{_entry_name(source, index, annotation)} has bbox {bbox!r}; a COCO box is a list "
                         "[x, y, width, height] of 4 numbers.")
    try:
        x = bbox[0]
        y = bbox[1]
        w = bbox[2]
        h = bbox[3]
    except TypeError:
        raise ValueError(f"{_entry_name(source, index, annotation)} has bbox {bbox!r}; its 4 values must be "
                         "numbers.") from None
    if not (isfinite(x) and isfinite(y) and isfinite(w) and isfinite(h)):
        raise ValueError(f"{_entry_name(source, index, annotation)} has bbox {bbox!r} with a NaN or infinite "
                         "value; pycocotools would match it against anything and give a wrong AP.")
    if w < 0 or h < 0:
        raise ValueError(f"{_entry_name(source, index, annotation)} has bbox {bbox!r} of negative width or "
                         "height; a COCO box is [x, y, width, height] with width, height >= 0 (is it "
                         "[x1, y1, x2, y2]?).")
    boxes[i, 0] = x
    boxes[i, 1] = y
    boxes[i, 2] = w
    boxes[i, 3] = h
    return 0


cdef double _read_number(object annotation, str key, str source, Py_ssize_t index, str why) except? -1:
    """``annotation[key]`` as a finite double; ValueError naming the entry when missing or not finite."""
    cdef object value = annotation.get(key)
    cdef double number
    if value is None:
        raise ValueError(f"{_entry_name(source, index, annotation)} has no '{key}'; {why}")
    try:
        number = value
    except TypeError:
        raise ValueError(f"{_entry_name(source, index, annotation)} has {key} {value!r}; {why}") from None
    if not isfinite(number):
        raise ValueError(f"{_entry_name(source, index, annotation)} has {key} {value!r}; {why}")
    return number


def read_annotations(list annotations, dict image_positions, dict category_positions, str kind, str source):
    """Read COCO box annotations into arrays.

    Args:
        annotations: dicts with "image_id", "category_id", "bbox" [x, y, w, h] and, for ground
            truth, "id", "area" and "iscrowd" (0 or 1), for detections "id", "area" and "score".
        image_positions / category_positions: id -> position among the evaluated images /
            categories; an annotation whose id is absent gets position -1.
        kind: "ground_truth", "detections" (annotations of a results COCO, as loadRes made them) or
            "results" (a results list: no id or area; like loadRes, detection n gets id n + 1 and area
            w * h).
        source: how errors name the list, e.g. "cocoGt.dataset['annotations']".

    Returns:
        dict of arrays, N = len(annotations): "image" (N,) int32 and "category" (N,) int32 positions,
        "boxes" (N, 4) float64 xywh, "area" (N,) float64, "id_flag" (N,) uint8 (ground truth: id != 0,
        what pycocotools' ``dtMatches`` truthiness tests; detections: id > 0, what its ``gtMatches > 0``
        tests), for ground truth "crowd" (N,) uint8, for detections "score" (N,) float64.

    Raises ValueError naming the entry for a missing key, a NaN or negative-size box, a NaN area or
    score, or an iscrowd other than 0/1.
    """
    if kind not in ("ground_truth", "detections", "results"):
        raise ValueError(f"read_annotations: kind {kind!r}; valid: 'ground_truth', 'detections', 'results'")
    cdef bint ground_truth = kind == "ground_truth", results = kind == "results"
    cdef Py_ssize_t n = len(annotations), i
    image_array = np.empty(n, dtype=np.int32)
    category_array = np.empty(n, dtype=np.int32)
    boxes_array = np.empty((n, 4), dtype=np.float64)
    area_array = np.empty(n, dtype=np.float64)
    flag_array = np.empty(n, dtype=np.uint8)
    extra_array = np.empty(n, dtype=np.uint8 if ground_truth else np.float64)
    cdef int32_t[::1] image = image_array
    cdef int32_t[::1] category = category_array
    cdef double[:, ::1] boxes = boxes_array
    cdef double[::1] area = area_array
    cdef uint8_t[::1] id_flag = flag_array
    cdef uint8_t[::1] crowd
    cdef double[::1] score
    if ground_truth:
        crowd = extra_array
    else:
        score = extra_array
    cdef object annotation, value
    for i in range(n):
        annotation = annotations[i]
        if not isinstance(annotation, dict):
            raise ValueError(f"{source}[{i}] is {type(annotation).__name__} {annotation!r}; a COCO annotation "
                             "is a dict.")
        for key in (("image_id", "category_id", "bbox") if results else ("image_id", "category_id", "bbox", "id")):
            if key not in annotation:
                raise ValueError(f"{_entry_name(source, i, annotation)} has no '{key}'.")
        image[i] = image_positions.get(annotation["image_id"], -1)
        category[i] = category_positions.get(annotation["category_id"], -1)
        _read_box(annotation["bbox"], boxes, i, source, i, annotation)
        if results:
            id_flag[i] = 1
            area[i] = boxes[i, 2] * boxes[i, 3]
        else:
            value = annotation["id"]
            id_flag[i] = (value != 0) if ground_truth else (value > 0)
            area[i] = _read_number(annotation, "area", source, i,
                                   "COCO needs a finite 'area' on every annotation (the area ranges test it).")
        if ground_truth:
            value = annotation.get("iscrowd")
            if value is None:
                raise ValueError(f"{_entry_name(source, i, annotation)} has no 'iscrowd'; COCO ground truth "
                                 "needs iscrowd 0 (an object) or 1 (a crowd region, matched as ignore).")
            if not (value == 0 or value == 1):
                raise ValueError(f"{_entry_name(source, i, annotation)} has iscrowd {value!r}; valid: 0 or 1.")
            crowd[i] = value == 1
        else:
            score[i] = _read_number(annotation, "score", source, i, "a detection needs a finite 'score'.")
    arrays = {"image": image_array, "category": category_array, "boxes": boxes_array, "area": area_array,
              "id_flag": flag_array}
    arrays["crowd" if ground_truth else "score"] = extra_array
    return arrays


cdef int _match_group(
        Py_ssize_t group, const int64_t[::1] gt_start, const int64_t[::1] dt_start,
        const double[:, ::1] gt_boxes, const double[::1] gt_area, const uint8_t[::1] gt_crowd,
        const uint8_t[::1] gt_id_flag, const double[:, ::1] dt_boxes, const double[::1] dt_area,
        const uint8_t[::1] dt_id_flag, const double[:, ::1] area_ranges, const double[::1] iou_thresholds,
        uint8_t[:, :, ::1] dt_flags, int32_t[:, ::1] num_counted_gt,
        vector[double]& ious, vector[Py_ssize_t]& order, vector[uint8_t]& ignored, vector[uint8_t]& taken) \
        except -1 nogil:
    """pycocotools' computeIoU + evaluateImg for one (image, category) group, every area range."""
    cdef Py_ssize_t g0 = gt_start[group], g1 = gt_start[group + 1]
    cdef Py_ssize_t d0 = dt_start[group], d1 = dt_start[group + 1]
    cdef Py_ssize_t G = g1 - g0, D = d1 - d0, T = iou_thresholds.shape[0], A = area_ranges.shape[0]
    cdef Py_ssize_t d, g, j, a, t, best
    cdef double w, h, inter, union, gt_box_area, dt_box_area, threshold, best_iou, lo, hi
    cdef uint8_t dt_ignored, is_tp
    if G == 0 and D == 0:
        return 0
    # IoU of detection d (rows, best score first) with ground truth g (columns, file order): bbIou.
    ious.resize(D * G)
    for g in range(G):
        gt_box_area = gt_boxes[g0 + g, 2] * gt_boxes[g0 + g, 3]
        for d in range(D):
            dt_box_area = dt_boxes[d0 + d, 2] * dt_boxes[d0 + d, 3]
            ious[d * G + g] = 0
            w = (fmin(dt_boxes[d0 + d, 2] + dt_boxes[d0 + d, 0], gt_boxes[g0 + g, 2] + gt_boxes[g0 + g, 0])
                 - fmax(dt_boxes[d0 + d, 0], gt_boxes[g0 + g, 0]))
            if w <= 0:
                continue
            h = (fmin(dt_boxes[d0 + d, 3] + dt_boxes[d0 + d, 1], gt_boxes[g0 + g, 3] + gt_boxes[g0 + g, 1])
                 - fmax(dt_boxes[d0 + d, 1], gt_boxes[g0 + g, 1]))
            if h <= 0:
                continue
            inter = w * h
            union = dt_box_area if gt_crowd[g0 + g] else dt_box_area + gt_box_area - inter
            ious[d * G + g] = inter / union
    order.resize(G)
    ignored.resize(G)
    taken.resize(G)
    for a in range(A):
        lo = area_ranges[a, 0]
        hi = area_ranges[a, 1]
        # Ground truth outside the range or crowd is ignored; a stable sort puts the counted ones first.
        j = 0
        for g in range(G):
            if not (gt_crowd[g0 + g] or gt_area[g0 + g] < lo or gt_area[g0 + g] > hi):
                order[j] = g
                ignored[j] = 0
                j += 1
        num_counted_gt[a, group] = <int32_t>j
        for g in range(G):
            if gt_crowd[g0 + g] or gt_area[g0 + g] < lo or gt_area[g0 + g] > hi:
                order[j] = g
                ignored[j] = 1
                j += 1
        for t in range(T):
            threshold = fmin(iou_thresholds[t], 1 - 1e-10)
            for j in range(G):
                taken[j] = 0
            for d in range(D):
                best = -1
                best_iou = threshold
                for j in range(G):
                    if taken[j] and not gt_crowd[g0 + order[j]]:
                        continue
                    if best > -1 and ignored[best] == 0 and ignored[j] == 1:
                        break
                    if ious[d * G + order[j]] < best_iou:
                        continue
                    best_iou = ious[d * G + order[j]]
                    best = j
                if best == -1:
                    dt_ignored = 0
                    is_tp = 0
                else:
                    dt_ignored = ignored[best]
                    is_tp = gt_id_flag[g0 + order[best]]
                    taken[best] = dt_id_flag[d0 + d]
                # Unmatched detections outside the area range are ignored too.
                if not is_tp and (dt_area[d0 + d] < lo or dt_area[d0 + d] > hi):
                    dt_ignored = 1
                if dt_ignored:
                    dt_flags[a, t, d0 + d] = IGNORED
                elif is_tp:
                    dt_flags[a, t, d0 + d] = TRUE_POSITIVE
                else:
                    dt_flags[a, t, d0 + d] = FALSE_POSITIVE
    return 0


def match_groups(Py_ssize_t begin, Py_ssize_t end, const int64_t[::1] gt_start, const int64_t[::1] dt_start,
                 const double[:, ::1] gt_boxes, const double[::1] gt_area, const uint8_t[::1] gt_crowd,
                 const uint8_t[::1] gt_id_flag, const double[:, ::1] dt_boxes, const double[::1] dt_area,
                 const uint8_t[::1] dt_id_flag, const double[:, ::1] area_ranges,
                 const double[::1] iou_thresholds, uint8_t[:, :, ::1] dt_flags, int32_t[:, ::1] num_counted_gt):
    """Match groups ``begin..end-1`` (without the GIL; ranges of one call never share a group).

    Group g holds ground truth ``gt_start[g]:gt_start[g+1]`` (file order) and detections
    ``dt_start[g]:dt_start[g+1]`` (best score first, at most maxDets[-1]). Writes
    ``dt_flags[a, t, d]`` (IGNORED / TRUE_POSITIVE / FALSE_POSITIVE of detection d at area range a
    and IoU threshold t) and ``num_counted_gt[a, g]`` (ground truth that is neither crowd nor
    outside area range a).
    """
    cdef Py_ssize_t group
    cdef vector[double] ious
    cdef vector[Py_ssize_t] order
    cdef vector[uint8_t] ignored, taken
    if not (0 <= begin <= end <= gt_start.shape[0] - 1 and gt_start.shape[0] == dt_start.shape[0]):
        raise ValueError(f"match_groups: groups {begin}..{end} outside 0..{gt_start.shape[0] - 1}")
    with nogil:
        for group in range(begin, end):
            _match_group(group, gt_start, dt_start, gt_boxes, gt_area, gt_crowd, gt_id_flag, dt_boxes, dt_area,
                         dt_id_flag, area_ranges, iou_thresholds, dt_flags, num_counted_gt, ious, order, ignored,
                         taken)


cdef int _accumulate_category(
        Py_ssize_t k, const int64_t[::1] category_blocks, const int64_t[::1] det_order, const int32_t[::1] det_rank,
        const double[::1] det_score, const uint8_t[:, :, ::1] dt_flags, const int64_t[:, ::1] num_counted_gt,
        const int64_t[::1] k_list, const int64_t[::1] a_list, const int64_t[::1] m_list,
        const double[::1] recall_thresholds, double[:, :, :, :, ::1] precision, double[:, :, :, ::1] recall,
        double[:, :, :, :, ::1] scores, vector[int64_t]& selected, vector[double]& rc, vector[double]& pr) \
        except -1 nogil:
    """pycocotools' accumulate() for the k-th accumulated category, every area range and maxDets."""
    cdef Py_ssize_t k0 = k_list[k], a, a0, m, t, r, i, lo, hi, nd, pi
    cdef Py_ssize_t T = precision.shape[0], R = precision.shape[1]
    cdef int64_t counted, maxdet, det
    cdef double tp, fp
    cdef uint8_t flag
    lo = category_blocks[k0]
    hi = category_blocks[k0 + 1]
    for a in range(a_list.shape[0]):
        a0 = a_list[a]
        counted = num_counted_gt[a0, k0]
        if counted == 0:
            continue  # no ground truth to find: precision and recall stay -1
        for m in range(m_list.shape[0]):
            maxdet = m_list[m]
            # This category's detections in pycocotools' order (score, then image, then rank in the
            # image), keeping each image's best maxdet.
            selected.clear()
            for i in range(lo, hi):
                det = det_order[i]
                if det_rank[det] < maxdet:
                    selected.push_back(det)
            nd = <Py_ssize_t>selected.size()
            rc.resize(nd)
            pr.resize(nd)
            for t in range(T):
                tp = 0
                fp = 0
                for i in range(nd):
                    flag = dt_flags[a0, t, selected[i]]
                    if flag == TRUE_POSITIVE:
                        tp += 1
                    elif flag == FALSE_POSITIVE:
                        fp += 1
                    rc[i] = tp / counted
                    pr[i] = tp / (fp + tp + EPSILON)
                recall[t, k, a, m] = rc[nd - 1] if nd else 0
                # Precision envelope: the best precision at any higher recall.
                for i in range(nd - 1, 0, -1):
                    if pr[i] > pr[i - 1]:
                        pr[i - 1] = pr[i]
                for r in range(R):
                    precision[t, r, k, a, m] = 0
                    scores[t, r, k, a, m] = 0
                for r in range(R):
                    pi = _search_left(rc, nd, recall_thresholds[r])
                    if pi >= nd:
                        break  # pycocotools stops at the first recall threshold past the last detection
                    precision[t, r, k, a, m] = pr[pi]
                    scores[t, r, k, a, m] = det_score[selected[pi]]
    return 0


cdef inline Py_ssize_t _search_left(vector[double]& values, Py_ssize_t n, double x) noexcept nogil:
    """numpy.searchsorted(values[:n], x, side="left") of a non-decreasing array."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + (hi - lo) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def accumulate_categories(Py_ssize_t begin, Py_ssize_t end, const int64_t[::1] category_blocks,
                          const int64_t[::1] det_order, const int32_t[::1] det_rank, const double[::1] det_score,
                          const uint8_t[:, :, ::1] dt_flags, const int64_t[:, ::1] num_counted_gt,
                          const int64_t[::1] k_list, const int64_t[::1] a_list, const int64_t[::1] m_list,
                          const double[::1] recall_thresholds, double[:, :, :, :, ::1] precision,
                          double[:, :, :, ::1] recall, double[:, :, :, :, ::1] scores):
    """Accumulate categories ``begin..end-1`` of ``k_list`` (without the GIL; ranges never overlap).

    ``category_blocks[k0]:category_blocks[k0+1]`` of ``det_order`` are evaluated category k0's
    detections sorted by (-score, image, rank); ``det_rank[d]`` is d's rank in its image;
    ``num_counted_gt[a0, k0]`` the ground truth counted at area range a0. ``k_list``/``a_list``
    hold evaluated category / area-range positions and ``m_list`` the maxDets values of the
    output's K / A / M axes. Writes ``precision``/``scores`` (T, R, K, A, M) and ``recall``
    (T, K, A, M), which the caller fills with -1 first.
    """
    cdef Py_ssize_t k
    cdef vector[int64_t] selected
    cdef vector[double] rc, pr
    if not (0 <= begin <= end <= k_list.shape[0]):
        raise ValueError(f"accumulate_categories: categories {begin}..{end} outside 0..{k_list.shape[0]}")
    if dt_flags.shape[1] != precision.shape[0]:
        raise ValueError(f"accumulate_categories: {dt_flags.shape[1]} IoU thresholds were evaluated, "
                         f"{precision.shape[0]} asked for")
    with nogil:
        for k in range(begin, end):
            _accumulate_category(k, category_blocks, det_order, det_rank, det_score, dt_flags, num_counted_gt,
                                 k_list, a_list, m_list, recall_thresholds, precision, recall, scores, selected,
                                 rc, pr)


cdef extern from *:
    """
    #include <charconv>
    #include <cstdint>
    #include <cstdio>
    #include <string>

    /* Append repr(value) of a finite double, the text json.dumps writes: the shortest digits that read
       back as the same double (std::to_chars), laid out as Python's float repr lays them out (fixed
       notation with at least one decimal for exponents -5 < e < 16, else d.ddde+XX). */
    static void retinadet_append_repr(std::string &out, double value) {
        char buffer[64];
        auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
        const char *p = buffer, *end = result.ptr;
        if (*p == '-') { out.push_back('-'); ++p; }
        std::string digits;
        while (p < end && *p != 'e') { if (*p != '.') digits.push_back(*p); ++p; }
        int exponent = 0;  /* to_chars writes no terminator: parse the exponent inside [p + 1, end) */
        const char *e = p + 1;
        if (e < end && *e == '+') ++e;
        std::from_chars(e, end, exponent);
        if (digits == "0") { out += "0.0"; return; }
        int point = exponent + 1;  /* value = 0.DIGITS x 10^point */
        int n = (int)digits.size();
        if (point <= -4 || point > 16) {
            out.push_back(digits[0]);
            if (n > 1) { out.push_back('.'); out.append(digits, 1, std::string::npos); }
            char tail[8];
            std::snprintf(tail, sizeof(tail), "e%c%02d", exponent < 0 ? '-' : '+', exponent < 0 ? -exponent : exponent);
            out += tail;
        } else if (point <= 0) {
            out += "0.";
            out.append(-point, '0');
            out += digits;
        } else if (point < n) {
            out.append(digits, 0, point);
            out.push_back('.');
            out.append(digits, point, std::string::npos);
        } else {
            out += digits;
            out.append(point - n, '0');
            out += ".0";
        }
    }

    static void retinadet_append_int(std::string &out, long long value) {
        char buffer[32];
        auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
        out.append(buffer, result.ptr);
    }
    """
    void retinadet_append_repr(string& out, double value) nogil
    void retinadet_append_int(string& out, long long value) nogil


def results_json(const int64_t[::1] image_ids, const int64_t[::1] category_ids, const double[:, ::1] boxes,
                 const double[::1] scores):
    """The COCO results file of these detections, byte for byte what ``json.dumps`` writes for
    ``[{"image_id": ..., "category_id": ..., "bbox": [x, y, w, h], "score": ...}, ...]``.

    Args: (N,) int64 image and category ids, (N, 4) float64 xywh boxes, (N,) float64 scores, all finite.
    Returns: bytes (the JSON text).
    """
    cdef Py_ssize_t n = scores.shape[0], i, j
    if image_ids.shape[0] != n or category_ids.shape[0] != n or boxes.shape[0] != n or boxes.shape[1] != 4:
        raise ValueError(f"results_json: {image_ids.shape[0]} image ids, {category_ids.shape[0]} category ids, "
                         f"boxes {tuple(boxes.shape)[:2]}, {n} scores; expected N, N, (N, 4), N")
    for i in range(n):
        for j in range(4):
            if not isfinite(boxes[i, j]):
                raise ValueError(f"results_json: detection {i} has a box value {boxes[i, j]}; JSON needs finite numbers")
        if not isfinite(scores[i]):
            raise ValueError(f"results_json: detection {i} has score {scores[i]}; JSON needs finite numbers")
    cdef string out
    with nogil:
        out.reserve(n * 120 + 2)
        out.append(b"[")
        for i in range(n):
            if i:
                out.append(b", ")
            out.append(b'{"image_id": ')
            retinadet_append_int(out, image_ids[i])
            out.append(b', "category_id": ')
            retinadet_append_int(out, category_ids[i])
            out.append(b', "bbox": [')
            for j in range(4):
                if j:
                    out.append(b", ")
                retinadet_append_repr(out, boxes[i, j])
            out.append(b'], "score": ')
            retinadet_append_repr(out, scores[i])
            out.append(b"}")
        out.append(b"]")
    return out

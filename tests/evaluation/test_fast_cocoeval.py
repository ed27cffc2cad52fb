"""retinadet.evaluation.COCOeval against pycocotools' COCOeval, run side by side on the same data.

Equality is exact (``np.array_equal`` on precision, recall and scores; ``==`` on the 12 stats): the
compiled evaluator does pycocotools' floating-point operations in the same order.
"""
import contextlib
import copy
import gzip
import io
import json
import logging
import os

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval as ReferenceCOCOeval

from retinadet.evaluation import COCOeval, compiled, load_results
from retinadet.utils.random_coco import coco_from_dict, random_coco

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "shapes_easy_val")
needs_kernels = pytest.mark.skipif(not compiled.extension_loaded(),
                                   reason=f"compiled evaluator not built: {compiled.extension_load_error()}")


def _run(evaluator):
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return printed.getvalue()


def _pycocotools(gt, results, set_params=None):
    reference = ReferenceCOCOeval(gt, _load_res(gt, results), "bbox")
    if set_params:
        set_params(reference.params)
    printed = _run(reference)
    return reference, printed


def _load_res(gt, results):
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(copy.deepcopy(results))


def _ours(gt, results, set_params=None, **kwargs):
    ours = COCOeval(gt, load_results(gt, results), "bbox", **kwargs)
    if set_params:
        set_params(ours.params)
    printed = _run(ours)
    return ours, printed


def _assert_equal(reference, ours):
    for key in ("precision", "recall", "scores"):
        assert ours.eval[key].shape == reference.eval[key].shape, key
        assert np.array_equal(ours.eval[key], reference.eval[key]), key
    assert ours.eval["counts"] == reference.eval["counts"]
    assert np.array_equal(ours.stats, reference.stats)


@pytest.fixture(scope="module")
def coco_80():
    """300 images, 80 categories: crowds, tiny and huge boxes, ties, empty images, classes without objects."""
    dataset, results = random_coco(num_images=300, num_categories=80, seed=11)
    return coco_from_dict(dataset), results


@pytest.fixture(scope="module")
def reference_80(coco_80):
    """pycocotools' COCOeval on ``coco_80`` and what it printed."""
    gt, results = coco_80
    return _pycocotools(gt, results)


@needs_kernels
def test_random_80_categories_equal_pycocotools(coco_80, reference_80):
    gt, results = coco_80
    # The data has what the test claims to cover.
    anns = gt.dataset["annotations"]
    assert sum(a["iscrowd"] for a in anns) > 20
    assert min(a["bbox"][2] for a in anns) < 1 and max(a["area"] for a in anns) > 96 ** 2
    assert len({r["score"] for r in results}) <= 101 < len(results)
    assert set(gt.getImgIds()) - {a["image_id"] for a in anns}
    assert set(gt.getImgIds()) - {r["image_id"] for r in results}
    assert set(gt.getCatIds()) - {a["category_id"] for a in anns}
    reference, reference_printed = reference_80
    ours, printed = _ours(gt, results)
    _assert_equal(reference, ours)
    assert 0.05 < ours.stats[0] < 0.5
    # The same summary lines as pycocotools (the timing lines differ).
    assert [line for line in printed.splitlines() if "=" in line and "@[" in line] == \
        [line for line in reference_printed.splitlines() if "=" in line and "@[" in line]


def _no_categories(p):
    p.useCats = 0


def _custom_thresholds(p):
    p.iouThrs = np.array([0.1, 0.5, 0.55, 0.95, 0.99])
    p.recThrs = np.linspace(0, 1, 11)
    p.maxDets = [100, 3, 20]  # evaluate() sorts them, as pycocotools does


def _custom_areas(p):
    p.areaRng = [[0, 1e10], [0, 50], [50, 5000], [5000, 1e10], [100, 100]]
    p.areaRngLbl = ["all", "small", "medium", "large", "exactly100"]
    p.maxDets = [1, 5, 10]


def _subset(p):
    p.imgIds = p.imgIds[10:90:3]
    p.catIds = p.catIds[2:15]


@needs_kernels
@pytest.mark.parametrize("set_params", [_no_categories, _custom_thresholds, _custom_areas, _subset])
def test_parameters_equal_pycocotools(set_params):
    dataset, results = random_coco(num_images=120, num_categories=20, seed=12)
    gt = coco_from_dict(dataset)
    reference, _ = _pycocotools(gt, results, set_params)
    ours, _ = _ours(gt, results, set_params)
    _assert_equal(reference, ours)
    assert ours.params.maxDets == sorted(ours.params.maxDets)


@needs_kernels
def test_trained_model_on_shapes_val_equals_pycocotools():
    with gzip.open(os.path.join(FIXTURES, "annotations.json.gz"), "rt") as f:
        gt = coco_from_dict(json.load(f))
    with gzip.open(os.path.join(FIXTURES, "retinanet_R_18_FPN_detections.json.gz"), "rt") as f:
        results = json.load(f)
    reference, _ = _pycocotools(gt, results)
    ours, _ = _ours(gt, results)
    _assert_equal(reference, ours)
    # The demo model's published figures (README): 75.55 AP, 94.67 AP50.
    assert round(ours.stats[0] * 100, 2) == 75.55 and round(ours.stats[1] * 100, 2) == 94.67


@needs_kernels
def test_hand_computed_case():
    """One image, one class: objects A (100x100 at 0,0) and B (10x10 at 200,200), a crowd region C.

    Detections, best first: d1 on A (IoU 1), d2 on A again (a duplicate: false positive), d3 inside
    the crowd region (its IoA is 1: ignored, not a false positive), d4 inside B (8x10 of 10x10: IoU 0.8).
    At IoU 0.5: d1 TP, d2 FP, d3 ignored, d4 TP -> precision at recall 1 is 2/3, recall 1.
    """
    dataset = {"images": [{"id": 1, "width": 600, "height": 600}], "categories": [{"id": 1, "name": "x"}],
               "annotations": [
                   {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
                   {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 200, 10, 10], "area": 100, "iscrowd": 0},
                   {"id": 3, "image_id": 1, "category_id": 1, "bbox": [300, 300, 200, 200], "area": 40000,
                    "iscrowd": 1}]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "score": 0.8},
               {"image_id": 1, "category_id": 1, "bbox": [350, 350, 50, 50], "score": 0.7},
               {"image_id": 1, "category_id": 1, "bbox": [201, 200, 8, 10], "score": 0.6}]
    gt = coco_from_dict(dataset)
    ours, _ = _ours(gt, results)
    # IoU(d4, B) = 80 / 100 = 0.8: a match at thresholds 0.5..0.8, a miss above.
    precision = ours.eval["precision"][:, :, 0, 0, 2]  # (T, R) at area "all", maxDets 100
    recall = ours.eval["recall"][:, 0, 0, 2]
    assert np.allclose(recall, [1.0] * 7 + [0.5] * 3)
    # T <= 0.8: TP, FP, (ignored), TP -> precisions 1, 1/2, 1/2, 2/3; envelope 1 up to recall 0.5, then 2/3.
    assert np.allclose(precision[0, :51], 1.0) and np.allclose(precision[0, 51:], 2 / 3)
    # T > 0.8: TP, FP -> recall stops at 0.5; precision 1 up to 0.5, then 0.
    assert np.allclose(precision[9, :51], 1.0) and np.all(precision[9, 51:] == 0)
    assert ours.stats[0] == pytest.approx(np.mean(np.concatenate([precision[:7].ravel(), precision[7:].ravel()])))
    reference, _ = _pycocotools(gt, results)
    _assert_equal(reference, ours)


@needs_kernels
def test_threads_do_not_change_results(coco_80):
    gt, results = coco_80
    single, _ = _ours(gt, results, num_threads=1)
    for threads in (2, 3, 8):
        several, _ = _ours(gt, results, num_threads=threads)
        _assert_equal(single, several)


@needs_kernels
def test_pycocotools_result_objects_and_other_inputs(coco_80, reference_80, tmp_path):
    """cocoDt as pycocotools' loadRes makes it, a results file, and pycocotools' (N, 7) array form."""
    gt, results = coco_80
    reference, _ = reference_80
    from_coco = COCOeval(gt, _load_res(gt, results), "bbox")
    _run(from_coco)
    _assert_equal(reference, from_coco)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    from_file = COCOeval(gt, load_results(gt, str(path)), "bbox")
    _run(from_file)
    _assert_equal(reference, from_file)
    rows = np.array([[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in results])
    from_array = COCOeval(gt, load_results(gt, rows), "bbox")
    _run(from_array)
    _assert_equal(reference, from_array)


@needs_kernels
def test_ground_truth_id_zero_and_no_detections_like_pycocotools():
    """pycocotools reads a match with ground-truth id 0 as unmatched; an empty result set scores 0."""
    dataset, results = random_coco(num_images=40, num_categories=5, seed=13)
    for annotation in dataset["annotations"]:
        annotation["id"] -= 1  # ids from 0
    gt = coco_from_dict(dataset)
    reference, _ = _pycocotools(gt, results)
    ours, _ = _ours(gt, results)
    _assert_equal(reference, ours)
    empty_reference = ReferenceCOCOeval(gt, load_results(gt, []).to_coco(gt), "bbox")
    _run(empty_reference)
    empty, _ = _ours(gt, [])
    _assert_equal(empty_reference, empty)
    assert empty.stats[0] == 0 and np.all(empty.eval["precision"][empty.eval["precision"] > -1] == 0)


def test_without_the_compiled_module_pycocotools_runs_and_says_why(monkeypatch, caplog):
    dataset, results = random_coco(num_images=60, num_categories=10, seed=14)
    gt = coco_from_dict(dataset)
    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "_load_error", "ImportError('not built')")
    monkeypatch.setattr(compiled, "_fallback_reported", False)
    reference, _ = _pycocotools(gt, results)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        first = COCOeval(gt, _load_res(gt, results), "bbox")
        _run(first)
        second = COCOeval(gt, load_results(gt, results), "bbox")  # arrays: turned into a COCO for pycocotools
        _run(second)
    _assert_equal(reference, first)
    _assert_equal(reference, second)
    warnings = [r for r in caplog.records if "not in use" in r.getMessage()]
    assert len(warnings) == 1 and "not built" in warnings[0].getMessage()


def test_accumulate_and_summarize_need_the_steps_before(coco_80):
    gt, _ = coco_80
    evaluator = COCOeval(gt, None, "bbox")
    with pytest.raises(RuntimeError, match="evaluate"):
        evaluator.accumulate()
    with pytest.raises(RuntimeError, match="accumulate"):
        evaluator.summarize()
    with pytest.raises(ValueError, match="boxes only.*segm"):
        COCOeval(gt, None)  # pycocotools' default iouType, "segm"
    with pytest.raises(ValueError, match="num_threads=0"):
        COCOeval(gt, None, "bbox", num_threads=0)


def test_the_drop_in_does_not_import_torch():
    """README: ``import retinadet.evaluation`` (and the drop-in COCOeval) does not import torch."""
    import subprocess
    import sys

    code = ("import sys; from retinadet.evaluation import COCOeval, load_results; "
            "print('torch' in sys.modules, 'retinadet.data' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_results_file_text_is_json_dumps_byte_for_byte(coco_80, monkeypatch):
    """The compiled results writer (COCOEvaluator's results file) writes exactly what json.dumps writes,
    float reprs included: extreme magnitudes, negative zero, subnormals and random bit patterns."""
    gt, results = coco_80
    detections = load_results(gt, results)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**64 - 1, 40000, dtype=np.uint64).view(np.float64)
    bits = bits[np.isfinite(bits)][:4000]
    edge = [0.0, -0.0, 5e-324, 1e-5, 9.999999999999999e-5, 1e-4, 0.1, 1 / 3, 123456789.0, 1e15, 1e16,
            1234567890123456.0, 12345678901234567890.0, 1e22, 1.7976931348623157e308, -2.5, 2.2250738585072014e-308]
    detections.boxes = detections.boxes.copy()
    detections.boxes.reshape(-1)[:len(edge) + len(bits)] = np.concatenate([edge, bits])
    expected = json.dumps(detections.to_dicts()).encode()
    if compiled.extension_loaded():
        assert detections.to_json() == expected
    monkeypatch.setattr(compiled, "_kernels", None)
    assert detections.to_json() == expected

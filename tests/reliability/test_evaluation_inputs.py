"""Bad COCO results and ground truth for retinadet.evaluation: an error naming the entry, never a crash or a
silently wrong AP.

Each case runs with the compiled reader and with the pure-Python one used when it was not built.
"""
import contextlib
import io

import numpy as np
import pytest
from pycocotools.cocoeval import COCOeval as ReferenceCOCOeval

from retinadet.evaluation import COCOeval, DetectionResults, compiled, load_results
from retinadet.utils.random_coco import coco_from_dict

needs_kernels = pytest.mark.skipif(not compiled.extension_loaded(),
                                   reason=f"compiled evaluator not built: {compiled.extension_load_error()}")


def _dataset():
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "a"}, {"id": 5, "name": "b"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
                {"id": 2, "image_id": 2, "category_id": 5, "bbox": [0, 0, 50, 40], "area": 2000, "iscrowd": 0}]}


def _result(**changes):
    result = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}
    result.update(changes)
    return result


@pytest.fixture(params=["compiled", "python"])
def reader(request, monkeypatch):
    """Run the test with the compiled results reader, then without it."""
    if request.param == "compiled" and not compiled.extension_loaded():
        pytest.skip(f"compiled evaluator not built: {compiled.extension_load_error()}")
    if request.param == "python":
        monkeypatch.setattr(compiled, "_kernels", None)
    return request.param


@pytest.mark.parametrize("bad, message", [
    (_result(image_id=7), r"results\[1\].*image_id 7.*Results do not correspond to current coco set"),
    (_result(category_id=2), r"results\[1\].*category_id 2.*no such category"),
    (_result(bbox=[10, 10, float("nan"), 20]), r"results\[1\].*NaN"),
    (_result(bbox=[10, 10, -5, 20]), r"results\[1\].*negative width"),
    (_result(score=float("nan")), r"results\[1\].*score"),
    (_result(bbox=[10, 10, 20]), r"results\[1\].*bbox \[10, 10, 20\]"),
    (_result(bbox=[10, 10, "w", 20]), r"results\[1\]"),
    ({"image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]}, r"results\[1\].*score"),
    ("not a dict", r"results\[1\]"),
])
def test_bad_result_named(reader, bad, message):
    gt = coco_from_dict(_dataset())
    with pytest.raises(ValueError, match=message):
        load_results(gt, [_result(), bad])


def test_results_that_are_not_a_list(reader):
    gt = coco_from_dict(_dataset())
    with pytest.raises(ValueError, match="list of dicts"):
        load_results(gt, {"image_id": 1})
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        load_results(gt, np.zeros((3, 6)))
    assert len(load_results(gt, [])) == 0


def test_arrays_checked(reader):
    gt = coco_from_dict(_dataset())
    ok = DetectionResults.from_arrays(gt, [1, 2], [[0, 0, 1, 1], [0, 0, 2, 3]], [0.5, 0.4], [1, 5])
    assert ok.area.tolist() == [1.0, 6.0] and ok.image_index.tolist() == [0, 1] and ok.category_index.tolist() == [0, 1]
    assert ok.to_dicts()[1] == {"image_id": 2, "category_id": 5, "bbox": [0.0, 0.0, 2.0, 3.0], "score": 0.4}
    with pytest.raises(ValueError, match=r"detections\[1\] has image_id 9"):
        DetectionResults.from_arrays(gt, [1, 9], [[0, 0, 1, 1]] * 2, [0.5, 0.4], [1, 5])
    with pytest.raises(ValueError, match=r"expected \(N, 4\)"):
        DetectionResults.from_arrays(gt, [1], [[0, 0, 1, 1]] * 2, [0.5, 0.4], [1, 5])
    with pytest.raises(ValueError, match=r"detections\[0\].*score inf"):
        DetectionResults.from_arrays(gt, [1], [[0, 0, 1, 1]], [float("inf")], [1])


@needs_kernels
@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("iscrowd"), r"annotations'\]\[1\] \(id 2, image_id 2, category_id 5\) has no 'iscrowd'"),
    (lambda a: a.pop("area"), r"annotations'\]\[1\] \(id 2.*has no 'area'"),
    (lambda a: a.update(area=float("nan")), r"annotations'\]\[1\] \(id 2.*area nan"),
    (lambda a: a.update(iscrowd=2), r"annotations'\]\[1\] \(id 2.*iscrowd 2; valid: 0 or 1"),
    (lambda a: a.update(bbox=[0, 0, -1, 5]), r"annotations'\]\[1\] \(id 2.*negative width"),
    (lambda a: a.update(id=1), r"cocoGt has 2 annotations but 1 distinct ids \(id 1 repeats\)"),
])
def test_bad_ground_truth_named(change, message):
    dataset = _dataset()
    change(dataset["annotations"][1])
    gt = coco_from_dict(dataset)
    evaluator = COCOeval(gt, load_results(gt, [_result()]), "bbox")
    with pytest.raises(ValueError, match=message), contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()


def test_unknown_category_ignored_by_the_evaluator_like_pycocotools():
    """A detections COCO (not our results loader) may hold other categories; both evaluators skip them."""
    gt = coco_from_dict(_dataset())
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = gt.loadRes([_result(), _result(category_id=2, score=0.95), _result(image_id=2, category_id=5,
                                                                                      bbox=[0, 0, 50, 40])])
        reference = ReferenceCOCOeval(gt, coco_dt, "bbox")
        ours = COCOeval(gt, coco_dt, "bbox")
        for evaluator in (reference, ours):
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    assert np.array_equal(reference.eval["precision"], ours.eval["precision"])
    assert ours.stats[0] == reference.stats[0] == pytest.approx(1.0)


@needs_kernels
def test_kernels_check_their_indices():
    """Indices that point outside the arrays raise; they never read or write out of bounds."""
    kernels = compiled.kernels()
    one = np.zeros((1, 4))
    starts = np.array([0, 5], dtype=np.int64)  # the group claims 5 ground-truth boxes; there is 1
    args = (starts, np.array([0, 1], dtype=np.int64), one, np.zeros(1), np.zeros(1, np.uint8), np.ones(1, np.uint8),
            one, np.zeros(1), np.ones(1, np.uint8), np.array([[0.0, 1e10]]), np.array([0.5]),
            np.zeros((1, 1, 1), np.uint8), np.zeros((1, 1), np.int32))
    with pytest.raises(IndexError):
        kernels.match_groups(0, 1, *args)
    with pytest.raises(ValueError, match="outside"):
        kernels.match_groups(0, 3, *args)
    for bad in (7, -1):  # detection 7 of 1, and a negative index (no wrap-around)
        with pytest.raises(IndexError):
            _accumulate_one(kernels, np.array([bad], dtype=np.int64))


def _accumulate_one(kernels, order):
    kernels.accumulate_categories(
        0, 1, np.array([0, 1], dtype=np.int64), order, np.zeros(1, np.int32), np.zeros(1),
        np.ones((1, 1, 1), np.uint8), np.ones((1, 1), np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64),
        np.array([100], dtype=np.int64), np.linspace(0, 1, 3), -np.ones((1, 3, 1, 1, 1)), -np.ones((1, 1, 1, 1)),
        -np.ones((1, 3, 1, 1, 1)))

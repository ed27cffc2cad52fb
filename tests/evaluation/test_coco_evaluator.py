"""Tests of COCOEvaluator: its metrics equal pycocotools' COCOeval run by hand on the same json and detections."""
import contextlib
import copy
import io
import json
import logging
import math
import os
import re
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from retinadet.config import get_cfg
from retinadet.data.catalog import DatasetCatalog, MetadataCatalog
from retinadet.evaluation import COCOEvaluator, DatasetEvaluator, default_output_dir, inference_on_dataset
from retinadet.evaluation.coco_evaluation import RESULTS_FILE, RESULTS_META_FILE

CLASSES = ["cat", "dog", "bird"]
# Non-contiguous category ids; the json lists them in another order than their labels.
CATEGORY_OF_LABEL = {0: 3, 1: 7, 2: 11}
ID_MAP = {category_id: label for label, category_id in CATEGORY_OF_LABEL.items()}

# (id, width, height)
IMAGES = [(1, 128, 128), (2, 128, 96), (3, 128, 128), (4, 64, 64), (5, 64, 64)]
# (annotation id, image id, category id, [x, y, w, h], iscrowd); area = w * h, COCO's small < 32^2 <= medium
# < 96^2: three small and four medium objects, none large, so APl has no ground truth and is NaN.
ANNOTATIONS = [
    (1, 1, 3, [10, 10, 20, 20], 0),  # cat, 400 small
    (2, 1, 7, [40, 40, 60, 50], 0),  # dog, 3000 medium
    (3, 2, 3, [5, 5, 100, 80], 0),  # cat, 8000 medium
    (4, 2, 11, [60, 10, 60, 40], 1),  # crowd of birds: detections inside it are ignored, not false
    (5, 3, 11, [0, 0, 90, 90], 0),  # bird, 8100 medium
    (6, 3, 7, [20, 95, 30, 30], 0),  # dog, 900 small
    (7, 5, 3, [8, 8, 40, 40], 0),  # cat, 1600 medium; image 5 gets no detection at all
]
# image id -> [(xyxy, score, contiguous label)]; image 4 has no object, only a false detection.
DETECTIONS: Dict[int, List[Tuple[List[float], float, int]]] = {
    1: [([11, 10, 30, 31], 0.9, 0),  # cat, IoU 380 / 419 = 0.91
        ([40, 40, 100, 90], 0.8, 1),  # dog, exact
        ([70, 5, 90, 25], 0.6, 2),  # false bird
        ([42, 41, 99, 92], 0.3, 1)],  # second dog on the same object: false
    2: [([6, 5, 104, 88], 0.85, 0),  # cat, IoU 7840 / 8294 = 0.95
        ([62, 12, 118, 48], 0.7, 2),  # bird inside the crowd: ignored
        ([0, 60, 30, 90], 0.5, 0)],  # false cat
    3: [([0, 0, 88, 92], 0.95, 2),  # bird, IoU 7920 / 8276 = 0.96
        ([22, 90, 50, 125], 0.4, 1),  # dog, IoU 840 / 1040 = 0.81
        ([50, 50, 60, 60], 0.2, 0)],  # false cat
    4: [([10, 10, 30, 30], 0.65, 1)],  # false dog
    5: [],
}
BATCHES = [[1, 2], [3], [4, 5]]


def _write_gt(path) -> str:
    gt = {
        "images": [{"id": i, "width": w, "height": h, "file_name": f"{i}.jpg"} for i, w, h in IMAGES],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": crowd}
                        for a, i, c, b, crowd in ANNOTATIONS],
        "categories": [{"id": 11, "name": "bird"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
    }
    path.write_text(json.dumps(gt))
    return str(path)


def _register(json_file: str, classes=CLASSES, id_map=ID_MAP) -> str:
    name = f"test_coco_eval_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(json_file=json_file, thing_classes=list(classes),
                                  thing_dataset_id_to_contiguous_id=dict(id_map))
    return name


def _output(detections) -> Dict[str, torch.Tensor]:
    """Model output of one image: boxes (D, 4) xyxy, scores (D,), labels (D,)."""
    return {"boxes": torch.tensor([d[0] for d in detections], dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor([d[1] for d in detections], dtype=torch.float32),
            "labels": torch.tensor([d[2] for d in detections], dtype=torch.int64)}


def _run(evaluator: COCOEvaluator, detections=DETECTIONS, batches=BATCHES) -> Dict:
    evaluator.reset()
    for batch in batches:
        evaluator.process([{"image_id": i, "height": 1, "width": 1} for i in batch],
                          [_output(detections[i]) for i in batch])
    return evaluator.evaluate()


def _coco_results_by_hand(detections=DETECTIONS, batches=BATCHES) -> List[Dict]:
    """COCO results written out directly: bbox [x1, y1, x2 - x1, y2 - y1], score as float32 (the model's dtype)."""
    return [{"image_id": i, "category_id": CATEGORY_OF_LABEL[label],
             "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(np.float32(score))}
            for batch in batches for i in batch for (x1, y1, x2, y2), score, label in detections[i]]


def _cocoeval_by_hand(json_file: str, results: List[Dict]) -> Dict[str, float]:
    """pycocotools run directly: stats in percent (-1 -> NaN), per-class AP from the precision array."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iouType="bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    metrics = {n: coco_eval.stats[k] * 100 if coco_eval.stats[k] >= 0 else math.nan for k, n in enumerate(names)}
    for label, name in enumerate(CLASSES):
        # precision[iou, recall, category (params.catIds order), area "all", maxDets 100]
        p = coco_eval.eval["precision"][:, :, coco_eval.params.catIds.index(CATEGORY_OF_LABEL[label]), 0, 2]
        metrics[f"AP-{name}"] = np.mean(p[p > -1]) * 100
    return metrics


def _assert_same(got: Dict[str, float], expected: Dict[str, float]) -> None:
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert (math.isnan(got[key]) and math.isnan(value)) or got[key] == value, (key, got[key], value)


@pytest.fixture
def gt_json(tmp_path):
    return _write_gt(tmp_path / "gt.json")


@pytest.mark.parametrize("backend", ["fast", "pycocotools"])
def test_metrics_equal_cocoeval_by_hand(gt_json, caplog, backend):
    with caplog.at_level(logging.INFO, logger="retinadet.evaluation"):
        results = _run(COCOEvaluator(_register(gt_json), output_dir=None, backend=backend))
    expected = _cocoeval_by_hand(gt_json, _coco_results_by_hand())
    _assert_same(results["bbox"], expected)
    # The COCOeval summary and the per-class table are logged.
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in caplog.text
    assert re.search(rf"\| cat +\| {expected['AP-cat']:.3f} +\| dog +\| {expected['AP-dog']:.3f} ", caplog.text)
    # The case is not degenerate: imperfect but non-zero AP, and APl undefined (no large object).
    assert 0 < expected["AP"] < 100 and 0 < expected["AP-cat"] < 100 and math.isnan(expected["APl"])
    assert expected["AP50"] >= expected["AP75"] > expected["AP"]


def test_results_files(gt_json, tmp_path):
    out = tmp_path / "inference" / "set"
    name = _register(gt_json)
    evaluator = COCOEvaluator(name, output_dir=str(out))
    _run(evaluator)
    assert json.loads((out / RESULTS_FILE).read_text()) == _coco_results_by_hand()
    evaluator.evaluate()  # again: pycocotools must not have added its keys to the stored results
    assert json.loads((out / RESULTS_FILE).read_text()) == _coco_results_by_hand()
    meta = json.loads((out / RESULTS_META_FILE).read_text())
    assert meta["dataset_name"] == name and meta["json_file"] == gt_json
    assert meta["categories"] == [{"label": 0, "category_id": 3, "name": "cat"},
                                  {"label": 1, "category_id": 7, "name": "dog"},
                                  {"label": 2, "category_id": 11, "name": "bird"}]
    assert sorted(os.listdir(out)) == sorted([RESULTS_FILE, RESULTS_META_FILE])  # no temporary file left


def _perfect_detections() -> Dict[int, List]:
    """Every non-crowd object found exactly, labelled with its contiguous label."""
    perfect = {i: [] for i, _, _ in IMAGES}
    for _, image_id, category_id, (x, y, w, h), crowd in ANNOTATIONS:
        if not crowd:
            perfect[image_id].append(([x, y, x + w, y + h], 0.9, ID_MAP[category_id]))
    return perfect


def test_perfect_predictions_give_100(gt_json):
    metrics = _run(COCOEvaluator(_register(gt_json), output_dir=None), _perfect_detections())["bbox"]
    for key in ["AP", "AP50", "AP75", "APs", "APm", "AP-cat", "AP-dog", "AP-bird"]:
        # COCOeval divides by tp + fp + machine epsilon: the precision after one true detection is 1 - 2e-16.
        assert metrics[key] == pytest.approx(100.0, abs=1e-9), key
    assert math.isnan(metrics["APl"])


def test_class_without_ground_truth_is_nan(tmp_path):
    # A fourth category (fish, id 20) with no annotation: its AP is undefined, and COCOeval's AP averages
    # over the three others only, so AP is unchanged.
    gt = json.loads(Path(_write_gt(tmp_path / "gt.json")).read_text())
    gt["categories"].append({"id": 20, "name": "fish"})
    (tmp_path / "gt4.json").write_text(json.dumps(gt))
    name = _register(str(tmp_path / "gt4.json"), CLASSES + ["fish"], {**ID_MAP, 20: 3})
    metrics = _run(COCOEvaluator(name, output_dir=None))["bbox"]
    assert math.isnan(metrics["AP-fish"])
    expected = _cocoeval_by_hand(str(tmp_path / "gt.json"), _coco_results_by_hand())
    assert metrics["AP"] == pytest.approx(expected["AP"], rel=1e-12)
    assert metrics["AP-cat"] == expected["AP-cat"]


def test_label_to_category_mapping_is_used(gt_json):
    # Labels 0 and 1 of the same outputs now mean dog and cat: every cat and dog detection lands on the
    # wrong category, so AP-cat = AP-dog = 0 and AP = (0 + 0 + 100) / 3.
    swapped = _register(gt_json, ["dog", "cat", "bird"], {7: 0, 3: 1, 11: 2})
    metrics = _run(COCOEvaluator(swapped, output_dir=None), _perfect_detections())["bbox"]
    assert metrics["AP-cat"] == 0.0 and metrics["AP-dog"] == 0.0
    assert metrics["AP-bird"] == pytest.approx(100.0, abs=1e-9)
    assert metrics["AP"] == pytest.approx(100 / 3)


def test_no_detection_at_all_scores_zero(gt_json, caplog):
    empty = {i: [] for i, _, _ in IMAGES}
    with caplog.at_level(logging.WARNING, logger="retinadet.evaluation"):
        metrics = _run(COCOEvaluator(_register(gt_json), output_dir=None), empty)["bbox"]
    assert "no detection" in caplog.text
    for key in ["AP", "AP50", "AP75", "APs", "APm", "AP-cat", "AP-dog", "AP-bird"]:
        assert metrics[key] == 0.0, key
    assert math.isnan(metrics["APl"])


def test_nothing_processed_returns_empty_dict(gt_json, caplog):
    with caplog.at_level(logging.WARNING, logger="retinadet.evaluation"):
        assert COCOEvaluator(_register(gt_json), output_dir=None).evaluate() == {}
    assert "received no images" in caplog.text


def test_reset_and_repeated_images(gt_json, caplog):
    evaluator = COCOEvaluator(_register(gt_json), output_dir=None)
    _run(evaluator, _perfect_detections())  # forgotten by the reset inside the next _run
    with caplog.at_level(logging.WARNING, logger="retinadet.evaluation"):
        metrics = _run(evaluator, batches=BATCHES + [[3]])["bbox"]
    assert "1 images were processed more than once" in caplog.text
    _assert_same(metrics, _cocoeval_by_hand(gt_json, _coco_results_by_hand()))


def test_unprocessed_images_count_as_missed(gt_json, caplog):
    # Image 5 (one cat) is never processed: COCOeval still sees it, exactly as with no detection there.
    with caplog.at_level(logging.WARNING, logger="retinadet.evaluation"):
        metrics = _run(COCOEvaluator(_register(gt_json), output_dir=None), batches=[[1, 2], [3], [4]])["bbox"]
    assert "1 of the 5 images" in caplog.text
    _assert_same(metrics, _cocoeval_by_hand(gt_json, _coco_results_by_hand()))


def test_errors_name_the_bad_value(gt_json, tmp_path):
    evaluator = COCOEvaluator(_register(gt_json), output_dir=None)
    with pytest.raises(ValueError, match=r"image 1 .*label 3; valid labels are 0\.\.2"):
        evaluator.process([{"image_id": 1}], [_output([([0, 0, 5, 5], 0.5, 3)])])
    with pytest.raises(ValueError, match="2 inputs but 1 outputs"):
        evaluator.process([{"image_id": 1}, {"image_id": 2}], [_output([])])
    evaluator.process([{"image_id": 999}], [_output([([0, 0, 5, 5], 0.5, 0)])])
    with pytest.raises(ValueError, match=r"image ids \[999\].*gt\.json"):
        evaluator.evaluate()

    no_json = f"test_coco_eval_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(no_json).set(thing_classes=CLASSES)
    with pytest.raises(ValueError, match=f"'{no_json}' has no json_file"):
        COCOEvaluator(no_json)
    with pytest.raises(ValueError, match="one-to-one"):
        COCOEvaluator(_register(gt_json, CLASSES, {3: 0, 7: 0, 11: 2}))
    with pytest.raises(ValueError, match=r"category ids \[5\].*has \[3, 7, 11\]"):
        _run(COCOEvaluator(_register(gt_json, CLASSES, {3: 0, 7: 1, 5: 2}), output_dir=None))


def test_backend_choice_and_bad_boxes(gt_json, monkeypatch, caplog):
    name = _register(gt_json)
    with pytest.raises(ValueError, match=r"backend 'pycocotool' \(TEST.EVALUATOR_BACKEND\).*did you mean 'pycocotools'"):
        COCOEvaluator(name, backend="pycocotool")
    cfg = get_cfg()
    cfg.TEST.EVALUATOR_BACKEND = "pycocotools"
    assert COCOEvaluator.from_config(cfg, name)["backend"] == "pycocotools"
    # A NaN box from a diverged model: an error naming the detection, never a silently wrong AP.
    evaluator = COCOEvaluator(name, output_dir=None)
    evaluator.process([{"image_id": 1}], [_output([([0, 0, float("nan"), 5], 0.5, 0)])])
    with pytest.raises(ValueError, match=r"detections of data set '.*'\[0\] \(image_id 1\) has bbox \[0.0, 0.0, nan, 5.0\]"):
        evaluator.evaluate()
    # Without the compiled module the fast backend runs pycocotools, says why once, same metrics.
    from retinadet.evaluation import compiled

    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "_load_error", "ImportError('no module _cocoeval')")
    monkeypatch.setattr(compiled, "_fallback_reported", False)
    with caplog.at_level(logging.WARNING, logger="retinadet.evaluation"):
        fallback = _run(COCOEvaluator(name, output_dir=None))
        _run(COCOEvaluator(name, output_dir=None))
    _assert_same(fallback["bbox"], _cocoeval_by_hand(gt_json, _coco_results_by_hand()))
    assert caplog.text.count("no module _cocoeval") == 1


def test_classes_from_a_lazily_registered_data_set(gt_json):
    name = f"test_coco_eval_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(json_file=gt_json)

    def load() -> List[Dict]:
        # What a lazy COCO loader does: the classes become known when the json is read.
        MetadataCatalog.get(name).set(thing_classes=CLASSES, thing_dataset_id_to_contiguous_id=ID_MAP)
        return []

    DatasetCatalog.register(name, load)
    try:
        metrics = _run(COCOEvaluator(name, output_dir=None), _perfect_detections())["bbox"]
    finally:
        DatasetCatalog.remove(name)
    assert metrics["AP"] == pytest.approx(100.0, abs=1e-9)


def test_output_dir_from_config(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "run")
    assert default_output_dir(cfg, "coco_val") == os.path.join(str(tmp_path / "run"), "inference", "coco_val")
    args = COCOEvaluator.from_config(cfg, "coco_val")
    assert args == {"dataset_name": "coco_val", "output_dir": default_output_dir(cfg, "coco_val"), "distributed": True,
                    "backend": "fast"}


class _FixedModel(torch.nn.Module):
    """Returns DETECTIONS for the image ids of its batch."""

    def forward(self, batch):
        return [_output(DETECTIONS[x["image_id"]]) for x in batch]


def test_through_inference_on_dataset(gt_json):
    loader = [[{"image_id": i} for i in batch] for batch in BATCHES]
    results = inference_on_dataset(_FixedModel(), loader, COCOEvaluator(_register(gt_json), output_dir=None))
    _assert_same(results["bbox"], _cocoeval_by_hand(gt_json, _coco_results_by_hand()))
    assert isinstance(COCOEvaluator(_register(gt_json)), DatasetEvaluator)


def _distributed_worker(rank: int, init_file: str, json_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        evaluator = COCOEvaluator(_register(json_file), output_dir=out_dir, distributed=True)
        # Each rank sees about half of the images, as an inference sampler would split them.
        results = _run(evaluator, batches=[[[1], [3, 5]], [[2], [4]]][rank])
        with open(os.path.join(out_dir, f"returned_by_rank{rank}.json"), "w") as f:
            json.dump(results, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_into_the_single_process_metrics(gt_json, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(_distributed_worker, args=(str(tmp_path / "init"), gt_json, str(out)), nprocs=2, join=True)
    single = _run(COCOEvaluator(_register(gt_json), output_dir=None))
    _assert_same(json.loads((out / "returned_by_rank0.json").read_text())["bbox"], single["bbox"])
    assert json.loads((out / "returned_by_rank1.json").read_text()) == {}
    written = json.loads((out / RESULTS_FILE).read_text())
    key = lambda r: (r["image_id"], r["score"])  # noqa: E731
    assert sorted(written, key=key) == sorted(_coco_results_by_hand(), key=key)

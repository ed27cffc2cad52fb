"""COCO box AP of a detector's outputs against the data set's json: the fast compiled COCOeval
(retinadet.evaluation.fast_cocoeval) or pycocotools' own, with the same numbers."""
import contextlib
import difflib
import io
import itertools
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval as PycocotoolsCOCOeval
from tabulate import tabulate

from retinadet.data.catalog import DatasetCatalog, MetadataCatalog
from retinadet.utils import comm
from retinadet.utils.file_io import atomic_write, atomic_write_json

from .coco_results import DetectionResults
from .evaluator import DatasetEvaluator, default_output_dir
from .fast_cocoeval import COCOeval

__all__ = ["COCOEvaluator", "EVALUATOR_BACKENDS", "RESULTS_FILE", "RESULTS_META_FILE"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "coco_instances_results.json"
RESULTS_META_FILE = "coco_instances_results.meta.json"
# COCOeval.stats[0:6] in order, under detectron2's names.
_SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# TEST.EVALUATOR_BACKEND -> the COCOeval class that computes the AP (equal numbers; "fast" falls back
# to pycocotools, with a warning, when its compiled module was not built).
EVALUATOR_BACKENDS = {"fast": COCOeval, "pycocotools": PycocotoolsCOCOeval}


def _percent(value: float) -> float:
    # COCOeval marks undefined values (no ground truth in that area range or class) with -1.
    return float(value * 100) if value >= 0 else float("nan")


def _class_metadata(dataset_name: str) -> Tuple[List[str], Dict[int, int]]:
    """(thing_classes, thing_dataset_id_to_contiguous_id) of ``dataset_name``, checked to agree."""
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("thing_classes") is None or meta.get("thing_dataset_id_to_contiguous_id") is None:
        if dataset_name in DatasetCatalog:
            # COCO sets are registered lazily and learn their classes from the json when first loaded.
            DatasetCatalog.get(dataset_name)
    classes = meta.get("thing_classes")
    id_map = meta.get("thing_dataset_id_to_contiguous_id")
    if classes is None or id_map is None:
        raise ValueError(
            f"Metadata of data set '{dataset_name}' lacks thing_classes and/or thing_dataset_id_to_contiguous_id "
            f"(it has {sorted(meta.as_dict())}); COCOEvaluator needs both to map labels back to category ids. "
            "Register the set with retinadet.data.coco.register_coco_instances or set them on its metadata."
        )
    id_map = {int(category_id): int(label) for category_id, label in id_map.items()}
    if sorted(id_map.values()) != list(range(len(classes))):
        raise ValueError(
            f"Metadata of data set '{dataset_name}': thing_dataset_id_to_contiguous_id {id_map} must map its "
            f"category ids one-to-one onto the labels 0..{len(classes) - 1} of thing_classes {list(classes)}."
        )
    return list(classes), id_map


class COCOEvaluator(DatasetEvaluator):
    """COCO box AP (COCOeval, iouType "bbox") of a detector on a COCO-format data set.

    Outputs are turned into COCO results (``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``,
    boxes in absolute pixels of the original image), gathered on rank 0 and evaluated against the
    data set's ``json_file`` over every image of the json, with or without detections.
    ``evaluate()`` returns ``{"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"}}``
    in percent; a metric without ground truth to measure it (an area range or class absent from
    the json) is NaN. When the model made no detection at all, COCOeval still runs (on an empty
    result set) and the metrics are 0 where ground truth exists: a model that finds nothing scores
    0, not NaN, so it can never look better than a model that finds something.

    With ``output_dir``, rank 0 writes ``coco_instances_results.json`` (standard COCO results) and
    ``coco_instances_results.meta.json`` (data set, json file, class names and their category ids).

    ``backend`` "fast" (the default) computes the AP with ``retinadet.evaluation.COCOeval``, from the
    detections held as arrays; "pycocotools" with pycocotools' ``COCOeval`` after ``loadRes``. Both
    give the same numbers.
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, distributed: bool = True,
                 backend: str = "fast") -> None:
        """
        Args:
            dataset_name: a name in MetadataCatalog with ``json_file``, ``thing_classes`` and
                ``thing_dataset_id_to_contiguous_id``.
            output_dir: folder for the results files; None writes nothing.
            distributed: gather every rank's predictions on rank 0 (the others return {});
                False evaluates what this process saw.
            backend: "fast" or "pycocotools" (TEST.EVALUATOR_BACKEND).
        """
        if backend not in EVALUATOR_BACKENDS:
            close = difflib.get_close_matches(str(backend), EVALUATOR_BACKENDS, n=1)
            raise ValueError(f"COCOEvaluator backend {backend!r} (TEST.EVALUATOR_BACKEND); valid: "
                             f"{', '.join(map(repr, EVALUATOR_BACKENDS))}"
                             + (f" (did you mean {close[0]!r}?)" if close else "") + ".")
        self._backend = backend
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._json_file = MetadataCatalog.get(dataset_name).get("json_file")
        if self._json_file is None:
            raise ValueError(
                f"Metadata of data set '{dataset_name}' has no json_file; COCOEvaluator needs the COCO-format "
                "ground truth. Register the set with retinadet.data.coco.register_coco_instances(name, "
                "json_file, image_root) or set MetadataCatalog.get(name).set(json_file=...)."
            )
        self._class_names, id_map = _class_metadata(dataset_name)
        # Label -> original category id: labels are contiguous, category ids need not be.
        self._label_to_category = [0] * len(self._class_names)
        for category_id, label in id_map.items():
            self._label_to_category[label] = category_id
        self._coco_gt: Optional[COCO] = None
        self._predictions: List[Dict[str, Any]] = []

    @classmethod
    def from_config(cls, cfg: Any, dataset_name: str) -> Dict[str, Any]:
        """Arguments for ``dataset_name``, writing under ``cfg.OUTPUT_DIR/inference/<dataset_name>``."""
        return {"dataset_name": dataset_name, "output_dir": default_output_dir(cfg, dataset_name), "distributed": True,
                "backend": cfg.TEST.EVALUATOR_BACKEND}

    def reset(self) -> None:
        """Forget the predictions of earlier passes."""
        self._predictions = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Keep one batch of outputs as COCO results (arrays), keyed by each input's ``"image_id"``.

        Args:
            inputs: one dict per image with ``"image_id"``.
            outputs: one dict per image: ``"boxes"`` (D, 4) xyxy absolute pixels of the original image,
                ``"scores"`` (D,), ``"labels"`` (D,) contiguous in [0, num_classes).
        """
        if len(inputs) != len(outputs):
            raise ValueError(f"COCOEvaluator.process got {len(inputs)} inputs but {len(outputs)} outputs; "
                             "the model must return one dict per input image.")
        for inputs_per_image, output in zip(inputs, outputs):
            if "image_id" not in inputs_per_image:
                raise KeyError("COCOEvaluator needs 'image_id' in every input dict; "
                               f"got keys {sorted(inputs_per_image)}.")
            image_id = int(inputs_per_image["image_id"])
            self._predictions.append(self._to_coco_results(image_id, output))

    def _to_coco_results(self, image_id: int, output: Dict[str, Any]) -> Dict[str, Any]:
        """One image's output as COCO results: ``image_id``, ``boxes`` (D, 4) float64 xywh, ``scores`` (D,)
        float64 and ``category_ids`` (D,) int64 (labels mapped to the json's category ids)."""
        boxes = torch.as_tensor(output["boxes"]).detach().to("cpu", torch.float64)
        scores = torch.as_tensor(output["scores"]).detach().to("cpu", torch.float64)
        labels = torch.as_tensor(output["labels"]).detach().to("cpu", torch.int64)
        num = boxes.shape[0]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (num,) or labels.shape != (num,):
            raise ValueError(
                f"Output of image {image_id} (data set '{self._dataset_name}') has boxes {tuple(boxes.shape)}, "
                f"scores {tuple(scores.shape)}, labels {tuple(labels.shape)}; expected (D, 4), (D,), (D,)."
            )
        bad = (labels < 0) | (labels >= len(self._class_names))
        if bad.any():
            raise ValueError(
                f"Output of image {image_id} (data set '{self._dataset_name}') has label {int(labels[bad][0])}; "
                f"valid labels are 0..{len(self._class_names) - 1} ({len(self._class_names)} classes)."
            )
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
        categories = np.asarray(self._label_to_category, dtype=np.int64)[labels.numpy()]
        return {"image_id": image_id, "boxes": xywh.numpy(), "scores": scores.numpy(), "category_ids": categories}

    def evaluate(self) -> Dict[str, Any]:
        """``{"bbox": {metric: percent}}`` on rank 0 (or every rank when not distributed); {} elsewhere,
        and {} with a warning when no image was processed anywhere."""
        predictions = self._predictions
        if self._distributed and comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(predictions, dst=0)
            if not comm.is_main_process():
                return {}
            predictions = list(itertools.chain.from_iterable(gathered))
        if not predictions:
            logger.warning("COCOEvaluator of data set '%s' received no images; nothing to evaluate.",
                           self._dataset_name)
            return {}
        predictions = self._drop_repeated_images(predictions)
        coco_gt = self._load_ground_truth()
        self._check_image_ids({p["image_id"] for p in predictions}, set(coco_gt.getImgIds()))
        results = self._detection_results(coco_gt, predictions)
        if self._output_dir:
            self._write_results(results)
        coco_eval = self._run_cocoeval(coco_gt, results)
        metrics = self._derive_metrics(coco_eval)
        return {"bbox": metrics}

    def _detection_results(self, coco_gt: COCO, predictions: List[Dict[str, Any]]) -> DetectionResults:
        """Every image's results as one checked DetectionResults (a NaN or negative-size box is refused)."""
        counts = [len(p["scores"]) for p in predictions]
        return DetectionResults.from_arrays(
            coco_gt, np.repeat([p["image_id"] for p in predictions], counts).astype(np.int64),
            np.concatenate([p["boxes"] for p in predictions]).reshape(-1, 4),
            np.concatenate([p["scores"] for p in predictions]),
            np.concatenate([p["category_ids"] for p in predictions]),
            source=f"detections of data set '{self._dataset_name}'")

    def _drop_repeated_images(self, predictions: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        # A sampler that pads ranks to equal length repeats images; counting them twice would skew AP.
        seen: Set[int] = set()
        unique = []
        for prediction in predictions:
            if prediction["image_id"] not in seen:
                seen.add(prediction["image_id"])
                unique.append(prediction)
        if len(unique) != len(predictions):
            logger.warning("COCOEvaluator of data set '%s': %d images were processed more than once; "
                           "only their first outputs are evaluated.",
                           self._dataset_name, len(predictions) - len(unique))
        return unique

    def _load_ground_truth(self) -> COCO:
        """The COCO object of the json (loaded once, on the evaluating rank only), checked against the metadata."""
        if self._coco_gt is None:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
                coco_gt = COCO(g_pathmgr.get_local_path(self._json_file))
            json_ids = set(coco_gt.getCatIds())
            unknown = [c for c in self._label_to_category if c not in json_ids]
            if unknown:
                raise ValueError(
                    f"Data set '{self._dataset_name}': category ids {unknown} of thing_dataset_id_to_contiguous_id "
                    f"are not categories of {self._json_file}, which has {sorted(json_ids)}."
                )
            self._coco_gt = coco_gt
        return self._coco_gt

    def _check_image_ids(self, processed: Set[int], in_json: Set[int]) -> None:
        unknown = sorted(processed - in_json)
        if unknown:
            raise ValueError(
                f"Data set '{self._dataset_name}': image ids {unknown[:5]} ({len(unknown)} in all) were processed "
                f"but are not images of {self._json_file} ({len(in_json)} images); is the loader reading "
                "another data set?"
            )
        missing = len(in_json - processed)
        if missing:
            logger.warning("COCOEvaluator of data set '%s': %d of the %d images of %s were not processed; "
                           "COCOeval counts their objects as missed.", self._dataset_name, missing, len(in_json),
                           self._json_file)

    def _write_results(self, results: DetectionResults) -> None:
        os.makedirs(self._output_dir, exist_ok=True)
        path = os.path.join(self._output_dir, RESULTS_FILE)
        text = results.to_json()
        with atomic_write(path, "wb") as f:
            f.write(text)
        categories = [{"label": label, "category_id": category_id, "name": name} for label, (category_id, name)
                      in enumerate(zip(self._label_to_category, self._class_names))]
        meta = {"dataset_name": self._dataset_name, "json_file": self._json_file, "results_file": RESULTS_FILE,
                "categories": categories}
        atomic_write_json(os.path.join(self._output_dir, RESULTS_META_FILE), meta)
        logger.info("Wrote %d COCO results to %s.", len(results), path)

    def _run_cocoeval(self, coco_gt: COCO, results: DetectionResults) -> Any:
        """The backend's COCOeval (iouType "bbox") after evaluate(), accumulate() and summarize(), over
        every json image."""
        if not len(results):
            logger.warning("COCOEvaluator of data set '%s': the model made no detection; every AP with "
                           "ground truth is 0.", self._dataset_name)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = results if self._backend == "fast" else results.to_coco(coco_gt)
            coco_eval = EVALUATOR_BACKENDS[self._backend](coco_gt, coco_dt, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            coco_eval.summarize()
        logger.info("COCO box evaluation of data set '%s':\n%s", self._dataset_name, summary.getvalue().rstrip())
        return coco_eval

    def _derive_metrics(self, coco_eval: Any) -> Dict[str, float]:
        """Summary metrics and per-class AP in percent (NaN where undefined); logs both as tables."""
        metrics = {name: _percent(coco_eval.stats[i]) for i, name in enumerate(_SUMMARY_METRICS)}
        logger.info("Box AP of data set '%s':\n%s", self._dataset_name,
                    tabulate([[f"{metrics[n]:.3f}" for n in _SUMMARY_METRICS]], headers=_SUMMARY_METRICS,
                             tablefmt="pipe", disable_numparse=True))
        # precision: (IoU thresholds, recall points, categories in params.catIds order, area ranges, max dets);
        # AP of a class is the mean over IoUs and recalls at area "all" and the largest max-dets.
        precision = coco_eval.eval["precision"]
        cat_ids = list(coco_eval.params.catIds)
        per_class = []
        for name, category_id in zip(self._class_names, self._label_to_category):
            values = precision[:, :, cat_ids.index(category_id), 0, -1]
            values = values[values > -1]
            per_class.append((name, float(np.mean(values) * 100) if values.size else float("nan")))
        metrics.update({f"AP-{name}": ap for name, ap in per_class})
        logger.info("Per-class box AP of data set '%s':\n%s", self._dataset_name, _per_class_table(per_class))
        return metrics


def _per_class_table(per_class: Sequence[Tuple[str, float]], pairs_per_row: int = 3) -> str:
    """A pipe table of (class, AP) pairs, ``pairs_per_row`` pairs side by side to keep it short."""
    cells = [cell for name, ap in per_class for cell in (name, f"{ap:.3f}")]
    width = 2 * pairs_per_row
    rows = [cells[i:i + width] for i in range(0, len(cells), width)]
    headers = ["category", "AP"] * min(pairs_per_row, len(per_class))
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)

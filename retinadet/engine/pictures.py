"""PredictionPictures: after training, the detections of a few test images drawn into OUTPUT_DIR/pictures."""
import contextlib
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from .train_loop import HookBase

__all__ = ["PredictionPictures"]

logger = logging.getLogger("retinadet.engine")


class PredictionPictures(HookBase):
    """When training completes, runs the model on the first ``num_images`` images of
    ``dataset_name`` and writes ``<output_dir>/<image name>.png`` with detections scoring above
    ``score_thresh`` (class name and score on each box) next to the ground truth (white boxes).

    Args:
        model: the detector (not DDP-wrapped).
        dataset_dicts: the data set's dicts (file_name, height, width, boxes).
        mapper: callable(dataset_dict) -> model input dict (the test-time DatasetMapper).
        class_names: names of the labels, or None to print numbers.
        weights: optional callable returning a context in which ``model`` holds the weights to draw
            with (the trainer's ``evaluation_weights``, e.g. the EMA's); default: its own.
    """

    def __init__(self, model: nn.Module, dataset_dicts: Sequence[dict], mapper, output_dir: str,
                 num_images: int, score_thresh: float, class_names: Optional[List[str]] = None,
                 weights=None) -> None:
        self.model = model
        self.weights = weights
        self.dataset_dicts = list(dataset_dicts)[:num_images]
        self.mapper = mapper
        self.output_dir = output_dir
        self.score_thresh = score_thresh
        self.class_names = class_names

    @classmethod
    def from_config(cls, cfg: Any, trainer: Any) -> Dict[str, Any]:
        """Arguments for pictures of DATASETS.TEST[0] into OUTPUT_DIR/pictures (TEST.VIS_IMAGES,
        TEST.VIS_SCORE_THRESH), of the trainer's model with its evaluation weights."""
        from retinadet.data import DatasetCatalog, DatasetMapper, MetadataCatalog

        name = cfg.DATASETS.TEST[0]
        return {
            "model": trainer.model_without_ddp,
            "dataset_dicts": DatasetCatalog.get(name)[: cfg.TEST.VIS_IMAGES],
            "mapper": DatasetMapper(**DatasetMapper.from_config(cfg, is_train=False, dataset_name=name)),
            "output_dir": os.path.join(cfg.OUTPUT_DIR, "pictures"),
            "num_images": cfg.TEST.VIS_IMAGES,
            "score_thresh": cfg.TEST.VIS_SCORE_THRESH,
            "class_names": MetadataCatalog.get(name).get("thing_classes"),
            "weights": getattr(trainer, "evaluation_weights", None),
        }

    def after_train(self) -> None:
        if self.trainer.exception is not None or self.trainer.completed < self.trainer.max_iter:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        weights = self.weights() if self.weights is not None else contextlib.nullcontext()
        with weights:
            self._draw_all()
        logger.info("Detections on %d images of the test set drawn into %s", len(self.dataset_dicts), self.output_dir)

    def _draw_all(self) -> None:
        from retinadet.data import read_image
        from retinadet.utils.visualizer import draw_boxes, save_png

        training = self.model.training
        self.model.eval()
        try:
            for d in self.dataset_dicts:
                with torch.no_grad():
                    out = self.model([self.mapper(d)])[0]
                keep = out["scores"] > self.score_thresh
                image = read_image(d["file_name"], "RGB")
                gt = d.get("boxes")
                if gt is not None and len(gt):
                    image = draw_boxes(image, gt, None, None, None, line_width=1)
                drawn = draw_boxes(image, out["boxes"][keep].cpu().numpy(), out["labels"][keep].tolist(),
                                   out["scores"][keep].tolist(), self.class_names)
                name = os.path.splitext(os.path.basename(d["file_name"]))[0] + ".png"
                save_png(drawn, os.path.join(self.output_dir, name))
        finally:
            self.model.train(training)

"""DefaultTrainer: a SimpleTrainer built from a config, with checkpoints, evaluation and default hooks."""
import contextlib
import logging
import weakref
from collections import OrderedDict
from typing import Any, Dict, Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from retinadet.checkpoint.checkpointer import DetectionCheckpointer
from retinadet.config import CfgNode
from retinadet.data import MetadataCatalog
from retinadet.data.build import build_detection_test_loader, build_detection_train_loader
from retinadet.evaluation import COCOEvaluator, inference_on_dataset
from retinadet.modeling import build_model
from retinadet.solver import build_lr_scheduler, build_model_ema, build_optimizer
from retinadet.utils import comm

from .defaults import build_default_hooks, default_writers
from .train_loop import SimpleTrainer

__all__ = ["DefaultTrainer", "build_evaluator", "create_ddp_model", "prepare_generated_datasets"]

logger = logging.getLogger("retinadet.engine")


def create_ddp_model(model: nn.Module) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when several processes run, else ``model``.

    Buffers are not broadcast from rank 0 each step (each process keeps its own, as detectron2 does);
    parameters start equal because DDP broadcasts them once at construction."""
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def build_evaluator(cfg: CfgNode, dataset_name: str):
    """The evaluator of ``dataset_name``, by its metadata ``evaluator_type`` (default "coco")."""
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type", "coco")
    if evaluator_type != "coco":
        raise ValueError(
            f"Data set '{dataset_name}' has evaluator_type {evaluator_type!r}; retinadet evaluates 'coco' "
            "(COCO-format json). Override DefaultTrainer.build_evaluator for other kinds."
        )
    return COCOEvaluator(**COCOEvaluator.from_config(cfg, dataset_name))


def prepare_generated_datasets(cfg: CfgNode) -> None:
    """Write the embedded shapes splits named in DATASETS.TRAIN / TEST from the main process while the
    others wait, so several processes never generate the same files at once."""
    from retinadet.data import DatasetCatalog, register_builtin_datasets
    from retinadet.data.shapes import SHAPES_SPLITS

    register_builtin_datasets(cfg)
    if comm.get_world_size() == 1:
        return
    if comm.is_main_process():
        for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
            if name in SHAPES_SPLITS:
                DatasetCatalog.get(name)
    comm.synchronize()


def _print_results(results: Dict[str, Any]) -> None:
    for dataset_name, tasks in results.items():
        for task, metrics in tasks.items():
            summary = "  ".join(f"{k}={v:.2f}" for k, v in metrics.items() if "-" not in k)
            logger.info("Evaluation of %s (%s): %s", dataset_name, task, summary)


class DefaultTrainer(SimpleTrainer):
    """Builds model (DDP-wrapped with several processes), optimizer, LR schedule, training loader,
    checkpointer and the default hooks from ``cfg``, then trains for SOLVER.MAX_ITER iterations.

    Typical use::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()

    Override ``build_model`` / ``build_optimizer`` / ``build_train_loader`` / ``build_evaluator`` /
    ``build_hooks`` to change one part. Checkpoints hold the model (and its non-persistent buffers such
    as the loss normaliser), optimizer, LR schedule, AMP scaler, iteration, random generators, the
    loader's position and the class names.
    """

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        prepare_generated_datasets(cfg)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        clip = cfg.SOLVER.CLIP_GRADIENTS
        super().__init__(
            create_ddp_model(model), data_loader, optimizer, amp=cfg.SOLVER.AMP.ENABLED,
            clip_gradients={"type": clip.CLIP_TYPE, "value": clip.CLIP_VALUE, "norm_type": clip.NORM_TYPE}
            if clip.ENABLED else None,
        )
        self.model_without_ddp = model
        self.scheduler = build_lr_scheduler(cfg, optimizer)
        self.ema = build_model_ema(cfg, model)
        extra = {"model_ema": self.ema} if self.ema is not None else {}
        self.checkpointer = DetectionCheckpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(), trainer=weakref.proxy(self), **extra
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ parts
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """The model with its initial weights (MODEL.WEIGHTS is loaded by ``resume_or_load``)."""
        no_weights = cfg.clone()
        no_weights.defrost()
        no_weights.MODEL.WEIGHTS = ""
        model = build_model(no_weights)
        logger.info("Model %s: %s parameters.", cfg.MODEL.META_ARCHITECTURE,
                    f"{sum(p.numel() for p in model.parameters()):,}")
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_detection_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str):
        return build_evaluator(cfg, dataset_name)

    def build_writers(self) -> list:
        return default_writers(self.cfg, self.max_iter, device=self.device)

    def build_hooks(self) -> list:
        return build_default_hooks(self.cfg, self)

    def evaluation_weights(self):
        """A context in which ``model_without_ddp`` holds the weights to evaluate: the EMA's when
        MODEL_EMA.ENABLED, else its own."""
        if self.ema is None:
            return contextlib.nullcontext(self.model_without_ddp)
        return self.ema.applied_to(self.model_without_ddp)

    def checkpoint_extra(self) -> Dict[str, Any]:
        """Data stored in every checkpoint besides the training state: {"meta": {"thing_classes": ...}}."""
        names = None
        if self.cfg.DATASETS.TRAIN:
            names = MetadataCatalog.get(self.cfg.DATASETS.TRAIN[0]).get("thing_classes")
        return {"meta": {"thing_classes": list(names) if names else [], "config": self.cfg.dump()}}

    # ------------------------------------------------------------------ running
    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and a checkpoint in OUTPUT_DIR, continue from it (model, optimizer, schedule,
        iteration, loader position, random generators); otherwise load MODEL.WEIGHTS (if any) into the
        model and start at iteration 0."""
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        self.start_iter = self.completed if resume else 0
        if resume and self.start_iter > 0:
            logger.info("Resumed at iteration %d of %d.", self.start_iter, self.max_iter)

    def train(self) -> Optional[Dict[str, Any]]:
        """Train from ``start_iter`` to SOLVER.MAX_ITER; returns the final evaluation results (main
        process), or None when there is no test set or training stopped early."""
        if self.start_iter >= self.max_iter:
            logger.info("Nothing to train: the checkpoint is at iteration %d of %d.", self.start_iter, self.max_iter)
        super().train(self.start_iter, self.max_iter)
        for h in self.hooks:
            if hasattr(h, "last_results") and h.last_results:
                return h.last_results
        return None

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module) -> Dict[str, Any]:
        """Evaluate ``model`` on every DATASETS.TEST set. Returns ``{task: {metric: value}}`` for one
        set, ``{dataset: {task: ...}}`` for several ({} on processes other than the main one)."""
        results: Dict[str, Any] = OrderedDict()
        for dataset_name in cfg.DATASETS.TEST:
            loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = cls.build_evaluator(cfg, dataset_name)
            results[dataset_name] = inference_on_dataset(model, loader, evaluator)
        if not comm.is_main_process():
            return {}
        _print_results(results)
        if len(results) == 1:
            return next(iter(results.values()))
        return dict(results)

"""The pieces every training script shares: the argument parser, ``setup(args) -> cfg`` and the
default hook list."""
import argparse
import contextlib
import functools
import logging
import os
import sys
from typing import Any, Dict, List, Optional

import torch

from retinadet.config import CfgNode, get_cfg
from retinadet.utils import comm
from retinadet.utils.logger import setup_logger
from retinadet.utils.rng import seed_all_rng
from retinadet.utils.run_lock import lock_output_dir

from . import hooks
from .train_loop import HookBase
from ..utils.file_io import atomic_write_text

__all__ = [
    "apply_batch_size_scaling",
    "build_default_hooks",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "evaluate_trainer",
    "setup",
]

logger = logging.getLogger("retinadet.engine")


def default_argument_parser(description: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's command line: --config-file, --resume, --eval-only, --num-gpus, --num-machines,
    --machine-rank, --dist-url, then ``KEY VALUE`` config overrides."""
    parser = argparse.ArgumentParser(
        description=description or "retinadet training and evaluation",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "Examples:\n"
            "  retinadet-train --config-file shapes/retinanet_R_18_FPN.yaml  # a model-zoo name, or a YAML path\n"
            "  retinadet-train --config-file cfg.yaml --resume      # continue OUTPUT_DIR's last checkpoint\n"
            "  retinadet-train --config-file cfg.yaml --eval-only MODEL.WEIGHTS output/model_final.pth\n"
            "  retinadet-train --config-file cfg.yaml --num-gpus 2  # 2 processes (gloo on CPU, NCCL on GPU)\n"
            "  torchrun --nproc_per_node 2 -m retinadet.engine.train_net --config-file cfg.yaml\n"
            "(retinadet-train, python -m retinadet.engine.train_net and python tools/train_net.py are the same.)\n"
        ),
    )
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="path to the YAML config, or a model-zoo name such as shapes/retinanet_R_18_FPN.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in OUTPUT_DIR (from scratch, with a warning, if none)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS on DATASETS.TEST and exit")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine (one per GPU; on a machine without GPUs, CPU processes)")
    parser.add_argument("--num-machines", type=int, default=1, help="machines in the job")
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines - 1)")
    parser.add_argument("--dist-url", default="auto",
                        help="tcp://host:port of machine 0 for the process group; 'auto' picks a free local port")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.005 OUTPUT_DIR out/")
    return parser


def _config_file(path: str) -> str:
    """The file ``--config-file`` names: a path that exists, else a model-zoo name
    (``shapes/retinanet_R_18_FPN.yaml``, retinadet.model_zoo). SystemExit with the closest names otherwise."""
    from .. import model_zoo

    if not path:
        raise SystemExit(
            "error: --config-file is required, e.g. --config-file shapes/retinanet_R_18_FPN.yaml (a model-zoo "
            "name; retinadet.model_zoo.list_config_files() lists them) or a path to a YAML file."
        )
    try:
        return model_zoo.resolve_config(path, what="--config-file")
    except model_zoo.ConfigNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


def apply_batch_size_scaling(cfg: CfgNode) -> CfgNode:
    """The linear scaling rule: when SOLVER.REFERENCE_IMS_PER_BATCH > 0 differs from
    SOLVER.IMS_PER_BATCH (k times it), multiply BASE_LR (and BASE_LR_END) by k and divide MAX_ITER,
    STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD and TEST.EVAL_PERIOD by k (rounded, at least 1 where
    positive), so the run sees the same number of images at the same per-image LR. Sets
    REFERENCE_IMS_PER_BATCH to IMS_PER_BATCH, so applying it twice changes nothing. ``cfg`` must not
    be frozen; returns it."""
    s = cfg.SOLVER
    reference = s.REFERENCE_IMS_PER_BATCH
    if reference <= 0 or reference == s.IMS_PER_BATCH:
        return cfg
    k = s.IMS_PER_BATCH / reference

    def scaled(n: int) -> int:
        return max(1, int(round(n / k))) if n > 0 else n

    old = (s.BASE_LR, s.MAX_ITER)
    s.BASE_LR *= k
    s.BASE_LR_END *= k
    s.MAX_ITER = scaled(s.MAX_ITER)
    s.STEPS = tuple(scaled(x) for x in s.STEPS)
    s.WARMUP_ITERS = scaled(s.WARMUP_ITERS) if s.WARMUP_ITERS > 0 else 0
    s.CHECKPOINT_PERIOD = scaled(s.CHECKPOINT_PERIOD)
    cfg.TEST.EVAL_PERIOD = scaled(cfg.TEST.EVAL_PERIOD)
    s.REFERENCE_IMS_PER_BATCH = s.IMS_PER_BATCH
    logger.info(
        "Linear scaling for IMS_PER_BATCH %d (config written for %d): BASE_LR %g -> %g, MAX_ITER %d -> %d.",
        s.IMS_PER_BATCH, reference, old[0], s.BASE_LR, old[1], s.MAX_ITER,
    )
    return cfg


def _check_paths(cfg: CfgNode) -> None:
    if cfg.MODEL.WEIGHTS.startswith(("detectron2://", "http://", "https://")):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} is a URL (detectron2's model-zoo configs name their ImageNet or "
            "trained weights so); retinadet downloads nothing. Download the file and give its local path "
            "(MODEL.WEIGHTS /path/to/model.pkl on the command line), or \"\" to start from random weights."
        )
    if cfg.MODEL.WEIGHTS and "://" not in cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(
            f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r} does not exist (cwd: {os.getcwd()}). Give a checkpoint file "
            "(retinadet, torchvision or detectron2 layout), or \"\" to start from random weights."
        )


def _write_config(cfg: CfgNode, path: str) -> None:
    atomic_write_text(path, cfg.dump())


def default_setup(cfg: CfgNode, args: Optional[argparse.Namespace] = None) -> None:
    """Create OUTPUT_DIR and hold its lock for the life of the process (OutputDirInUseError naming the
    pid of a run already in it), set up logging (console + OUTPUT_DIR/log.txt), log the command line and the
    config, write the final config to OUTPUT_DIR/config.yaml (main process) and seed the random
    generators (SEED + rank when SEED >= 0)."""
    rank = comm.get_rank()
    output_dir = cfg.OUTPUT_DIR
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        # Before anything is written: a second run in this folder stops here, naming the first.
        lock_output_dir(output_dir)
    comm.synchronize()
    setup_logger(output_dir, distributed_rank=rank)
    logger.info("Rank %d of %d; torch %s; command line: %s", rank, comm.get_world_size(), torch.__version__,
                " ".join(sys.argv))
    if args is not None and getattr(args, "config_file", ""):
        logger.info("Config file %s", args.config_file)
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        _write_config(cfg, path)
        logger.info("Full config written to %s", path)
    seed_all_rng(cfg.SEED + rank if cfg.SEED >= 0 else -1)


def setup(args: argparse.Namespace) -> CfgNode:
    """``get_cfg()`` <- ``--config-file`` <- the ``KEY VALUE`` overrides <- the linear scaling rule,
    checked, frozen, then ``default_setup``. Exits with a message for a missing or unknown config
    file; raises FileNotFoundError for a MODEL.WEIGHTS that does not exist."""
    args.config_file = _config_file(args.config_file)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []))
    apply_batch_size_scaling(cfg)
    _check_paths(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def default_writers(cfg: CfgNode, max_iter: int, device: Optional[torch.device] = None) -> list:
    """Console line, OUTPUT_DIR/metrics.json and TensorBoard events in OUTPUT_DIR (main process only)."""
    from retinadet.utils.writers import CommonMetricPrinter, JSONWriter, TensorboardWriter

    window = max(1, cfg.TRAIN.LOG_PERIOD)
    return [
        CommonMetricPrinter(max_iter, window=window, device=device),
        JSONWriter(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), window=window),
        TensorboardWriter(cfg.OUTPUT_DIR, window=window),
    ]


def evaluate_trainer(cfg: CfgNode, trainer: Any) -> Dict[str, Any]:
    """``trainer.test(cfg, trainer.model_without_ddp)`` on the weights to evaluate: within
    ``trainer.evaluation_weights()`` (the EMA's when the trainer keeps one) when it has that method.
    Returns the test results ({task: {metric: value}})."""
    weights = getattr(trainer, "evaluation_weights", None)
    with (weights() if weights is not None else contextlib.nullcontext()):
        return trainer.test(cfg, trainer.model_without_ddp)


def build_default_hooks(cfg: CfgNode, trainer: Any) -> List[HookBase]:
    """The hooks of a training run, in the order they run at each point:

    1. IterationTimer first: its step time then excludes the other hooks' work.
    2. LRScheduler: steps the schedule after each iteration, before anything saves its state.
       EMAHook (MODEL_EMA.ENABLED): folds the new weights into the average before anything saves or
       evaluates it; evaluation and the pictures then use the averaged weights.
    3. NonFiniteLossGuard: after the backward pass, before the optimizer step touches the weights.
    4. GracefulInterrupt: turns Ctrl-C into a stop at the end of the step.
    5. PeriodicCheckpointer (main process writes): after the LR step, so the saved schedule is current,
       and before evaluation, so a failing evaluation cannot lose the checkpoint.
    6. EvalHook: every TEST.EVAL_PERIOD iterations and at the end; puts bbox/AP, ... into the storage.
    7. The TRAIN.HOOKS hooks from HOOK_REGISTRY, in their order: they see the evaluation results and
       their scalars still reach the writers.
    8. PeriodicWriter (main process): writes everything put so far, every TRAIN.LOG_PERIOD iterations.
    9. LossCurvePlotter (main process): after the writers flushed metrics.json, draws loss_curve.png.
    10. PredictionPictures (main process, TEST.VIS_IMAGES > 0): detections drawn on test images.
    """
    from .pictures import PredictionPictures

    main = comm.is_main_process()
    built: List[Optional[HookBase]] = [
        hooks.IterationTimer(),
        hooks.LRScheduler(trainer.optimizer, trainer.scheduler),
        hooks.EMAHook(trainer.ema, trainer.model_without_ddp) if getattr(trainer, "ema", None) is not None else None,
        hooks.NonFiniteLossGuard(),
        hooks.GracefulInterrupt(),
        hooks.PeriodicCheckpointer(trainer.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_TO_KEEP,
                                   extra=trainer.checkpoint_extra()),
        hooks.EvalHook(cfg.TEST.EVAL_PERIOD, functools.partial(evaluate_trainer, cfg, trainer))
        if cfg.DATASETS.TEST else None,
    ]
    built.extend(hooks.build_registered_hooks(cfg.TRAIN.HOOKS, cfg, trainer))
    if main:
        built.append(hooks.PeriodicWriter(trainer.build_writers(), cfg.TRAIN.LOG_PERIOD))
        if cfg.TRAIN.LOSS_CURVE:
            built.append(hooks.LossCurvePlotter(os.path.join(cfg.OUTPUT_DIR, "metrics.json"),
                                                os.path.join(cfg.OUTPUT_DIR, "loss_curve.png")))
        if cfg.TEST.VIS_IMAGES > 0 and cfg.DATASETS.TEST:
            built.append(PredictionPictures(**PredictionPictures.from_config(cfg, trainer)))
    return [h for h in built if h is not None]

"""Training: the loop and its hooks, the default trainer, set-up helpers and the distributed launcher;
DefaultPredictor (an image in, detections out)."""
from .defaults import (
    apply_batch_size_scaling,
    build_default_hooks,
    default_argument_parser,
    default_setup,
    default_writers,
    setup,
)
from .hooks import (
    EvalHook,
    GracefulInterrupt,
    IterationTimer,
    LossCurvePlotter,
    LRScheduler,
    NonFiniteLossGuard,
    PeriodicCheckpointer,
    PeriodicWriter,
    flatten_results,
)
from .launch import launch
from .pictures import PredictionPictures
from .predictor import DefaultPredictor
from .train_loop import HookBase, SimpleTrainer, TrainerBase
from .trainer import DefaultTrainer, build_evaluator, create_ddp_model

__all__ = [
    "DefaultPredictor",
    "DefaultTrainer",
    "EvalHook",
    "GracefulInterrupt",
    "HookBase",
    "IterationTimer",
    "LRScheduler",
    "LossCurvePlotter",
    "NonFiniteLossGuard",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PredictionPictures",
    "SimpleTrainer",
    "TrainerBase",
    "apply_batch_size_scaling",
    "build_default_hooks",
    "build_evaluator",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "flatten_results",
    "launch",
    "setup",
]

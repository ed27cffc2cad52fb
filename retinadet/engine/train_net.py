"""Train a detector from a config and evaluate it, or evaluate saved weights with --eval-only.

    retinadet-train --config-file configs/shapes/retinanet_R_18_FPN.yaml [--resume] [KEY VALUE ...]

(retinadet-train, python -m retinadet.engine.train_net and python tools/train_net.py are the same.)
--config-file is a file or, when no such file exists, a model-zoo name such as
shapes/retinanet_R_18_FPN.yaml (retinadet.model_zoo: the configs that ship with retinadet).

Leaves in OUTPUT_DIR: config.yaml, log.txt, metrics.json, TensorBoard events, checkpoints
(model_XXXXXXX.pth, model_final.pth, last_checkpoint), loss_curve.png, inference/<data set>/ and
pictures/ (with TEST.VIS_IMAGES > 0). Exit status: 0 when done, 130 when stopped by Ctrl-C (after
saving a checkpoint), 1 when training failed, 2 on bad input (unknown flag, missing config file).
"""
import argparse
import sys
from typing import List, Optional

from retinadet.checkpoint.checkpointer import DetectionCheckpointer
from retinadet.engine import DefaultTrainer, default_argument_parser, launch, setup

__all__ = ["INTERRUPTED_EXIT_CODE", "invoke_main", "main"]

# The status shells give a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED_EXIT_CODE = 130


def main(args: argparse.Namespace):
    """Train (or with ``args.eval_only`` evaluate) the config of parsed ``args`` in this process.
    Returns the evaluation results ({task: {metric: value}}); raises SystemExit(130) when training was
    stopped by Ctrl-C, ValueError for --eval-only without weights to evaluate."""
    cfg = setup(args)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        # A checkpoint of a run with MODEL_EMA evaluates its weight average, as training did.
        checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, use_ema_weights=True)
        if not cfg.MODEL.WEIGHTS and not (args.resume and checkpointer.has_checkpoint()):
            where = f" and OUTPUT_DIR {cfg.OUTPUT_DIR} holds no checkpoint to resume" if args.resume else ""
            raise ValueError(f"--eval-only has no weights to evaluate: MODEL.WEIGHTS is empty{where}, so it would "
                             "score a randomly initialised model. Set MODEL.WEIGHTS path/to/model_final.pth, or "
                             "--resume with the OUTPUT_DIR of a trained run.")
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        # MODEL.INFERENCE_BACKEND: evaluate the model as eager, compiled, or exported and run by a runtime.
        from retinadet.export.inference_model import wrap_for_inference

        return DefaultTrainer.test(cfg, wrap_for_inference(cfg, model))
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if trainer.interrupted:
        # Stopped by Ctrl-C after saving a checkpoint: exit as an interrupted command does.
        raise SystemExit(INTERRUPTED_EXIT_CODE)
    return results


def invoke_main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (None: sys.argv[1:]) and run ``main`` in one process per GPU (``--num-gpus``,
    ``--num-machines``); returns 0 when it finished (errors propagate: status 1 from the interpreter)."""
    args = default_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    sys.exit(invoke_main())

"""Training images/s of the shapes demo recipe, lever by lever, in one process.

    python benchmarks/recipe_speed.py                 # about 8 minutes on 2 idle cores
    python benchmarks/recipe_speed.py --quick         # smoke test: 2 rounds of 2 steps, seconds
    python benchmarks/recipe_speed.py --variants demo fp32 channels_last

Every variant is the demo config (configs/shapes/retinanet_R_18_FPN.yaml) with a few overrides. Each
is built as DefaultTrainer builds it (model, optimizer, training loader with its workers, AMP as the
config says) and timed on real training steps: the loader's next batch, forward, backward, optimizer
step. Variants take turns (``--rounds`` rounds of ``--steps`` steps each, after one untimed warm-up
round), so a change in background load hits all of them alike; before each turn the script waits a
second, so that the loader workers of the variant before (refilling their prefetch queue) are done and
a variant shares the cores with its own workers only, as in training. A variant whose torch.compile runs
gets its compilation in the warm-up round (the time it took is printed on its own).

Output: a markdown table with each variant's median seconds per step, images/s and the ratio of its
images/s to the first variant's (the previous demo recipe by default), and the load average before
and after. Reading the numbers: wall-clock time on a shared CPU; rerun on an idle machine.
"""
import argparse
import os
import sys
from typing import Dict, List, Sequence, Tuple

import torch

from retinadet.benchmark.timing import time_call, time_in_turns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, "configs", "shapes", "retinanet_R_18_FPN.yaml")

# The demo recipe before the time-to-accuracy work: the hard tier at 256-384 px, a half-width ResNet-18
# with GroupNorm and FPN P3-P7, SGD at batch 8, float32, no EMA. The other variants change one lever of
# today's demo.
VARIANTS: Dict[str, Tuple[str, List[str]]] = {
    "previous demo (hard tier 256-384 px, half-width GN R18, P3-P7, SGD, fp32)": ("previous", [
        "DATASETS.TRAIN", "('shapes_train',)", "DATASETS.TEST", "('shapes_val',)",
        "INPUT.MIN_SIZE_TRAIN", "(256, 288, 320)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice",
        "INPUT.MAX_SIZE_TRAIN", "384", "MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.NUM_GROUPS_GN", "16",
        "MODEL.RESNETS.STEM_OUT_CHANNELS", "32", "MODEL.RESNETS.RES2_OUT_CHANNELS", "32",
        "MODEL.FPN.NUM_TOP_LEVELS", "2", "MODEL.HEAD.IN_FEATURES", "('p3', 'p4', 'p5', 'p6', 'p7')",
        "MODEL.ANCHOR_GENERATOR.SIZES", "(16, 32, 64, 128, 256)",
        "MODEL.HEAD.NUM_CONVS", "4", "DATALOADER.NUM_WORKERS", "2", "SOLVER.OPTIMIZER", "SGD",
        "SOLVER.BASE_LR", "0.01", "SOLVER.WEIGHT_DECAY", "0.0001", "SOLVER.AMP.ENABLED", "False",
        "MODEL_EMA.ENABLED", "False"]),
    "demo": ("demo", []),
    "demo, float32 (no bfloat16 autocast)": ("fp32", ["SOLVER.AMP.ENABLED", "False"]),
    "demo, channels_last": ("channels_last", ["MODEL.CHANNELS_LAST", "True"]),
    "demo, torch.compile": ("compile", ["MODEL.COMPILE", "True"]),
    "demo, 1 loader worker": ("workers1", ["DATALOADER.NUM_WORKERS", "1"]),
    "demo, 2 loader workers": ("workers2", ["DATALOADER.NUM_WORKERS", "2"]),
    "demo, no weight EMA": ("no_ema", ["MODEL_EMA.ENABLED", "False"]),
    "demo, GroupNorm backbone": ("gn", ["MODEL.RESNETS.NORM", "GN", "MODEL.RESNETS.NUM_GROUPS_GN", "16"]),
    "demo, half-width backbone (32-256 channels)": ("half_width", [
        "MODEL.RESNETS.STEM_OUT_CHANNELS", "32", "MODEL.RESNETS.RES2_OUT_CHANNELS", "32"]),
    "demo, FPN P3-P7 and anchors 16-256": ("p3_p7", [
        "MODEL.FPN.NUM_TOP_LEVELS", "2", "MODEL.HEAD.IN_FEATURES", "('p3', 'p4', 'p5', 'p6', 'p7')",
        "MODEL.ANCHOR_GENERATOR.SIZES", "(16, 32, 64, 128, 256)"]),
    "demo, 4-conv subnets (the paper's)": ("head4", ["MODEL.HEAD.NUM_CONVS", "4"]),
    "demo, 16 images per step": ("batch16", ["SOLVER.IMS_PER_BATCH", "16"]),
}
SETTLE_S = 1.0  # seconds between two variants' turns
SHORT = {short: label for label, (short, _) in VARIANTS.items()}


def build_step(opts: Sequence[str], data_root: str):
    """(step function, images per step) of the demo config with ``opts``."""
    from retinadet.config import get_cfg
    from retinadet.data import build_detection_train_loader
    from retinadet.engine.train_loop import SimpleTrainer
    from retinadet.modeling import build_model
    from retinadet.solver import build_optimizer

    cfg = get_cfg()
    cfg.merge_from_file(DEMO_CONFIG)
    cfg.merge_from_list(["DATASETS.ROOT", data_root, "SEED", "0", *opts])
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    clip = cfg.SOLVER.CLIP_GRADIENTS
    trainer = SimpleTrainer(model, build_detection_train_loader(cfg), optimizer, amp=cfg.SOLVER.AMP.ENABLED,
                            clip_gradients={"type": clip.CLIP_TYPE, "value": clip.CLIP_VALUE,
                                            "norm_type": clip.NORM_TYPE} if clip.ENABLED else None)
    return trainer.run_step, cfg.SOLVER.IMS_PER_BATCH


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=list(SHORT), default=list(SHORT),
                        help="which variants, by short name (default: all); the first is the reference")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds (default 4)")
    parser.add_argument("--steps", type=int, default=6, help="steps per variant per round (default 6)")
    parser.add_argument("--data-root", default=os.path.join(REPO, "datasets"), help="DATASETS.ROOT")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 2
    from retinadet.utils.events import EventStorage

    load_before = os.getloadavg()[0]
    steps, warmup = {}, {}
    with EventStorage(0):
        for short in args.variants:
            steps[short] = build_step(VARIANTS[SHORT[short]][1], args.data_root)
            warmup[short] = time_call(lambda: [steps[short][0]() for _ in range(args.steps)])
        # The other variants' loader workers refill their prefetch queues after their turn; the second of
        # settling lets them finish, so each variant's steps share the cores with its own workers only.
        calls = {short: (lambda _round, run=run: run()) for short, (run, _images) in steps.items()}
        runs = time_in_turns(calls, 0, args.rounds, calls_per_turn=args.steps, alternate=False, settle_s=SETTLE_S)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; {args.rounds} rounds x {args.steps} steps per variant")
    print("| variant | s/step | images/step | images/s | vs first | warm-up round s |")
    print("|---|---|---|---|---|---|")
    reference = None
    for short in args.variants:
        seconds = runs[short].median
        images_per_s = steps[short][1] / seconds
        reference = reference or images_per_s
        print(f"| {SHORT[short]} | {seconds:.3f} | {steps[short][1]} | {images_per_s:.1f} | "
              f"{images_per_s / reference:.2f}x | {warmup[short]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""setup() pieces: the linear scaling rule and the command line."""
import pytest

from retinadet.config import get_cfg
from retinadet.engine import apply_batch_size_scaling, default_argument_parser


def _solver_cfg(ims, reference):
    cfg = get_cfg()
    s = cfg.SOLVER
    s.IMS_PER_BATCH, s.REFERENCE_IMS_PER_BATCH = ims, reference
    s.BASE_LR, s.BASE_LR_END, s.MAX_ITER, s.STEPS = 0.01, 0.0001, 90000, (60000, 80000)
    s.WARMUP_ITERS, s.CHECKPOINT_PERIOD = 1000, 5000
    cfg.TEST.EVAL_PERIOD = 3000
    return cfg


def test_linear_scaling_doubles_lr_and_halves_iterations():
    # 16 -> 32 images per batch (k = 2): the same images at twice the LR per step, in half the steps.
    cfg = apply_batch_size_scaling(_solver_cfg(32, 16))
    s = cfg.SOLVER
    assert s.BASE_LR == pytest.approx(0.02) and s.BASE_LR_END == pytest.approx(0.0002)
    assert (s.MAX_ITER, tuple(s.STEPS), s.WARMUP_ITERS, s.CHECKPOINT_PERIOD) == (45000, (30000, 40000), 500, 2500)
    assert cfg.TEST.EVAL_PERIOD == 1500 and s.REFERENCE_IMS_PER_BATCH == 32
    # Applying it again changes nothing.
    assert apply_batch_size_scaling(cfg).SOLVER.MAX_ITER == 45000


def test_linear_scaling_to_a_smaller_batch_and_off():
    # 16 -> 2 (k = 1/8): LR / 8, iterations x 8.
    s = apply_batch_size_scaling(_solver_cfg(2, 16)).SOLVER
    assert s.BASE_LR == pytest.approx(0.00125) and s.MAX_ITER == 720000 and tuple(s.STEPS) == (480000, 640000)
    # REFERENCE_IMS_PER_BATCH 0 (the default) leaves the values as written.
    s = apply_batch_size_scaling(_solver_cfg(2, 0)).SOLVER
    assert s.BASE_LR == 0.01 and s.MAX_ITER == 90000


def test_argument_parser_reads_detectron2_flags_and_overrides():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--resume", "--num-gpus", "2", "--num-machines", "2", "--machine-rank", "1",
         "--dist-url", "tcp://10.0.0.1:1234", "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "out"])
    assert (args.config_file, args.resume, args.eval_only) == ("a.yaml", True, False)
    assert (args.num_gpus, args.num_machines, args.machine_rank, args.dist_url) == (2, 2, 1, "tcp://10.0.0.1:1234")
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "out"]

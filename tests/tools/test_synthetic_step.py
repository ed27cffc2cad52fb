"""Tests of tools/synthetic_step.py run as a script, as a user runs it."""
import math
import re
import sys
from pathlib import Path

import pytest

from retinadet.utils.testing import run_together

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "tools/synthetic_step.py"
QUICK_CONFIG = "configs/quick/retinanet_R_18_synthetic.yaml"
STEP_LINE = re.compile(r"^step (\d+): .*loss_cls=(\S+)\s+loss_box_reg=(\S+)", re.MULTILINE)

COMMANDS = {
    "three_steps": ["--config-file", QUICK_CONFIG, "--steps", "3", "--size", "96", "128"],
    "missing_config": ["--steps", "1"],
    "unknown_key": ["--config-file", QUICK_CONFIG, "MODEL.RETINANET.NUM_CLASSE", "5"],
    "faster_rcnn": ["--config-file", "configs/quick/faster_rcnn_R_18_shapes_tiny.yaml", "--size", "64", "96"],
}


@pytest.fixture(scope="module")
def runs():
    """{name: (exit code, stdout, stderr)}; the runs start together (each spends seconds importing)."""
    return run_together({name: [sys.executable, SCRIPT, *args] for name, args in COMMANDS.items()}, cwd=str(REPO))


def test_three_steps_print_finite_losses_and_detections(runs):
    code, out, err = runs["three_steps"]
    assert code == 0, err
    steps = STEP_LINE.findall(out)
    assert [int(s[0]) for s in steps] == [1, 2, 3], out
    for _, loss_cls, loss_box in steps:
        assert math.isfinite(float(loss_cls)) and float(loss_cls) > 0
        assert math.isfinite(float(loss_box)) and float(loss_box) >= 0
    # The default batch has 2 images, each reported with its ground truth.
    assert re.search(r"^image 0: \d+ detections", out, re.MULTILINE), out
    assert re.search(r"^image 1: \d+ detections", out, re.MULTILINE), out


def test_missing_config_file_prints_usage(runs):
    code, out, err = runs["missing_config"]
    assert code != 0
    assert "usage:" in err and "--config-file" in err
    assert "step 1" not in out


def test_unknown_config_key_names_the_closest_key(runs):
    code, out, err = runs["unknown_key"]
    assert code != 0
    assert "MODEL.RETINANET.NUM_CLASSE" in err
    assert "Did you mean 'MODEL.RETINANET.NUM_CLASSES'" in err
    assert "step 1" not in out


def test_a_faster_rcnn_gets_labels_of_its_own_classes(runs):
    # The batch's labels are drawn from MODEL.ROI_HEADS.NUM_CLASSES (6 here), not RetinaNet's key (80 by
    # default), so the model accepts them and trains its RPN and box head.
    code, out, err = runs["faster_rcnn"]
    assert code == 0, err
    assert re.search(r"^step 1: loss_rpn_cls=\S+\s+loss_rpn_loc=\S+\s+loss_cls=\S+\s+loss_box_reg=\S+", out,
                     re.MULTILINE), out
    labels = [int(label) for label in re.findall(r"\((\d+), \[", out)]
    assert labels and max(labels) < 6

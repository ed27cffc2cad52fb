"""Reliability catalogue, command-line family: bad arguments to tools/train_net.py
(retinadet.engine.train_net) and tools/convert_weights.py."""
import os
import pickle
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from retinadet.engine import train_net
from retinadet.utils.run_lock import LOCK_FILE, OutputDirInUseError
from retinadet.utils.testing import load_tool

REPO = Path(__file__).resolve().parents[2]
QUICK = str(REPO / "configs" / "quick" / "retinanet_R_18_shapes_tiny.yaml")

convert_weights = load_tool("convert_weights")


def _args(*argv):
    return train_net.default_argument_parser().parse_args(list(argv))


# ------------------------------------------------------------------------------------------ train_net.py


def test_eval_only_without_weights_is_refused_before_scoring(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"--eval-only has no weights to evaluate: MODEL\.WEIGHTS is empty, so it "
                                         r"would score a randomly initialised model"):
        train_net.main(_args("--config-file", QUICK, "--eval-only", "OUTPUT_DIR", str(out)))
    assert not (out / "inference").exists()


def test_eval_only_resume_without_a_checkpoint_is_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=rf"--eval-only has no weights to evaluate: MODEL\.WEIGHTS is empty and "
                                         rf"OUTPUT_DIR {re.escape(str(out))} holds no checkpoint to resume"):
        train_net.main(_args("--config-file", QUICK, "--eval-only", "--resume", "OUTPUT_DIR", str(out)))
    assert not (out / "inference").exists()


def test_missing_config_file_is_named_with_the_closest_config(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit, match=r"error: --config-file 'configs/quick/retinanet_R_18_shapes_tiyn\.yaml' does "
                                         r"not exist \(looked in the working directory .* and the model zoo .*\)\. Closest existing "
                                         r"config files: quick/retinanet_R_18_shapes_tiny\.yaml"):
        train_net.main(_args("--config-file", "configs/quick/retinanet_R_18_shapes_tiyn.yaml"))


def test_no_config_file_is_refused():
    with pytest.raises(SystemExit, match=r"error: --config-file is required"):
        train_net.main(_args())


def test_missing_model_weights_is_named_before_the_output_dir_is_made(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"MODEL\.WEIGHTS 'nowhere\.pth' does not exist"):
        train_net.main(_args("--config-file", QUICK, "MODEL.WEIGHTS", "nowhere.pth", "OUTPUT_DIR", str(out)))
    assert not out.exists()


def test_flag_after_the_overrides_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"--resume is a command-line flag but comes after the KEY VALUE overrides"):
        train_net.main(_args("--config-file", QUICK, "OUTPUT_DIR", str(tmp_path), "--resume"))
    assert os.listdir(tmp_path) == []


def test_unknown_override_key_is_named(tmp_path):
    with pytest.raises(KeyError, match=r"Unknown config key 'SOLVER\.MAX_ITERS' \(from command-line overrides\)\. "
                                       r"Did you mean 'SOLVER\.MAX_ITER'\?"):
        train_net.main(_args("--config-file", QUICK, "SOLVER.MAX_ITERS", "3", "OUTPUT_DIR", str(tmp_path)))


def test_non_integer_num_gpus_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        _args("--config-file", QUICK, "--num-gpus", "two")
    assert info.value.code == 2
    assert "argument --num-gpus: invalid int value: 'two'" in capsys.readouterr().err


_HOLD = ("import sys, time; from retinadet.utils.run_lock import lock_output_dir; lock_output_dir(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)")


def test_busy_output_dir_names_the_other_run_and_writes_nothing(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirInUseError, match=rf"OUTPUT_DIR {re.escape(str(tmp_path))} is in use by another "
                                                      rf"run \(pid {holder.pid}: "):
            train_net.main(_args("--config-file", QUICK, "OUTPUT_DIR", str(tmp_path)))
        assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]  # no log.txt, config.yaml or metrics.json
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


# ------------------------------------------------------------------------------------------ convert_weights.py


def test_convert_weights_refuses_a_hostile_pickle(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "model_final.pkl"
    evil.write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    output = tmp_path / "converted.pth"
    status = convert_weights.main(["--source", "detectron2", "--input", str(evil), "--output", str(output)])
    assert status == 1
    err = capsys.readouterr().err
    assert f"error: Refusing to load checkpoint {evil}: it refers to the global os.system" in err
    assert not marker.exists() and not output.exists()


def test_convert_weights_names_a_missing_input(tmp_path, capsys):
    missing = tmp_path / "missing.pkl"
    output = tmp_path / "converted.pth"
    assert convert_weights.main(["--source", "detectron2", "--input", str(missing), "--output", str(output)]) == 1
    assert f"error: Checkpoint file not found: {missing}" in capsys.readouterr().err
    assert not output.exists()


def test_convert_weights_names_a_layout_that_is_not_the_source(tmp_path, capsys):
    resnet = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, resnet)
    output = tmp_path / "converted.pth"
    assert convert_weights.main(["--source", "detectron2", "--input", str(resnet), "--output", str(output)]) == 1
    assert (f"error: {resnet} does not look like a detectron2 checkpoint: its keys (e.g. conv1.weight, "
            "layer1.0.conv1.weight) have the torchvision_resnet layout") in capsys.readouterr().err
    assert not output.exists()


def test_convert_weights_refuses_an_unknown_source(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        convert_weights.main(["--source", "mmdet", "--input", "x.pth", "--output", str(tmp_path / "y.pth")])
    assert info.value.code == 2
    assert "argument --source: invalid choice: 'mmdet'" in capsys.readouterr().err


def test_convert_weights_does_not_overwrite_output_when_input_is_truncated(tmp_path, capsys):
    good = {"model": {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3, 1, 1), np.float32)}}
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(pickle.dumps(good, protocol=2)[:60])
    output = tmp_path / "converted.pth"
    output.write_bytes(b"previous result")
    assert convert_weights.main(["--source", "detectron2", "--input", str(cut), "--output", str(output)]) == 1
    assert f"error: Could not read checkpoint {cut} as a pickle (.pkl) file (60 bytes)" in capsys.readouterr().err
    assert output.read_bytes() == b"previous result"


def test_a_weights_url_is_refused_before_anything_builds(tmp_path):
    """detectron2's model-zoo configs name their weights by URL; nothing is downloaded."""
    with pytest.raises(FileNotFoundError, match=r"MODEL\.WEIGHTS 'detectron2://ImageNetPretrained/MSRA/R-50\.pkl' is "
                                                r"a URL .* retinadet downloads nothing"):
        train_net.main(_args("--config-file", QUICK, "OUTPUT_DIR", str(tmp_path / "out"),
                             "MODEL.WEIGHTS", "detectron2://ImageNetPretrained/MSRA/R-50.pkl"))
    assert not (tmp_path / "out").exists()

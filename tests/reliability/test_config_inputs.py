"""Reliability catalogue, config family: bad YAML files, bad KEY VALUE overrides and bad config values."""
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from retinadet.config import get_cfg
from retinadet.data.build import build_detection_test_loader, build_detection_train_loader
from retinadet.data.mapper import DatasetMapper, build_augmentations
from retinadet.modeling import build_model
from retinadet.solver.build import build_lr_scheduler, build_model_ema, build_optimizer

REPO = Path(__file__).resolve().parents[2]
QUICK_RETINANET = str(REPO / "configs" / "quick" / "retinanet_R_18_synthetic.yaml")
QUICK_RCNN = str(REPO / "configs" / "quick" / "faster_rcnn_R_18_shapes_tiny.yaml")


def _cfg(*opts, base=None):
    cfg = get_cfg()
    if base:
        cfg.merge_from_file(base)
    cfg.merge_from_list([str(o) for o in opts])
    return cfg


def _write(path, text):
    path.write_text(text)
    return str(path)


# ------------------------------------------------------------------------------------------ keys and types


def test_unknown_override_key_names_the_closest_key():
    with pytest.raises(KeyError, match=r"Unknown config key 'SOLVER\.BASE_RL' \(from command-line overrides\)\. "
                                       r"Did you mean 'SOLVER\.BASE_LR'\?"):
        get_cfg().merge_from_list(["SOLVER.BASE_RL", "0.1"])


def test_unknown_file_key_names_the_file_and_the_closest_key(tmp_path):
    path = _write(tmp_path / "typo.yaml", "MODEL:\n  RETINANET:\n    NUM_CLASSE: 3\n")
    with pytest.raises(KeyError, match=rf"Unknown config key 'MODEL\.RETINANET\.NUM_CLASSE' \(from file "
                                       rf"{re.escape(path)}\)\. Did you mean 'MODEL\.RETINANET\.NUM_CLASSES'\?"):
        get_cfg().merge_from_file(path)


def test_string_for_a_float_key_names_key_value_and_type():
    with pytest.raises(ValueError, match=r"Config key SOLVER\.BASE_LR \(from command-line overrides\) got 'abc' of "
                                         r"type str; expected float like the default 0\.01"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR", "abc"])


def test_float_for_an_int_key_in_a_file_is_refused(tmp_path):
    path = _write(tmp_path / "float_iters.yaml", "SOLVER:\n  MAX_ITER: 1.5\n")
    with pytest.raises(ValueError, match=rf"Config key SOLVER\.MAX_ITER \(from file {re.escape(path)}\) got 1\.5 of "
                                         r"type float; expected int"):
        get_cfg().merge_from_file(path)


def test_bool_for_an_int_key_is_refused():
    with pytest.raises(ValueError, match=r"Config key SOLVER\.MAX_ITER .* got True of type bool; expected int"):
        get_cfg().merge_from_list(["SOLVER.MAX_ITER", "True"])


@pytest.mark.parametrize("group", ["SOLVER", "MODEL"])
def test_value_for_a_group_of_keys_is_refused(group):
    with pytest.raises(ValueError, match=rf"Config key {group} \(from command-line overrides\) is a group of keys; "
                                         r"got 3"):
        get_cfg().merge_from_list([group, "3"])


def test_merge_into_a_frozen_config_is_refused():
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(AttributeError, match="Cannot merge command-line overrides into a frozen config"):
        cfg.merge_from_list(["SOLVER.BASE_LR", "0.1"])
    assert cfg.SOLVER.BASE_LR == 0.01


# ------------------------------------------------------------------------------------------ YAML files


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system",
    "!!python/object/new:os.system",
    "!!python/name:os.system",
    "!!python/object/apply:subprocess.call",
    "!!python/object/apply:builtins.exec",
])
def test_yaml_code_tags_are_refused_and_never_run(tmp_path, tag):
    marker = tmp_path / "MARKER"
    path = _write(tmp_path / "evil.yaml", f"OUTPUT_DIR: {tag} [\"touch {marker}\"]\n")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(path)} uses a YAML tag that is not allowed"):
        get_cfg().merge_from_file(path)
    assert not marker.exists()


def test_allow_unsafe_yaml_is_refused(tmp_path):
    path = _write(tmp_path / "plain.yaml", "SOLVER:\n  BASE_LR: 0.1\n")
    with pytest.raises(ValueError, match="retinadet never loads unsafe YAML"):
        get_cfg().merge_from_file(path, allow_unsafe=True)


def test_code_in_an_override_value_stays_a_string_and_never_runs(tmp_path):
    marker = tmp_path / "MARKER"
    code = f"__import__('os').system('touch {marker}')"
    cfg = get_cfg().merge_from_list(["OUTPUT_DIR", code])
    assert cfg.OUTPUT_DIR == code
    assert not marker.exists()


def test_base_cycle_of_two_files_names_the_chain(tmp_path):
    a = _write(tmp_path / "a.yaml", "_BASE_: b.yaml\nSOLVER:\n  BASE_LR: 0.1\n")
    _write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match=r"is its own _BASE_ through the cycle .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        get_cfg().merge_from_file(a)


def test_file_that_is_its_own_base_is_refused(tmp_path):
    a = _write(tmp_path / "self.yaml", "_BASE_: self.yaml\n")
    with pytest.raises(ValueError, match=r"self\.yaml is its own _BASE_ through the cycle .*self\.yaml -> .*self\.yaml"):
        get_cfg().merge_from_file(a)


def test_missing_base_file_is_named(tmp_path):
    a = _write(tmp_path / "child.yaml", "_BASE_: missing_base.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"child\.yaml names _BASE_ .missing_base\.yaml., which does not exist"):
        get_cfg().merge_from_file(a)


def test_base_that_is_not_a_path_is_refused(tmp_path):
    a = _write(tmp_path / "numbase.yaml", "_BASE_: 3\n")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(a)}: _BASE_ must be a path or a list of paths; got 3"):
        get_cfg().merge_from_file(a)


def test_section_where_the_base_has_a_value_is_refused(tmp_path):
    _write(tmp_path / "base.yaml", "SOLVER:\n  BASE_LR: 0.1\n")
    child = _write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  BASE_LR:\n    X: 1\n")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(child)}: BASE_LR is a section here but a value in "
                                         r"its base"):
        get_cfg().merge_from_file(child)


def test_empty_file_is_refused(tmp_path):
    path = _write(tmp_path / "empty.yaml", "")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(path)} is empty"):
        get_cfg().merge_from_file(path)


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01binary")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(str(path))} is not a text file \(byte \d+ is not "
                                         r"UTF-8\)"):
        get_cfg().merge_from_file(str(path))


def test_top_level_list_is_refused(tmp_path):
    path = _write(tmp_path / "list.yaml", "- SOLVER.BASE_LR\n- 0.1\n")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(path)} holds a YAML list at its top level"):
        get_cfg().merge_from_file(path)


def test_broken_yaml_syntax_is_refused(tmp_path):
    path = _write(tmp_path / "broken.yaml", "SOLVER:\n  BASE_LR: [0.1\n")
    with pytest.raises(ValueError, match=rf"Config file {re.escape(path)} is not valid YAML"):
        get_cfg().merge_from_file(path)


# ------------------------------------------------------------------------------------------ override lists


def test_flag_among_overrides_is_named():
    with pytest.raises(ValueError, match=r"--eval-only is a command-line flag but comes after the KEY VALUE "
                                         r"overrides"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR", "0.1", "--eval-only"])


def test_odd_number_of_override_items_is_refused():
    with pytest.raises(ValueError, match=r"Overrides must be KEY VALUE pairs; got an odd number of items: "
                                         r"\['SOLVER\.BASE_LR', '0\.1', 'SOLVER\.MAX_ITER'\]"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR", "0.1", "SOLVER.MAX_ITER"])


def test_unimportable_plugin_is_named():
    with pytest.raises(ModuleNotFoundError, match=r"Plug-in module 'no_such_retinadet_plugin' \(from MODEL\.PLUGINS\) "
                                                  "cannot be imported"):
        get_cfg().merge_from_list(["MODEL.PLUGINS", "['no_such_retinadet_plugin']"])


# ------------------------------------------------------------------------------------------ registry names


@pytest.mark.parametrize("key,bad,registry,closest", [
    ("MODEL.META_ARCHITECTURE", "RetinaNte", "META_ARCH", "RetinaNet"),
    ("MODEL.BACKBONE.NAME", "ResNett", "BACKBONE", "ResNet"),
    ("MODEL.NECK.NAME", "FPM", "NECK", "FPN"),
])
def test_unknown_registry_name_names_the_closest_registered_name(key, bad, registry, closest):
    cfg = _cfg(key, bad, base=QUICK_RETINANET)
    with pytest.raises(KeyError, match=rf"No object named '{bad}' in the {registry} registry\. Registered names: "
                                       rf"\[.*'{closest}'.*\]\. Did you mean '{closest}'\?"):
        build_model(cfg)


def test_head_in_features_the_neck_does_not_make_is_named():
    cfg = _cfg("MODEL.HEAD.IN_FEATURES", "['p3', 'p8']", base=QUICK_RETINANET)
    with pytest.raises(ValueError, match=r"MODEL\.HEAD\.IN_FEATURES names \['p8'\], which the neck does not produce"):
        build_model(cfg)


@pytest.mark.parametrize("arch", ["rcnn", "retinanet"])
def test_zero_pixel_std_is_refused(arch):
    cfg = _cfg("MODEL.PIXEL_STD", "[0.0, 57.12, 57.375]", base=QUICK_RCNN if arch == "rcnn" else QUICK_RETINANET)
    with pytest.raises(ValueError, match=r"MODEL\.PIXEL_STD"):
        build_model(cfg)


@pytest.mark.parametrize("arch", ["rcnn", "retinanet"])
def test_pixel_mean_of_two_values_is_refused_when_building(arch):
    cfg = _cfg("MODEL.PIXEL_MEAN", "[123.675, 116.28]", base=QUICK_RCNN if arch == "rcnn" else QUICK_RETINANET)
    with pytest.raises(ValueError, match=r"MODEL\.PIXEL_MEAN"):
        build_model(cfg)


# ------------------------------------------------------------------------------------------ INPUT and DATALOADER


@pytest.mark.parametrize("is_train,opts,message", [
    (False, ["INPUT.MIN_SIZE_TEST", "1400", "INPUT.MAX_SIZE_TEST", "1333"],
     r"INPUT\.MIN_SIZE_TEST 1400 exceeds INPUT\.MAX_SIZE_TEST 1333"),
    (True, ["INPUT.MIN_SIZE_TRAIN", "[640, 1500]", "INPUT.MAX_SIZE_TRAIN", "1333"],
     r"INPUT\.MIN_SIZE_TRAIN \[640, 1500\] exceeds INPUT\.MAX_SIZE_TRAIN 1333.*Set INPUT\.MAX_SIZE_TRAIN >= 1500"),
])
def test_short_side_above_the_long_side_cap_is_refused(is_train, opts, message):
    with pytest.raises(ValueError, match=message):
        build_augmentations(_cfg(*opts), is_train=is_train)


def test_unknown_random_flip_is_refused():
    with pytest.raises(ValueError, match=r"INPUT\.RANDOM_FLIP is 'diagonal'; valid values: \['horizontal', "
                                         r"'vertical', 'none'\]"):
        build_augmentations(_cfg("INPUT.RANDOM_FLIP", "diagonal"), is_train=True)


def test_unknown_min_size_sampling_is_refused():
    with pytest.raises(ValueError, match=r"ResizeShortestEdge sample_style 'uniform' is not one of"):
        build_augmentations(_cfg("INPUT.MIN_SIZE_TRAIN_SAMPLING", "uniform"), is_train=True)


def test_unknown_input_format_is_refused():
    with pytest.raises(ValueError, match=r"image_format 'YUV' is not one of \['RGB', 'BGR'\]"):
        DatasetMapper(**DatasetMapper.from_config(_cfg("INPUT.FORMAT", "YUV"), is_train=False))


def test_negative_num_workers_is_refused():
    with pytest.raises(ValueError, match=r"DATALOADER\.NUM_WORKERS is -1; expected 0"):
        build_detection_test_loader(_cfg("DATALOADER.NUM_WORKERS", "-1"), "unused", dataset=[{"file_name": "x"}])


def test_zero_test_batch_is_refused():
    cfg = _cfg("TEST.IMS_PER_BATCH", "0", "DATALOADER.NUM_WORKERS", "0")
    with pytest.raises(ValueError, match=r"TEST\.IMS_PER_BATCH must be positive; got 0"):
        build_detection_test_loader(cfg, "unused", mapper=lambda d: d, dataset=[{"file_name": "x"}])


def test_zero_training_batch_is_refused():
    cfg = _cfg("SOLVER.IMS_PER_BATCH", "0", "DATALOADER.NUM_WORKERS", "0")
    with pytest.raises(ValueError, match=r"SOLVER\.IMS_PER_BATCH \(0\) must be a positive multiple of the number "
                                         r"of processes \(1\)"):
        build_detection_train_loader(cfg, mapper=lambda d, rng=None: d,
                                     dataset=[{"file_name": "x", "height": 4, "width": 4}])


# ------------------------------------------------------------------------------------------ solver recipe


def _tiny_model():
    return nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))


@pytest.mark.parametrize("opts,message", [
    (["SOLVER.OPTIMIZER", "Adam"], r"Unknown SOLVER\.OPTIMIZER 'Adam'; valid: SGD, AdamW \(closest: 'AdamW'\)"),
    (["SOLVER.BASE_LR", "0.0"], r"SOLVER\.BASE_LR must be positive; got 0\.0"),
    (["SOLVER.WEIGHT_DECAY", "-0.0001"], r"SOLVER\.WEIGHT_DECAY must be >= 0; got -0\.0001"),
    (["SOLVER.WEIGHT_DECAY_NORM", "-1.0"], r"SOLVER\.WEIGHT_DECAY_NORM must be >= 0; got -1\.0"),
    (["SOLVER.OPTIMIZER", "AdamW", "SOLVER.BETAS", "(0.9, 1.5)"],
     r"SOLVER\.BETAS must be two numbers in \[0, 1\); got \[0\.9, 1\.5\]"),
])
def test_bad_optimizer_recipe_is_refused(opts, message):
    with pytest.raises(ValueError, match=message):
        build_optimizer(_cfg(*opts), _tiny_model())


@pytest.mark.parametrize("opts,message", [
    (["SOLVER.LR_SCHEDULER_NAME", "WarmupCosine"],
     r"Unknown SOLVER\.LR_SCHEDULER_NAME 'WarmupCosine'; valid: .*\(closest: 'WarmupCosineLR'\)"),
    (["SOLVER.WARMUP_METHOD", "exp"], r"Unknown warmup method 'exp' \(SOLVER\.WARMUP_METHOD\)"),
    (["SOLVER.STEPS", "(80000, 60000)"], r"SOLVER\.STEPS must be increasing; got \[80000, 60000\]"),
    (["SOLVER.WARMUP_FACTOR", "0.0"], r"0 < SOLVER\.WARMUP_FACTOR <= 1; got 1000 and 0\.0"),
])
def test_bad_schedule_recipe_is_refused(opts, message):
    optimizer = torch.optim.SGD(_tiny_model().parameters(), lr=0.01)
    with pytest.raises(ValueError, match=message):
        build_lr_scheduler(_cfg(*opts), optimizer)


@pytest.mark.parametrize("opts,message", [
    (["MODEL_EMA.DECAY", "-0.5"], r"MODEL_EMA\.DECAY must be in \[0, 1\) \(e\.g\. 0\.9998\); got -0\.5"),
    (["MODEL_EMA.DECAY", "1.0"], r"MODEL_EMA\.DECAY must be in \[0, 1\) \(e\.g\. 0\.9998\); got 1\.0"),
    (["MODEL_EMA.RAMP_ITERS", "-1"], r"MODEL_EMA\.RAMP_ITERS must be >= 0 \(0 = no ramp\); got -1"),
])
def test_bad_ema_recipe_is_refused(opts, message):
    with pytest.raises(ValueError, match=message):
        build_model_ema(_cfg("MODEL_EMA.ENABLED", "True", *opts), _tiny_model())

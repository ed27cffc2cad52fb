"""Config handling of experiments: paths, overrides, the run hash, the budget and data set checks."""
import os

import pytest

from retinadet.experiments.configs import (
    ExperimentInputError,
    check_same_datasets,
    config_hash,
    format_value,
    load_config,
    model_zoo_config_path,
    overrides_from_dict,
    resolve_config_path,
    schedule_overrides,
)
from retinadet.model_zoo import config_root

TINY = os.path.join(config_root(), "quick", "retinanet_R_18_shapes_tiny.yaml")
SHAPES = os.path.join(config_root(), "shapes", "retinanet_R_18_FPN.yaml")
TINY_NAME = "retinanet_R_18_shapes_tiny.yaml"


def test_resolve_takes_paths_then_model_zoo_names_and_names_the_closest_files(tmp_path, monkeypatch):
    assert resolve_config_path(TINY) == TINY
    assert resolve_config_path("quick/retinanet_R_18_shapes_tiny.yaml") == TINY
    assert model_zoo_config_path("quick/retinanet_R_18_shapes_tiny.yaml") == TINY
    monkeypatch.chdir(tmp_path)
    # The repository's spelling, configs/..., is the model-zoo name from any folder.
    assert resolve_config_path("configs/quick/retinanet_R_18_shapes_tiny.yaml") == TINY
    # A file in the working directory wins over the model zoo.
    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "retinanet_R_18_shapes_tiny.yaml").write_text(f'_BASE_: "{TINY}"\n')
    assert resolve_config_path("quick/retinanet_R_18_shapes_tiny.yaml") == str(tmp_path / "quick" / TINY_NAME)
    with pytest.raises(ExperimentInputError) as info:
        resolve_config_path("configs/quick/retinanet_R18_shapes_tiny.yaml", what="--base-config")
    message = str(info.value)
    assert "--base-config 'configs/quick/retinanet_R18_shapes_tiny.yaml' does not exist" in message
    assert f"(looked in the working directory {tmp_path} and the model zoo {config_root()})" in message
    assert "quick/retinanet_R_18_shapes_tiny.yaml" in message.split("Closest existing config files:")[1]
    with pytest.raises(ExperimentInputError, match="base config of preset 'x': 'quick/none.yaml' is not a model-zoo"):
        model_zoo_config_path("quick/none.yaml", what="base config of preset 'x'")


def test_unknown_override_key_surfaces_the_config_systems_suggestion():
    with pytest.raises(ExperimentInputError) as info:
        load_config(TINY, ["SOLVER.BASE_LRR", "0.1"], source="the command line")
    assert "Unknown config key 'SOLVER.BASE_LRR'" in str(info.value)
    assert "Did you mean 'SOLVER.BASE_LR'?" in str(info.value)
    with pytest.raises(ExperimentInputError, match="OUTPUT_DIR cannot be overridden"):
        load_config(TINY, ["OUTPUT_DIR", "/tmp/x"])
    with pytest.raises(ExperimentInputError, match="odd number"):
        load_config(TINY, ["SOLVER.BASE_LR"])
    with pytest.raises(ExperimentInputError, match="SOLVER.MAX_ITER"):
        load_config(TINY, ["SOLVER.MAX_ITER", "'many'"])


def test_format_value_round_trips_through_the_config_system():
    values = {"MODEL.CLS_LOSS.NAME": "SigmoidFocalLoss", "MODEL.CLS_LOSS.ALPHA": -1.0,
              "MODEL.RETINANET.SAMPLER.NAME": "", "MODEL.ANCHOR_GENERATOR.SCALES": [1.0, 2 ** (1.0 / 3)],
              "SOLVER.STEPS": (7, 9), "TRAIN.LOSS_CURVE": False}
    cfg = load_config(TINY, overrides_from_dict(values))
    assert cfg.MODEL.CLS_LOSS.NAME == "SigmoidFocalLoss" and cfg.MODEL.CLS_LOSS.ALPHA == -1.0
    assert cfg.MODEL.RETINANET.SAMPLER.NAME == ""
    assert list(cfg.MODEL.ANCHOR_GENERATOR.SCALES) == [1.0, 2 ** (1.0 / 3)]
    assert tuple(cfg.SOLVER.STEPS) == (7, 9) and cfg.TRAIN.LOSS_CURVE is False
    assert format_value("") == "''" and format_value((1, 2)) == "[1, 2]"


def test_config_hash_follows_the_effective_config_only():
    base = config_hash(load_config(TINY))
    # The same values spelled differently, and another OUTPUT_DIR: same hash.
    same = load_config(TINY, ["MODEL.CLS_LOSS.GAMMA", "2", "MODEL.CLS_LOSS.ALPHA", "0.25"])
    same.OUTPUT_DIR = "/elsewhere"
    assert config_hash(same) == base
    assert config_hash(load_config(TINY, ["MODEL.CLS_LOSS.GAMMA", "1.0"])) != base
    assert config_hash(load_config(TINY, ["DATASETS.ROOT", "/data"])) != base
    assert len(base) == 10 and int(base, 16) >= 0


def test_schedule_overrides_keep_the_shape_of_the_schedule():
    cfg = load_config(TINY, ["SOLVER.MAX_ITER", "360", "SOLVER.STEPS", "(240, 320)", "SOLVER.WARMUP_ITERS", "70"])
    # 36 / 360 = 0.1: steps 24, 32; warmup round(7.0) = 7.
    assert schedule_overrides(cfg, 36) == ["SOLVER.MAX_ITER", "36", "SOLVER.STEPS", "[24, 32]",
                                           "SOLVER.WARMUP_ITERS", "7"]
    # 3 / 360: a positive warmup and steps stay >= 1.
    assert schedule_overrides(cfg, 3) == ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "[2, 3]", "SOLVER.WARMUP_ITERS", "1"]
    assert schedule_overrides(cfg, 360) == []
    scaled = load_config(TINY, ["SOLVER.MAX_ITER", "360", "SOLVER.STEPS", "(240, 320)", "SOLVER.WARMUP_ITERS", "70",
                                *schedule_overrides(cfg, 720)])
    assert (scaled.SOLVER.MAX_ITER, tuple(scaled.SOLVER.STEPS), scaled.SOLVER.WARMUP_ITERS) == (720, (480, 640), 140)
    with pytest.raises(ExperimentInputError, match="positive"):
        schedule_overrides(cfg, 0)


def test_different_data_sets_name_both_configs():
    tiny, shapes = load_config(TINY), load_config(SHAPES)
    with pytest.raises(ExperimentInputError) as info:
        check_same_datasets([("tiny.yaml", tiny), ("shapes.yaml", shapes)])
    message = str(info.value)
    assert "DATASETS.TRAIN is ['shapes_train_tiny'] in tiny.yaml but ['shapes_easy_train'] in shapes.yaml" in message
    same = load_config(SHAPES, ["DATASETS.TRAIN", "('shapes_train_tiny',)", "DATASETS.TEST", "('shapes_val_tiny',)"])
    check_same_datasets([("tiny.yaml", tiny), ("shapes.yaml", same)])

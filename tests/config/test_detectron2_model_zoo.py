"""detectron2's model-zoo configs (their merged values, recorded by tools/make_detectron2_fixtures.py from
the real detectron2) translate with nothing refused or dropped, and our COCO-Detection configs give the
same model and training recipe, or a difference listed here with its reason."""
import json
import os

import pytest
import yaml

from retinadet.config import get_cfg
from retinadet.config.detectron2 import _flatten
from retinadet.utils.testing import config_file

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "detectron2",
                   "model_zoo_configs.json")
with open(ZOO) as _f:
    MODEL_ZOO = json.load(_f)

# Keys where our COCO-Detection configs differ from detectron2's model-zoo file on purpose.
INTENDED = {
    "MODEL.DEVICE": "a full detectron2 config says cuda; retinadet's configs leave the device to the machine",
    "MODEL.WEIGHTS": "detectron2 names a download URL; retinadet downloads nothing (give a local file)",
    "DATASETS.TRAIN": "detectron2 names its registered COCO sets; retinadet registers no COCO paths of its own",
    "DATASETS.TEST": "as DATASETS.TRAIN",
    "DATALOADER.NUM_WORKERS": "retinadet's default, 2, suits the 2-core machines it is developed on",
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "clipping is off in both (ENABLED False): the type and value change nothing",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": "as CLIP_TYPE",
    "MODEL.RESNETS.RES2_OUT_CHANNELS": "0 means the standard width, 256 for a ResNet-50: the same network",
}


def _load_recorded(tmp_path, name):
    path = tmp_path / name.replace("/", "_")
    path.write_text(yaml.safe_dump(MODEL_ZOO[name]))
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    return cfg


@pytest.mark.parametrize("name", sorted(MODEL_ZOO))
def test_every_model_zoo_config_translates(tmp_path, name):
    cfg = _load_recorded(tmp_path, name)
    zoo = MODEL_ZOO[name]["MODEL"]
    assert cfg.MODEL.META_ARCHITECTURE == zoo["META_ARCHITECTURE"]
    assert cfg.MODEL.RESNETS.DEPTH == zoo["RESNETS"]["DEPTH"]
    assert list(cfg.SOLVER.STEPS) == MODEL_ZOO[name]["SOLVER"]["STEPS"]
    assert cfg.SOLVER.MAX_ITER == MODEL_ZOO[name]["SOLVER"]["MAX_ITER"]


@pytest.mark.parametrize("ours, theirs", [
    ("COCO-Detection/retinanet_R_50_FPN_1x.yaml", "COCO-Detection/retinanet_R_50_FPN_1x.yaml"),
    ("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"),
])
def test_our_coco_configs_are_detectron2s_recipe(tmp_path, ours, theirs):
    mine = get_cfg()
    mine.merge_from_file(config_file(ours))
    flat_mine, flat_theirs = _flatten(mine), _flatten(_load_recorded(tmp_path, theirs))

    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    differ = sorted(k for k in flat_mine if plain(flat_mine[k]) != plain(flat_theirs[k]))
    assert set(differ) <= set(INTENDED), [(k, flat_mine[k], flat_theirs[k]) for k in differ if k not in INTENDED]

"""tools/convert_config.py: a detectron2 config written as a plain retinadet YAML that loads on its own."""
import yaml

from retinadet.config import get_cfg
from retinadet.utils.testing import load_tool
from tests.config.test_detectron2_translation import D2_RCNN_BASE, D2_RETINANET_BASE, _files

convert_config = load_tool("convert_config")


def _same(a, b):
    return yaml.safe_load(a.dump()) == yaml.safe_load(b.dump())


def test_the_translation_loads_on_its_own_into_the_same_config(tmp_path, capsys):
    for name, base, child in (("retinanet", D2_RETINANET_BASE, "MODEL:\n  WEIGHTS: \"\"\n"),
                              ("rcnn", D2_RCNN_BASE, "MODEL:\n  MASK_ON: False\n")):
        folder = tmp_path / name
        folder.mkdir()
        source = _files(folder, base, child)
        out = folder / "out.yaml"
        assert convert_config.main(["--source", "detectron2", source, str(out)]) == 0
        text = out.read_text()
        assert text.startswith("# Translated from the detectron2 config")
        assert "VERSION" not in text and "IOU_LABELS" not in text  # retinadet keys only
        expected, alone = get_cfg(), get_cfg()
        expected.merge_from_file(source)
        alone.merge_from_file(str(out))
        assert yaml.safe_load(alone.dump()) == yaml.safe_load(expected.dump())
    retinanet = yaml.safe_load((tmp_path / "retinanet" / "out.yaml").read_text())
    assert retinanet["INPUT"]["FORMAT"] == "BGR" and retinanet["MODEL"]["BOX_LOSS"] == {"BETA": 0.0}
    assert "RPN" not in retinanet["MODEL"]  # the other detector's keys stay at the defaults
    assert "Wrote" in capsys.readouterr().out


def test_refusals_write_nothing(tmp_path, capsys):
    source = _files(tmp_path, D2_RCNN_BASE, "MODEL:\n  MASK_ON: True\n")
    out = tmp_path / "out.yaml"
    assert convert_config.main(["--source", "detectron2", source, str(out)]) == 1
    assert "MODEL.MASK_ON = True" in capsys.readouterr().err and not out.exists()
    ours = tmp_path / "ours.yaml"
    ours.write_text("SOLVER:\n  BASE_LR: 0.1\n")
    assert convert_config.main(["--source", "detectron2", str(ours), str(out)]) == 1
    assert "is not a detectron2 config" in capsys.readouterr().err and not out.exists()

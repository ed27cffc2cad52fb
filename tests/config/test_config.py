"""The config system: defaults, _BASE_ inheritance, overrides, strict keys and types, safe YAML."""
import os
import re

import pytest

from retinadet.config import get_cfg
from retinadet.config import defaults as defaults_module


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_every_core_key_has_a_one_line_comment():
    source = open(defaults_module.__file__).read()
    assignments = [line for line in source.splitlines() if re.match(r"_C\.[A-Z0-9_.]+ = ", line)]
    assert len(assignments) > 50
    leaves = [line for line in assignments if not line.rstrip().endswith("CN()")]
    uncommented = [line for line in leaves if "#" not in line]
    assert uncommented == []
    # and every leaf of the config tree is among them (no key created elsewhere)
    cfg = defaults_module._C

    def leaf_keys(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaf_keys(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assigned = {line.split(" = ")[0][len("_C."):] for line in leaves}
    assert set(leaf_keys(cfg)) == assigned


def test_defaults_are_the_papers_retinanet():
    cfg = get_cfg()
    assert cfg.MODEL.MATCHER.THRESHOLDS == [0.4, 0.5]
    assert (cfg.MODEL.CLS_LOSS.ALPHA, cfg.MODEL.CLS_LOSS.GAMMA) == (0.25, 2.0)
    assert cfg.MODEL.HEAD.PRIOR_PROB == 0.01
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == [32, 64, 128, 256, 512]
    assert len(cfg.MODEL.ANCHOR_GENERATOR.SCALES) * len(cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS) == 9
    assert cfg.MODEL.HEAD.IN_FEATURES == ["p3", "p4", "p5", "p6", "p7"]


def test_base_inheritance_two_levels_and_overrides(tmp_path):
    _write(tmp_path / "base.yaml", "MODEL:\n  RETINANET:\n    NUM_CLASSES: 7\n  FPN:\n    OUT_CHANNELS: 128\n")
    _write(tmp_path / "mid.yaml", '_BASE_: "base.yaml"\nMODEL:\n  FPN:\n    OUT_CHANNELS: 64\n')
    top = _write(tmp_path / "top.yaml", '_BASE_: "mid.yaml"\nMODEL:\n  HEAD:\n    NUM_CONVS: 2\n')
    cfg = get_cfg()
    cfg.merge_from_file(top)
    assert (cfg.MODEL.RETINANET.NUM_CLASSES, cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.HEAD.NUM_CONVS) == (7, 64, 2)
    cfg.merge_from_list(["MODEL.HEAD.NUM_CONVS", "3", "MODEL.MATCHER.THRESHOLDS", "[0.3, 0.6]"])
    assert cfg.MODEL.HEAD.NUM_CONVS == 3 and cfg.MODEL.MATCHER.THRESHOLDS == [0.3, 0.6]


def test_unknown_key_names_the_key_the_source_and_the_closest(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "MODEL:\n  RETINANET:\n    NUM_CLASES: 3\n")
    with pytest.raises(KeyError) as info:
        get_cfg().merge_from_file(bad)
    message = str(info.value)
    assert "MODEL.RETINANET.NUM_CLASES" in message and "bad.yaml" in message
    assert "Did you mean 'MODEL.RETINANET.NUM_CLASSES'?" in message
    with pytest.raises(KeyError, match="Did you mean 'MODEL.FPN.OUT_CHANNELS'"):
        get_cfg().merge_from_list(["MODEL.FPN.OUT_CHANNEL", "3"])


def test_wrong_type_names_key_value_and_expected_type(tmp_path):
    with pytest.raises(ValueError) as info:
        get_cfg().merge_from_list(["MODEL.RETINANET.NUM_CLASSES", "many"])
    message = str(info.value)
    assert "MODEL.RETINANET.NUM_CLASSES" in message and "'many'" in message and "expected int" in message
    with pytest.raises(ValueError, match="expected bool"):
        get_cfg().merge_from_list(["MODEL.MATCHER.ALLOW_LOW_QUALITY_MATCHES", "1"])
    with pytest.raises(ValueError, match="MODEL.FPN.*group of keys"):
        get_cfg().merge_from_list(["MODEL.FPN", "3"])
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.CLS_LOSS.GAMMA", "1"])  # an int where a float is expected is fine
    assert cfg.MODEL.CLS_LOSS.GAMMA == 1.0 and isinstance(cfg.MODEL.CLS_LOSS.GAMMA, float)


def test_unsafe_yaml_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    bad = _write(
        tmp_path / "unsafe.yaml",
        f'MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    with pytest.raises(ValueError, match="unsafe.yaml.*not allowed"):
        get_cfg().merge_from_file(bad)
    assert not marker.exists()
    with pytest.raises(ValueError, match="never loads unsafe YAML"):
        get_cfg().merge_from_file(bad, allow_unsafe=True)


def test_base_lists_and_diamonds_merge_in_order(tmp_path):
    # top -> [left, right], both -> root: not a cycle; later bases and the file itself win.
    (tmp_path / "root.yaml").write_text("SOLVER:\n  BASE_LR: 0.1\n  MAX_ITER: 7\n")
    (tmp_path / "left.yaml").write_text('_BASE_: "root.yaml"\nSOLVER:\n  BASE_LR: 0.2\n')
    (tmp_path / "right.yaml").write_text('_BASE_: "root.yaml"\nSOLVER:\n  BASE_LR: 0.3\n')
    (tmp_path / "top.yaml").write_text('_BASE_: ["left.yaml", "right.yaml"]\nSOLVER:\n  WARMUP_ITERS: 3\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "top.yaml"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS) == (0.3, 7, 3)


@pytest.mark.parametrize("name, content, message", [
    ("empty.yaml", b"", r"empty\.yaml is empty; a config is a YAML mapping"),
    ("comments.yaml", b"# nothing\n", r"comments\.yaml is empty"),
    ("binary.yaml", bytes(range(128, 256)), r"binary\.yaml is not a text file \(byte 0 is not UTF-8\)"),
    ("list.yaml", b"- 1\n- 2\n", r"list\.yaml holds a YAML list at its top level"),
    ("scalar.yaml", b"3\n", r"scalar\.yaml holds a YAML int at its top level"),
    ("broken.yaml", b"MODEL: [1\n", r"broken\.yaml is not valid YAML"),
    ("base.yaml", b"_BASE_: 3\n", r"base\.yaml: _BASE_ must be a path or a list of paths; got 3"),
])
def test_files_that_are_not_configs_get_one_line_naming_them(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=message):
        get_cfg().merge_from_file(str(tmp_path / name))


def test_a_base_cycle_names_the_chain(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "b.yaml"\n')
    (tmp_path / "b.yaml").write_text('_BASE_: "c.yaml"\n')
    (tmp_path / "c.yaml").write_text('_BASE_: "a.yaml"\n')
    (tmp_path / "self.yaml").write_text('_BASE_: "self.yaml"\n')
    a, b, c = (os.path.realpath(tmp_path / f"{n}.yaml") for n in "abc")
    with pytest.raises(ValueError, match=re.escape(f"the cycle {a} -> {b} -> {c} -> {a}; remove one _BASE_")):
        get_cfg().merge_from_file(str(tmp_path / "a.yaml"))
    with pytest.raises(ValueError, match="self.yaml is its own _BASE_"):
        get_cfg().merge_from_file(str(tmp_path / "self.yaml"))
    # A section where the base has a plain value is named too.
    (tmp_path / "flat.yaml").write_text("SOLVER: 3\n")
    (tmp_path / "deep.yaml").write_text('_BASE_: "flat.yaml"\nSOLVER:\n  BASE_LR: 0.1\n')
    with pytest.raises(ValueError, match=r"deep\.yaml: SOLVER is a section here but a value in its base"):
        get_cfg().merge_from_file(str(tmp_path / "deep.yaml"))


def test_odd_overrides_and_frozen_configs_are_errors():
    with pytest.raises(ValueError, match="KEY VALUE pairs"):
        get_cfg().merge_from_list(["MODEL.HEAD.NUM_CONVS"])
    cfg = get_cfg()
    cfg.freeze()
    with pytest.raises(AttributeError, match="frozen"):
        cfg.merge_from_list(["MODEL.HEAD.NUM_CONVS", "2"])


def test_dump_round_trips(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RETINANET.NUM_CLASSES", "5", "MODEL.ANCHOR_GENERATOR.OFFSET", "0.5"])
    path = _write(tmp_path / "dumped.yaml", cfg.dump())
    again = get_cfg()
    again.merge_from_file(path)
    assert again == cfg


def test_a_flag_after_the_overrides_is_named():
    with pytest.raises(ValueError, match=r"--eval-only is a command-line flag but comes after the KEY VALUE "
                                         r"overrides .*flags go before the first override"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR", "0.1", "--eval-only"])
    cfg = get_cfg()
    cfg.merge_from_list(["OUTPUT_DIR", "-x", "SOLVER.BASE_LR", "-0.5"])  # values may start with "-"
    assert cfg.OUTPUT_DIR == "-x" and cfg.SOLVER.BASE_LR == -0.5

"""detectron2's ``!!python/object/apply:eval`` anchor sizes, read by an ``ast`` whitelist and never by eval."""
import pytest

from retinadet.config import get_cfg
from retinadet.config.safe_eval import safe_evaluate

# detectron2's Base-RetinaNet.yaml writes its anchor sizes with this expression (three octave scales per
# level); the values are 2^(k/3) times each base size, computed here by hand from the powers of 2.
D2_SIZES = "[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in [32, 64, 128, 256, 512 ]]"


def test_detectron2_anchor_sizes_evaluate_to_the_octave_scales():
    sizes = safe_evaluate(D2_SIZES)
    assert len(sizes) == 5 and all(len(level) == 3 for level in sizes)
    for base, level in zip([32, 64, 128, 256, 512], sizes):
        assert level[0] == base and isinstance(level[0], int)
        assert level[1] == pytest.approx(base * 1.2599210498948732, rel=1e-15)
        assert level[2] == pytest.approx(base * 1.5874010519681994, rel=1e-15)
    assert sizes[0][1] == 32 * 2 ** (1.0 / 3)  # the same float arithmetic as Python's own


@pytest.mark.parametrize("expression, value", [
    ("1 + 2 * 3 - 4 / 8", 6.5), ("-(2 ** 3)", -8), ("(1, 2.5)", (1, 2.5)), ("[]", []),
    ("[[x] for x in range(3)]", [[0], [1], [2]]), ("[x * y for x in [1, 2]]", None),
])
def test_whitelisted_arithmetic(expression, value):
    if value is None:  # y is not a comprehension variable
        with pytest.raises(ValueError, match="the name 'y' is not a comprehension variable"):
            safe_evaluate(expression)
    else:
        assert safe_evaluate(expression) == value


@pytest.mark.parametrize("expression, why", [
    ("__import__('os').system('true')", "Call is not allowed"),
    ("(1).__class__", "Attribute is not allowed"),
    ("[1][0]", "Subscript is not allowed"),
    ("'a' * 3", "a str literal is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("True + 1", "a bool literal is not allowed"),
    ("[x for x in [1] if x]", "a comprehension with 'if'"),
    ("10 ** 10 ** 10", "an exponent beyond"),
    ("[0 for x in range(10 ** 6)]", "more than 100000 list elements"),
    ("1 / 0", "division by zero"),
    ("(-8) ** 0.5", "not a finite real number"),
    ("[1, 2", "not a Python expression"),
])
def test_everything_else_is_refused_naming_the_construct(expression, why):
    with pytest.raises(ValueError, match=why):
        safe_evaluate(expression)


def test_a_config_file_reads_the_eval_tag(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(f'MODEL:\n  ANCHOR_GENERATOR:\n    SIZES: !!python/object/apply:eval ["{D2_SIZES}"]\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert [level[0] for level in cfg.MODEL.ANCHOR_GENERATOR.SIZES] == [32, 64, 128, 256, 512]


def test_an_eval_tag_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.yaml"
    path.write_text(f'OUTPUT_DIR: !!python/object/apply:eval ["__import__(\'os\').system(\'touch {marker}\')"]\n')
    with pytest.raises(ValueError, match=r"evil\.yaml uses a YAML tag that is not allowed: "
                                         r"!!python/object/apply:eval .* is not evaluated: Call is not allowed"):
        get_cfg().merge_from_file(str(path))
    assert not marker.exists()


def test_a_python_config_is_not_executed(tmp_path):
    marker = tmp_path / "MARKER"
    path = tmp_path / "retinanet_R_50_FPN_1x.py"
    path.write_text(f"import os\nos.system('touch {marker}')\n")
    with pytest.raises(ValueError, match=r"is a Python config \(detectron2's LazyConfig\); Python configs are not "
                                         r"executed: retinadet reads YAML configs"):
        get_cfg().merge_from_file(str(path))
    assert not marker.exists()

"""Tables, plots and presets, from made-up run records."""
import os

import numpy as np
import pytest

from retinadet.experiments.configs import ExperimentInputError
from retinadet.experiments.presets import (
    ABLATION_PRESETS,
    COMPARE_PRESETS,
    AblationRow,
    AblationTable,
    get_preset,
    row_overrides,
    run_name,
    select_tables,
)
from retinadet.experiments.report import (
    ablation_markdown,
    ap_vs_gamma_plot,
    comparison_markdown,
    focal_loss_curves,
    markdown_table,
    result_cell,
    seed_cell,
    speed_accuracy_plot,
)
from retinadet.experiments.runner import RunRecord
from retinadet.model_zoo import get_config_file


def _record(name, status="ok", ap=30.0, diverged_at=None, **kw):
    metrics = {"AP": ap, "AP50": ap + 20, "AP75": ap - 5, "APs": 1.0, "APm": 2.0, "APl": float("nan")} if status == "ok" else {}
    return RunRecord(name=name, config_file=f"{name}.yaml", overrides=[], hash=name, output_dir=f"/runs/{name}",
                     status=status, max_iter=100, metrics=metrics, diverged_at=diverged_at, **kw)


def test_comparison_table_rows():
    records = [
        _record("retina", ap=31.25, train_its=3.456, inference_ms=41.04, peak_memory_mib=1234.4),
        _record("frcnn", status="diverged", diverged_at=12, train_its=2.0),
        _record("broken", status="failed"),
    ]
    text = comparison_markdown(records, max_iter=100)
    lines = text.splitlines()
    assert lines[0] == "Same budget: SOLVER.MAX_ITER 100 for every config."
    assert lines[2] == ("| config | AP | AP50 | AP75 | APs | APm | APl | train it/s | inference ms/img | "
                        "peak memory MiB |")
    assert lines[4] == "| retina | 31.2 | 51.2 | 26.2 | 1.0 | 2.0 | - | 3.46 | 41.0 | 1234 |"
    assert lines[5] == "| frcnn | diverged (it 12) | - | - | - | - | - | 2.00 | - | - |"
    assert lines[6] == "| broken | failed | - | - | - | - | - | - | - | - |"


def test_result_cells():
    assert result_cell(None) == "not run"
    assert result_cell(_record("a", ap=7.04)) == "7.0"
    assert result_cell(_record("a", status="diverged")) == "diverged (AP NaN)"
    assert result_cell(_record("a", status="diverged", diverged_at=0)) == "diverged (it 0)"
    assert markdown_table(["x", "y"], [[1, "b"]]) == "| x | y |\n|---|---|\n| 1 | b |"


def _grid():
    rows = tuple(AblationRow({"gamma": g, "alpha": a}, {}) for g in (0.0, 2.0) for a in (0.25, 0.75))
    return AblationTable("a", "(a) grid", rows, grid=("gamma", "alpha"))


def test_grid_table_has_gamma_rows_and_alpha_columns():
    records = [_record("g0a.25", ap=10.0), _record("g0a.75", status="diverged", diverged_at=3),
               _record("g2a.25", ap=34.0), None]
    text = ablation_markdown(_grid(), records)
    assert text.splitlines()[0] == "### (a) grid"
    assert "| gamma \\ alpha | alpha=0.25 | alpha=0.75 |" in text
    assert "| 0 | 10.0 | diverged (it 3) |" in text
    assert "| 2 | 34.0 | not run |" in text
    with pytest.raises(ValueError, match="4 rows but 3 records"):
        ablation_markdown(_grid(), records[:3])


def test_row_table_has_label_columns_then_ap():
    table = AblationTable("b", "(b) methods", (AblationRow({"method": "OHEM", "batch size": 128}, {}),
                                              AblationRow({"method": "FL", "batch size": "-"}, {})))
    text = ablation_markdown(table, [_record("ohem", status="failed"), _record("fl", ap=33.3)])
    assert "| method | batch size | AP | AP50 | AP75 |" in text
    assert "| OHEM | 128 | failed | - | - |" in text
    assert "| FL | - | 33.3 | 53.3 | 28.3 |" in text


def test_cells_over_seeds_show_mean_and_sample_std():
    # AP 30 and 34: mean 32, sample std sqrt(((30-32)^2 + (34-32)^2) / 1) = 2.83.
    two = [_record("s0", ap=30.0), _record("s1", ap=34.0)]
    assert seed_cell(two) == "32.0 ± 2.8"
    assert seed_cell(two, "AP50") == "52.0 ± 2.8"
    assert seed_cell(two + [_record("s2", status="failed")]) == "32.0 ± 2.8 (2/3 finished)"
    assert seed_cell([_record("s0", status="diverged", diverged_at=5), _record("s1", status="failed")]) == \
        "diverged (it 5)"
    assert seed_cell([_record("s0", ap=7.04)]) == "7.0" and seed_cell([]) == "not run"
    table = AblationTable("b", "(b) methods", (AblationRow({"method": "OHEM"}, {}), AblationRow({"method": "FL"}, {})))
    text = ablation_markdown(table, [[_record("o0", status="failed"), _record("o1", status="failed")], two])
    assert "| OHEM | failed | - | - |" in text
    assert "| FL | 32.0 ± 2.8 | 52.0 ± 2.8 | 27.0 ± 2.8 |" in text
    grid = ablation_markdown(_grid(), [two, [_record("x", ap=10.0)], None, two[:1]])
    assert "| 0 | 32.0 ± 2.8 | 10.0 |" in grid and "| 2 | not run | 30.0 |" in grid


def test_plots_draw_finished_runs_only(tmp_path):
    path = str(tmp_path / "ap.png")
    records = [_record("a", ap=10.0), _record("b", status="diverged", diverged_at=3), _record("c", ap=34.0), None]
    assert ap_vs_gamma_plot(_grid(), records, path) == 2
    seeds = [[_record("a0", ap=10.0), _record("a1", ap=12.0)], [], [_record("c0", status="failed")], records[:1]]
    assert ap_vs_gamma_plot(_grid(), seeds, path) == 2  # a mean with its bar, and one single run
    assert os.path.getsize(path) > 1000
    path = str(tmp_path / "speed.png")
    records = [_record("a", inference_ms=10.0), _record("b", inference_ms=20.0), _record("c", status="failed")]
    assert speed_accuracy_plot(records, path) == 2
    assert os.path.getsize(path) > 1000


def test_focal_loss_curves_match_the_papers_formula():
    p = np.array([0.01, 0.1, 0.5, 0.9, 1.0])
    curves = focal_loss_curves(p, gammas=(0.0, 0.5, 2.0, 5.0))
    for gamma, loss in curves.items():
        expected = -((1 - p) ** gamma) * np.log(p)
        np.testing.assert_allclose(loss, expected, rtol=1e-9, atol=1e-11)
    # -log(0.5) * 0.5^2 by hand.
    assert curves[2.0][2] == pytest.approx(0.6931471805599453 * 0.25)
    with pytest.raises(ValueError):
        focal_loss_curves(np.array([0.0, 0.5]))


def test_focal_preset_shares_the_reference_run_between_tables():
    preset = get_preset("focal", ABLATION_PRESETS)
    keys = [t.key for t in preset.tables]
    assert keys == ["a", "b", "c", "d"]
    a, b, c, d = preset.tables
    assert len(a.rows) == 15 and a.grid == ("gamma", "alpha")
    reference = row_overrides(preset, next(r for r in a.rows if r.labels == {"gamma": 2.0, "alpha": 0.25}))
    assert reference == preset.reference
    assert row_overrides(preset, b.rows[2]) == reference and row_overrides(preset, c.rows[1]) == reference
    assert row_overrides(preset, d.rows[0]) == reference
    ohem = row_overrides(preset, b.rows[0])
    assert ohem["MODEL.RETINANET.SAMPLER.NAME"] == "OHEMSampler" and ohem["MODEL.CLS_LOSS.ALPHA"] == -1.0
    assert ohem["MODEL.RETINANET.SAMPLER.BATCH_SIZE_PER_IMAGE"] == 128 and ohem["MODEL.CLS_LOSS.GAMMA"] == 0.0
    one_to_three = row_overrides(preset, b.rows[1])
    assert one_to_three["MODEL.RETINANET.SAMPLER.POSITIVE_FRACTION"] == 0.25
    assert row_overrides(preset, d.rows[3])["MODEL.HEAD.PRIOR_PROB"] == 0.5
    # Distinct settings: 15 + OHEM + 1:3 + 1 anchor + FL without prior + CE with and without = 21.
    distinct = {tuple(sorted((k, str(v)) for k, v in row_overrides(preset, r).items()))
                for t in preset.tables for r in t.rows}
    assert len(distinct) == 21
    assert run_name(b, b.rows[1]) == "b_method1to3CE_batchsize256"
    assert [t.key for t in select_tables(preset, ["c", "a"])] == ["a", "c"]
    with pytest.raises(ExperimentInputError, match="no table 'e'; its tables: a, b, c, d"):
        select_tables(preset, ["e"])


def test_unknown_preset_lists_presets_and_the_closest():
    with pytest.raises(ExperimentInputError) as info:
        get_preset("two-stge", COMPARE_PRESETS)
    assert "Unknown preset 'two-stge'; presets: two-stage. Did you mean 'two-stage'?" == str(info.value)
    # Model-zoo names: the configs are found installed as in a checkout.
    assert COMPARE_PRESETS["two-stage"] == ("shapes/retinanet_R_18_FPN.yaml", "shapes/faster_rcnn_R_18_FPN.yaml")
    assert ABLATION_PRESETS["focal"].base_config == "shapes/retinanet_R_18_ablation.yaml"
    for name in [*COMPARE_PRESETS["two-stage"], ABLATION_PRESETS["focal"].pretrain_config]:
        assert os.path.isfile(get_config_file(name))


def test_seed_table_mean_and_sample_deviation():
    from retinadet.experiments.report import seed_comparison_markdown, seed_statistics

    retina = [_record("retina (seed 0)", ap=30.0, train_its=2.0), _record("retina (seed 1)", ap=34.0, train_its=4.0),
              _record("retina (seed 2)", status="diverged", diverged_at=3)]
    # Hand computation: mean 32, sample std sqrt(((30-32)^2 + (34-32)^2) / 1) = 2.83; APl is NaN everywhere.
    stats = seed_statistics(retina, "retina")
    assert stats["AP"] == pytest.approx((32.0, 2.8284271, 2)) and stats["train_its"] == pytest.approx((3.0, 1.4142136, 2))
    assert "APl" not in stats
    lonely = [_record("frcnn (seed 0)", ap=10.0)]
    failed = [_record("broken (seed 0)", status="failed"), _record("broken (seed 1)", status="failed")]
    lines = seed_comparison_markdown([("retina", retina), ("frcnn", lonely), ("broken", failed)], max_iter=50).splitlines()
    assert lines[0] == "Same budget: SOLVER.MAX_ITER 50 for every config."
    assert lines[2].startswith("Metrics: mean ± sample standard deviation")
    assert lines[6] == "| retina | 2/3 | 32.0 ± 2.8 | 52.0 ± 2.8 | 27.0 ± 2.8 | 1.0 ± 0.0 | 2.0 ± 0.0 | - | 3.00 | - | - |"
    assert lines[7] == "| frcnn | 1/1 | 10.0 | 30.0 | 5.0 | 1.0 | 2.0 | - | - | - | - |"
    assert lines[8] == "| broken | 0/2 | failed | - | - | - | - | - | - | - | - |"
    with pytest.raises(ValueError, match="not a seed of 'frcnn'"):
        seed_statistics(retina, "frcnn")

"""The COCO evaluation benchmark on a tiny case: its children measure, agree with pycocotools, and the
table's ratios follow from the times it measured."""
import re

import pytest

from retinadet.benchmark import coco_eval
from retinadet.evaluation import compiled


@pytest.mark.skipif(not compiled.extension_loaded(), reason="compiled COCO evaluator not built")
def test_tiny_run_in_child_processes(tmp_path):
    report = coco_eval.run_benchmark(str(tmp_path), ["shapes"], ["list", "memory"], ["pycocotools", "retinadet"],
                                     rounds=1, num_images=30)
    case = report["cases"]["shapes"]
    assert case["images"] == 30 and case["categories"] == 6 and case["detections"] > 500
    rows = {(r["mode"], r["evaluator"]): r for r in case["rows"]}
    assert sorted(rows) == [("list", "pycocotools"), ("list", "retinadet"), ("memory", "pycocotools"),
                            ("memory", "retinadet")]
    for (mode, _), row in rows.items():
        assert "error" not in row, row
        assert row["total_s"] == pytest.approx(row["load_s"] + row["evaluate_s"])
        assert row["peak_rss_mib"] >= row["rss_before_mib"] > 10
        assert row["max_stats_diff"] == 0.0 and 0 < row["stats"][0] < 1
        assert row["speedup_vs_pycocotools"] == pytest.approx(rows[(mode, "pycocotools")]["total_s"] / row["total_s"])
    table = coco_eval.markdown(report)
    ours = rows[("list", "retinadet")]
    assert re.search(rf"\| list \| retinadet \| {ours['load_s']:.2f} \| {ours['evaluate_s']:.2f} \| "
                     rf"{ours['total_s']:.2f} \| {ours['speedup_vs_pycocotools']:.1f}x \| - \|", table)


def test_missing_evaluator_is_a_row_not_a_crash():
    row = coco_eval._summarise("coco", "list", "faster-coco-eval", None, "not installed")
    assert row["error"] == "not installed"
    assert "| list | faster-coco-eval | not installed |" in coco_eval.markdown(
        {"rounds": 1, "cases": {"coco": {"images": 1, "objects": 1, "detections": 1, "categories": 1,
                                         "rows": [row]}}})

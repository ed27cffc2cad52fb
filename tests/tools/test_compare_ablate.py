"""compare and ablate (retinadet.experiments; tools/compare.py, tools/ablate.py): bad input refused
before any training, the ablation plan, configs as paths or model-zoo names, and end to end on the
tiny shapes splits (three 6-iteration trainings in all, one of them shared by both tools through the
run hash)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from retinadet.experiments import ablate, compare

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = "configs/quick/retinanet_R_18_shapes_tiny.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


def _run(tool, argv, capsys):
    code = tool.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ bad input, nothing trained
def test_unknown_config_path_names_the_closest(tmp_path, capsys):
    code, out, err = _run(compare, ["--configs", TINY, "configs/quick/retinanet_R18_shapes_tiny.yaml",
                                    "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "'configs/quick/retinanet_R18_shapes_tiny.yaml' does not exist" in err
    assert "Closest existing config files: quick/retinanet_R_18_shapes_tiny.yaml" in err
    assert os.listdir(tmp_path) == []


def test_the_scripts_in_tools_run_the_package_commands(tmp_path):
    """python tools/compare.py / tools/ablate.py as a user runs them: bad input exits 2 before training."""
    for tool, argv in (("compare", ["--configs", "quick/nothing.yaml"]), ("ablate", ["--preset", "focl"])):
        proc = subprocess.run([sys.executable, os.path.join("tools", f"{tool}.py"), *argv, "--output-dir",
                               str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and ("'quick/nothing.yaml' does not exist" in proc.stderr
                                                      or "Unknown preset 'focl'" in proc.stderr)
    assert os.listdir(tmp_path) == []


def test_configs_are_paths_or_model_zoo_names_from_any_folder(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: configs/... is no path here
    local = tmp_path / "mine.yaml"
    local.write_text(f'_BASE_: "{os.path.join(REPO, TINY)}"\n')
    code, out, err = _run(compare, ["--configs", "quick/retinanet_R_18_shapes_tiny.yaml", TINY, "mine.yaml",
                                    "--dry-run", "DATASETS.ROOT", data_root], capsys)
    assert code == 0, err
    zoo_file = os.path.join(REPO, TINY)
    assert out.count(f": {zoo_file} ") == 2 and f": {local} " in out
    code, _, err = _run(compare, ["--configs", "shapes/retinanet_R_18_FPN.yml"], capsys)
    zoo = os.path.join(REPO, "configs")
    assert code == 2 and f"looked in the working directory {tmp_path} and the model zoo {zoo}" in err
    assert "Closest existing config files: shapes/retinanet_R_18_FPN.yaml" in err
    assert os.listdir(tmp_path) == ["mine.yaml"]


def test_different_data_sets_are_refused(tmp_path, capsys):
    code, _, err = _run(compare, ["--configs", TINY, "configs/shapes/retinanet_R_18_FPN.yaml",
                                  "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "DATASETS.TRAIN is ['shapes_train_tiny'] in" in err and "retinanet_R_18_shapes_tiny.yaml" in err
    assert "but ['shapes_easy_train'] in" in err and "retinanet_R_18_FPN.yaml" in err


def test_unknown_presets_list_the_presets(capsys):
    code, _, err = _run(compare, ["--preset", "two-stag"], capsys)
    assert code == 2 and "Unknown preset 'two-stag'; presets: two-stage. Did you mean 'two-stage'?" in err
    code, _, err = _run(ablate, ["--preset", "focl"], capsys)
    assert code == 2 and "Unknown preset 'focl'; presets: focal. Did you mean 'focal'?" in err


def test_unknown_override_key_is_surfaced(tmp_path, capsys):
    code, _, err = _run(compare, ["--configs", TINY, "SOLVER.BASE_LRR", "0.1", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and "Unknown config key 'SOLVER.BASE_LRR'" in err and "Did you mean 'SOLVER.BASE_LR'?" in err
    code, _, err = _run(ablate, ["--preset", "focal", "--base-config", TINY, "MODEL.HEAD.PRIOR_PRB", "0.5"], capsys)
    assert code == 2 and "Did you mean 'MODEL.HEAD.PRIOR_PROB'?" in err
    code, _, err = _run(ablate, ["--preset", "focal", "--base-config", "configs/quick/nothing.yaml"], capsys)
    assert code == 2 and "--base-config 'configs/quick/nothing.yaml' does not exist" in err
    assert os.listdir(tmp_path) == []


def test_focal_plan_is_21_runs_at_the_scaled_budget(tmp_path, data_root, capsys):
    code, out, _ = _run(ablate, ["--preset", "focal", "--base-config", TINY, "--budget", "2.5", "--dry-run",
                                 "--output-dir", str(tmp_path), "DATASETS.ROOT", data_root], capsys)
    assert code == 0
    assert "24 table cells, 21 distinct runs of 15 iterations" in out
    # The 6-iteration base (warmup 2, step at 4) scaled by 2.5.
    assert "SOLVER.MAX_ITER 15 SOLVER.STEPS [10] SOLVER.WARMUP_ITERS 5" in out
    assert "c_nsc1_nar1" in out and "d_lossCE_priorpi0.5" in out
    assert os.listdir(tmp_path) == []


def test_rows_start_from_the_pretraining_runs_backbone(tmp_path, data_root, capsys):
    argv = ["--preset", "focal", "--tables", "c", "--dry-run", "--output-dir", str(tmp_path)]
    opts = ["DATASETS.ROOT", data_root]
    code, out, _ = _run(ablate, argv + opts, capsys)  # the preset's own base and pretraining configs
    assert code == 0
    assert "First: pretrain [" in out and "configs/shapes/retinanet_R_18_FPN.yaml" in out  # one demo run
    assert f"(MODEL.BACKBONE.WEIGHTS {tmp_path}{os.sep}pretrain-" in out and out.count("backbone.pth") == 1
    # A replaced base config trains its rows from scratch unless a pretraining config is named.
    code, out, _ = _run(ablate, argv + ["--base-config", TINY] + opts, capsys)
    assert code == 0 and "pretrain" not in out
    code, out, _ = _run(ablate, argv + ["--base-config", TINY, "--pretrain-config", TINY] + opts, capsys)
    assert code == 0 and "First: pretrain [" in out
    code, _, err = _run(ablate, argv + ["--pretrain-config", "configs/quick/nothing.yaml"] + opts, capsys)
    assert code == 2 and "--pretrain-config 'configs/quick/nothing.yaml' does not exist" in err
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ end to end
def test_compare_then_ablate_share_runs(tmp_path, data_root, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the training processes share two cores
    out_dir = str(tmp_path / "results")
    variant = tmp_path / "variant.yaml"
    variant.write_text(f'_BASE_: "{os.path.join(REPO, TINY)}"\nMODEL:\n  RETINANET:\n    SCORE_THRESH_TEST: 0.0\n')
    argv = ["--configs", TINY, str(variant), "--iters", "6", "--output-dir", out_dir, "DATASETS.ROOT", data_root]
    code, out, err = _run(compare, argv, capsys)
    assert code == 0, out + err
    results = json.load(open(os.path.join(out_dir, "results.json")))
    assert results["max_iter"] == 6 and [r["name"] for r in results["runs"]] == ["retinanet_R_18_shapes_tiny", "variant"]
    for r in results["runs"]:
        assert r["status"] == "ok" and r["max_iter"] == 6
        assert 0 <= r["metrics"]["AP"] <= 100 and r["metrics"]["APl"] is None  # the tiny set has no large objects
        assert r["train_its"] > 0 and r["inference_ms"] > 0 and r["peak_memory_mib"] > 0
        run_dir = r["output_dir"]
        assert os.path.basename(run_dir).endswith("-" + r["hash"])
        assert not os.path.exists(os.path.join(run_dir, "loss_curve.png"))
        assert not [f for f in os.listdir(run_dir) if f.startswith("model_0")]  # no periodic checkpoints
    table = open(os.path.join(out_dir, "comparison.md")).read()
    assert "| config | AP | AP50 | AP75 | APs | APm | APl | train it/s | inference ms/img | peak memory MiB |" in table
    assert "| variant |" in table
    assert os.path.getsize(os.path.join(out_dir, "speed_vs_accuracy.png")) > 1000

    # Again: both runs are reused, nothing trains.
    code, out, _ = _run(compare, argv, capsys)
    assert code == 0 and "training" not in out
    assert "[1/2] retinanet_R_18_shapes_tiny: reused, AP" in out and "[2/2] variant: reused, AP" in out

    # Table (c) from the same base: the 9-anchor reference is the compare run of the tiny config.
    code, out, err = _run(ablate, ["--preset", "focal", "--base-config", TINY, "--tables", "c", "--output-dir", out_dir,
                                   "DATASETS.ROOT", data_root], capsys)
    assert code == 0, out + err
    assert "c_nsc1_nar1: training" in out and "c_nsc3_nar3: reused" in out
    ablation = json.load(open(os.path.join(out_dir, "results.json")))
    rows = ablation["tables"]["c"]["rows"]
    assert [r["labels"] for r in rows] == [{"#sc": 1, "#ar": 1}, {"#sc": 3, "#ar": 3}]
    assert [len(r["runs"]) for r in rows] == [1, 1] and ablation["seeds"] is None
    assert rows[1]["runs"][0]["hash"] == results["runs"][0]["hash"]
    assert all(r["runs"][0]["status"] == "ok" and r["finished"] == 1 for r in rows)
    assert rows[0]["mean"]["AP"] == rows[0]["runs"][0]["metrics"]["AP"] and rows[0]["std"]["AP"] is None
    assert ablation["train_minutes"] > 0
    md = open(os.path.join(out_dir, "ablation.md")).read()
    assert "| #sc | #ar | AP | AP50 | AP75 |" in md and "| 1 | 1 |" in md
    one_anchor = next(r for r in ablation["runs"] if r["name"] == "c_nsc1_nar1")
    config = yaml.safe_load(open(os.path.join(one_anchor["output_dir"], "config.yaml")))
    assert config["MODEL"]["ANCHOR_GENERATOR"]["SCALES"] == [1.0]
    assert config["MODEL"]["ANCHOR_GENERATOR"]["ASPECT_RATIOS"] == [1.0]
    assert os.path.getsize(os.path.join(out_dir, "focal_loss_curve.png")) > 1000
    assert not os.path.exists(os.path.join(out_dir, "ap_vs_gamma.png"))  # table (a) not run


def test_seeds_plan_one_run_per_config_and_seed(tmp_path, capsys):
    code, out, _ = _run(compare, ["--preset", "two-stage", "--seeds", "0", "1", "--dry-run",
                                  "--output-dir", str(tmp_path)], capsys)
    assert code == 0
    assert "Comparing 2 configs for SOLVER.MAX_ITER 2900 each, seeds [0, 1] (4 runs)" in out
    lines = [line for line in out.splitlines() if line.startswith("  ")]
    assert [line.split(":")[0].strip() for line in lines] == [
        "retinanet_R_18_FPN (seed 0)", "retinanet_R_18_FPN (seed 1)",
        "faster_rcnn_R_18_FPN (seed 0)", "faster_rcnn_R_18_FPN (seed 1)"]
    assert all(line.split(" -> ")[0].endswith(f"SEED {i % 2}") for i, line in enumerate(lines))
    assert len({line.split(" -> ")[1] for line in lines}) == 4  # four run folders
    assert os.listdir(tmp_path) == []


def test_ablation_seeds_plan_one_run_per_cell_and_seed(tmp_path, data_root, capsys):
    code, out, _ = _run(ablate, ["--preset", "focal", "--base-config", TINY, "--tables", "c,d", "--seeds", "3", "4",
                                 "--dry-run", "--output-dir", str(tmp_path), "DATASETS.ROOT", data_root], capsys)
    assert code == 0
    # Tables c and d share the reference cell: 5 settings x 2 seeds.
    assert "6 table cells, seeds [3, 4], 10 distinct runs" in out
    assert "  c_nsc1_nar1 (seed 3) [" in out and "  d_lossCE_priorpi0.5 (seed 4) [" in out
    assert out.count("SEED 3") == 5 and out.count("SEED 4") == 5
    code, _, err = _run(ablate, ["--preset", "focal", "--seeds", "0", "0", "--dry-run", "--output-dir", str(tmp_path)],
                        capsys)
    assert code == 2 and "--seeds must be distinct numbers >= 0; got [0, 0]" in err
    assert os.listdir(tmp_path) == []


def test_bad_seeds_are_refused(tmp_path, capsys):
    code, _, err = _run(compare, ["--preset", "two-stage", "--seeds", "1", "1", "--output-dir", str(tmp_path)], capsys)
    assert code == 2 and "--seeds must be distinct numbers >= 0; got [1, 1]" in err
    code, _, err = _run(compare, ["--preset", "two-stage", "--seeds", "0", "1", "--output-dir", str(tmp_path),
                                  "SEED", "3"], capsys)
    assert code == 2 and "leave SEED out" in err

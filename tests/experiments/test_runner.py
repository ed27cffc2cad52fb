"""The runner: the subprocess it starts (python -m retinadet.engine.train_net, with this interpreter and
this retinadet), what it records of an ok, diverged or failed run, reuse of finished runs and
deduplication, with a stand-in training script instead of training."""
import json
import math
import os
import sys
import textwrap

import pytest

import retinadet
from retinadet.experiments.runner import (
    CONSOLE_FILE,
    RECORD_FILE,
    RunRecord,
    RunSpec,
    child_env,
    plan_run,
    run_all,
    run_one,
    summarize_run,
    train_command,
)
from retinadet.model_zoo import get_config_file

TINY = get_config_file("quick/retinanet_R_18_shapes_tiny.yaml")

# Behaves like python -m retinadet.engine.train_net as far as the runner can tell: writes metrics.json into OUTPUT_DIR
# and prints log lines. MODE (from the environment) picks the ending; every call is counted.
FAKE_TRAIN = textwrap.dedent(
    """
    import json, os, sys
    args = sys.argv[1:]
    out = args[args.index("OUTPUT_DIR") + 1]
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    mode = os.environ["MODE"]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        for i in range(6):
            f.write(json.dumps({"iteration": i, "total_loss": 1.0, "time": 0.5 if i < 5 else 0.25}) + "\\n")
        if mode == "ok":
            f.write(json.dumps({"iteration": 5, "bbox/AP": 12.5, "bbox/AP50": 30.0, "bbox/AP75": 10.0,
                                "bbox/APs": 1.0, "bbox/APm": 2.0, "bbox/APl": None}) + "\\n")
        if mode == "nan_ap":
            f.write(json.dumps({"iteration": 5, "bbox/AP": None, "bbox/AP50": None}) + "\\n")
    print("iter: 6/6  total_loss: 1.0  max_mem: 321M")
    if mode == "diverge":
        raise FloatingPointError("Loss became non-finite at iteration 4: loss_cls = nan. Batch image ids: [3].")
    if mode == "crash":
        raise RuntimeError("something else broke")
    print("Total inference time: 0:00:01 (0.020000 s/img per process over 11 timed images, on 1 processes; "
          "model alone 0.012500 s/img).")
    """
)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    monkeypatch.setenv("CALLS_FILE", str(calls))

    def count():
        return len(calls.read_text().splitlines())

    return {"command": [sys.executable, str(script)], "count": count, "calls": calls, "root": str(tmp_path / "runs")}


def _plan(root, name="tiny", overrides=("SOLVER.BASE_LR", "0.02")):
    return plan_run(RunSpec(name, TINY, tuple(overrides)), root)


def test_ok_run_records_metrics_speed_time_and_memory_and_is_reused(fake, monkeypatch):
    monkeypatch.setenv("MODE", "ok")
    planned = _plan(fake["root"])
    assert os.path.basename(planned.output_dir) == f"tiny-{planned.hash}"
    record = run_one(planned, command=fake["command"])
    assert record.status == "ok" and record.returncode == 0 and not record.reused
    assert record.metrics["AP"] == 12.5 and record.metrics["AP50"] == 30.0 and math.isnan(record.metrics["APl"])
    assert record.train_its == pytest.approx(4.0)  # step 5 only: 0.25 s
    assert record.inference_ms == pytest.approx(12.5) and record.inference_total_ms == pytest.approx(20.0)
    assert record.peak_memory_mib == 321.0 and record.max_iter == 6
    # The command: the config, the overrides, then OUTPUT_DIR.
    args = json.loads(fake["calls"].read_text().splitlines()[0])
    assert args == ["--config-file", TINY, "SOLVER.BASE_LR", "0.02", "OUTPUT_DIR", planned.output_dir]
    assert os.path.exists(os.path.join(planned.output_dir, CONSOLE_FILE))

    again = run_one(_plan(fake["root"]), command=fake["command"])
    assert fake["count"]() == 1 and again.reused and again.metrics["AP"] == 12.5
    forced = run_one(_plan(fake["root"]), reuse=False, command=fake["command"])
    assert fake["count"]() == 2 and not forced.reused


def test_nonfinite_loss_is_diverged_with_its_iteration_and_kept(fake, monkeypatch):
    monkeypatch.setenv("MODE", "diverge")
    record = run_one(_plan(fake["root"]), command=fake["command"])
    assert record.status == "diverged" and record.diverged_at == 4 and record.returncode == 1
    assert record.metrics == {} and record.log_tail == ""
    assert run_one(_plan(fake["root"]), command=fake["command"]).reused
    assert fake["count"]() == 1


def test_nan_final_ap_is_diverged(fake, monkeypatch):
    monkeypatch.setenv("MODE", "nan_ap")
    record = run_one(_plan(fake["root"]), command=fake["command"])
    assert record.status == "diverged" and record.diverged_at is None and record.message == "final AP is NaN"


def test_other_failures_keep_the_log_tail_and_run_again(fake, monkeypatch):
    monkeypatch.setenv("MODE", "crash")
    planned = _plan(fake["root"])
    record = run_one(planned, command=fake["command"])
    assert record.status == "failed" and record.returncode == 1
    assert "RuntimeError: something else broke" in record.log_tail
    assert json.load(open(os.path.join(planned.output_dir, RECORD_FILE)))["status"] == "failed"
    monkeypatch.setenv("MODE", "ok")
    record = run_one(_plan(fake["root"]), command=fake["command"])
    assert fake["count"]() == 2 and record.status == "ok"


def test_a_run_without_its_evaluation_fails(fake, monkeypatch):
    monkeypatch.setenv("MODE", "no_eval")
    record = run_one(_plan(fake["root"]), command=fake["command"])
    assert record.status == "failed" and "no evaluation results" in record.message


def test_summarize_catches_a_run_stopped_early(tmp_path):
    planned = _plan(str(tmp_path), overrides=("SOLVER.MAX_ITER", "10"))
    os.makedirs(planned.output_dir)
    with open(os.path.join(planned.output_dir, "metrics.json"), "w") as f:
        f.write(json.dumps({"iteration": 3, "total_loss": 1.0}) + "\n")
    record = summarize_run(planned, 0, "")
    assert record.status == "failed" and record.message == "training stopped after 4 of 10 iterations"


def test_run_all_trains_each_config_once_and_names_every_row(fake, monkeypatch):
    monkeypatch.setenv("MODE", "ok")
    a = _plan(fake["root"], "first", ("MODEL.CLS_LOSS.GAMMA", "2.0"))
    b = _plan(fake["root"], "second", ("MODEL.CLS_LOSS.GAMMA", "2"))  # the same config
    c = _plan(fake["root"], "third", ("MODEL.CLS_LOSS.GAMMA", "1.0"))
    assert a.hash == b.hash != c.hash
    lines = []
    records = run_all([a, b, c], command=fake["command"], progress=lines.append)
    assert fake["count"]() == 2
    assert [r.name for r in records] == ["first", "second", "third"]
    assert records[0].output_dir == records[1].output_dir
    assert lines[0].startswith("[1/2] first: training")
    # A new plan of the same config finds the first folder whatever its name.
    assert _plan(fake["root"], "renamed", ("MODEL.CLS_LOSS.GAMMA", "2.0")).output_dir == a.output_dir
    lines.clear()
    run_all([c], command=fake["command"], progress=lines.append)
    assert fake["count"]() == 2 and len(lines) == 1 and "third: reused, AP 12.50" in lines[0]


def test_record_round_trips_through_json():
    record = RunRecord(name="x", config_file="c.yaml", overrides=["A", "1"], hash="abc", output_dir="/o", status="ok",
                       max_iter=5, metrics={"AP": 1.5, "APl": float("nan")}, train_its=2.0)
    d = json.loads(json.dumps(record.to_dict()))
    assert d["metrics"]["APl"] is None
    back = RunRecord.from_dict(d)
    assert back.metrics["AP"] == 1.5 and math.isnan(back.metrics["APl"]) and back.train_its == 2.0


def test_runs_train_with_this_interpreter_and_this_retinadet(tmp_path, monkeypatch):
    assert train_command() == [sys.executable, "-m", "retinadet.engine.train_net"]
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    home = os.path.dirname(os.path.dirname(os.path.realpath(retinadet.__file__)))
    assert "PYTHONSAFEPATH" not in child_env(home) and child_env(home)["PYTHONUNBUFFERED"] == "1"
    assert "PYTHONSAFEPATH" not in child_env(str(tmp_path))  # no retinadet there: nothing to shadow
    # A folder holding another retinadet (a second checkout): python -m would import that one first.
    (tmp_path / "retinadet").mkdir()
    (tmp_path / "retinadet" / "__init__.py").write_text("")
    assert child_env(str(tmp_path))["PYTHONSAFEPATH"] == "1"

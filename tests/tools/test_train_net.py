"""tools/train_net.py end to end on the tiny shapes splits: artefacts, exact resume after SIGKILL and
Ctrl-C, faults, a user hook from TRAIN.HOOKS, --eval-only, and two gloo processes."""
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from retinadet.engine import train_net
from retinadet.utils.writers import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
QUICK = os.path.join(REPO, "configs", "quick", "retinanet_R_18_shapes_tiny.yaml")
QUICK_RCNN = os.path.join(REPO, "configs", "quick", "faster_rcnn_R_18_shapes_tiny.yaml")

# A plug-in for the tests: a hook that saves every process's weights, and a detector whose loss turns
# NaN on its 4th training call (iteration 3).
PLUGIN = textwrap.dedent(
    """
    import os
    import torch
    from retinadet.engine import HookBase
    from retinadet.modeling.meta_arch.retinanet import RetinaNet
    from retinadet.registry import HOOK_REGISTRY, META_ARCH_REGISTRY
    from retinadet.utils import comm
    from retinadet.utils.events import get_event_storage


    @HOOK_REGISTRY.register()
    class SaveRankWeights(HookBase):
        def __init__(self, output_dir):
            self.output_dir = output_dir

        @classmethod
        def from_config(cls, cfg, trainer):
            return {"output_dir": cfg.OUTPUT_DIR}

        def after_step(self):
            get_event_storage().put_scalar("user_hook_calls", self.trainer.completed, smoothing_hint=False)

        def after_train(self):
            state = self.trainer.model_without_ddp.state_dict()
            torch.save(state, os.path.join(self.output_dir, f"weights_rank{comm.get_rank()}.pth"))


    @META_ARCH_REGISTRY.register()
    class NaNAtIterationThree(RetinaNet):
        calls = 0

        def forward(self, batched_inputs):
            out = super().forward(batched_inputs)
            if self.training:
                type(self).calls += 1
                if type(self).calls == 4:
                    out["loss_cls"] = out["loss_cls"] * float("nan")
            return out
    """
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def plugin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "train_net_test_plugin.py"
    path.write_text(PLUGIN)
    return str(path)


def _opts(data_root, out_dir, *extra):
    return ["DATASETS.ROOT", data_root, "OUTPUT_DIR", str(out_dir), *extra]


def _run(args, timeout=240, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, TRAIN_NET, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kwargs)


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _is_bn_statistic(key):
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def _assert_same_optimizer_and_ema(ours, ref):
    """Every optimizer state tensor (SGD momentum, AdamW moments and step) and the weight EMA agree bit for bit."""
    states = list(zip(ours["trainer"]["optimizer"]["state"].values(), ref["trainer"]["optimizer"]["state"].values()))
    assert states
    for a, b in states:
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
    assert ("model_ema" in ours) == ("model_ema" in ref)
    if "model_ema" in ref:
        _assert_same_state(ours["model_ema"], ref["model_ema"])
        # The average is not the raw weights (it is a separate state that had to be resumed).
        assert any(not torch.equal(ref["model_ema"][k], ref["model"][k]) for k in ref["model"])


# No evaluation and one loader worker: these runs compare weights, and the worker exercises the loader
# position saved while batches are prefetched.
RESUME_OPTS = ("DATASETS.TEST", "()", "DATALOADER.NUM_WORKERS", "1", "SOLVER.MAX_ITER", "8", "SOLVER.STEPS", "[6]")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, data_root):
    """An uninterrupted 8-iteration run (checkpoints at 2, 4, 6)."""
    out = tmp_path_factory.mktemp("reference")
    result = _run(["--config-file", QUICK, *_opts(data_root, out, *RESUME_OPTS)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_training_leaves_config_metrics_curves_and_checkpoints(tmp_path, data_root, plugin_file):
    out = tmp_path / "run"
    results = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", QUICK, *_opts(data_root, out, "MODEL.PLUGINS", f"['{plugin_file}']",
                                        "TRAIN.HOOKS", "['SaveRankWeights']", "TEST.VIS_IMAGES", "2",
                                        "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0")]))
    for name in ("config.yaml", "log.txt", "metrics.json", "loss_curve.png", "last_checkpoint", "model_final.pth",
                 "model_0000002.pth", "model_0000004.pth", "weights_rank0.pth"):
        assert (out / name).is_file(), name
    assert glob.glob(str(out / "events.out.tfevents.*"))
    assert len(glob.glob(str(out / "pictures" / "*.png"))) == 2
    assert (out / "last_checkpoint").read_text() == "model_final.pth"

    lines = read_metrics(str(out / "metrics.json"))
    # One line per iteration (LOG_PERIOD 1); the user hook's scalar reached the writers.
    assert [line["iteration"] for line in lines if "total_loss" in line] == list(range(6))
    assert [line["user_hook_calls"] for line in lines if "user_hook_calls" in line] == [1, 2, 3, 4, 5, 6]
    for line in lines:
        if "total_loss" in line:
            assert line["total_loss"] == pytest.approx(line["loss_cls"] + line["loss_box_reg"], rel=1e-6)
    final = [line for line in lines if "bbox/AP" in line]
    assert len(final) == 1 and final[0]["iteration"] == 5
    assert final[0]["bbox/AP"] == pytest.approx(results["bbox"]["AP"])
    # BASE_LR 0.004 (the demo's AdamW rate): warmup 2 iterations from 0.001 x 0.004, then 0.004, x 0.1 from
    # iteration 4 (STEPS [4]).
    lrs = [line["lr"] for line in lines if "lr" in line]
    assert lrs == pytest.approx([4e-6, 0.004 * (0.001 * 0.5 + 0.5), 0.004, 0.004, 0.0004, 0.0004])

    # The final config reloads to the same values.
    from retinadet.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(out / "config.yaml"))
    assert cfg.SOLVER.MAX_ITER == 6 and cfg.DATASETS.TEST == ("shapes_val_tiny",) and cfg.OUTPUT_DIR == str(out)

    ckpt = _load(out / "model_final.pth")
    assert ckpt["trainer"]["iteration"] == 6
    assert ckpt["meta"]["thing_classes"] == ["circle", "square", "triangle", "ellipse", "rectangle", "star"]
    # The EMA loss normaliser (a non-persistent buffer) is saved beside the weights.
    assert "loss_normalizer" in ckpt["model_nonpersistent_buffers"]
    assert ckpt["model_nonpersistent_buffers"]["loss_normalizer"].item() != 100.0
    assert {"optimizer", "data_loader", "rng", "hooks"} <= set(ckpt["trainer"])
    _assert_same_state(ckpt["model"], _load(out / "weights_rank0.pth"))

    # --eval-only on the final weights gives the same numbers as the evaluation after training.
    again = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", QUICK, "--eval-only",
         *_opts(data_root, tmp_path / "eval", "MODEL.WEIGHTS", str(out / "model_final.pth"),
                "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0")]))
    assert again["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"], abs=1e-9)
    assert again["bbox"]["AP50"] == pytest.approx(results["bbox"]["AP50"], abs=1e-9)


def test_eval_only_without_weights_is_refused(tmp_path):
    # Before any data is read or a random model scored: no data root is needed.
    for extra, where in (([], "MODEL.WEIGHTS is empty, so"),
                         (["--resume"], f"OUTPUT_DIR {tmp_path} holds no checkpoint to resume")):
        args = train_net.default_argument_parser().parse_args(
            ["--config-file", QUICK, "--eval-only", *extra, "OUTPUT_DIR", str(tmp_path)])
        with pytest.raises(ValueError, match=f"--eval-only has no weights to evaluate: .*{where}"):
            train_net.main(args)
    assert not os.path.isdir(tmp_path / "inference")


def _wait_for(predicate, proc, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"training exited early with {proc.returncode}: {proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out waiting for training to reach the kill point")


def _iterations_logged(out):
    path = os.path.join(out, "metrics.json")
    if not os.path.exists(path):
        return -1
    return max([line["iteration"] for line in read_metrics(path) if "total_loss" in line], default=-1)


def _start(args):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, TRAIN_NET, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)


def _kill_after_iteration_4_then_resume(config, data_root, out):
    """Train ``config`` into ``out``, SIGKILL it between checkpoints (iteration 4, the 5th, has finished
    and its checkpoint exists), then run it again with --resume to the end."""
    args = ["--config-file", config, *_opts(data_root, out, *RESUME_OPTS)]
    proc = _start(args)
    _wait_for(lambda: _iterations_logged(out) >= 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model_final.pth").exists()
    resumed = _run(["--resume", *args])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Resumed at iteration" in resumed.stdout


def test_sigkill_then_resume_gives_bit_identical_weights(tmp_path, data_root, reference_run):
    out = tmp_path / "killed"
    _kill_after_iteration_4_then_resume(QUICK, data_root, out)
    _assert_same_state(_load(out / "model_final.pth")["model"], _load(reference_run / "model_final.pth")["model"])
    ours, ref = _load(out / "model_final.pth"), _load(reference_run / "model_final.pth")
    assert ours["model_nonpersistent_buffers"]["loss_normalizer"] == ref["model_nonpersistent_buffers"]["loss_normalizer"]
    _assert_same_optimizer_and_ema(ours, ref)
    # metrics.json holds one history: the lines the killed run wrote after its checkpoint were replaced.
    iterations = [line["iteration"] for line in read_metrics(str(out / "metrics.json")) if "total_loss" in line]
    assert iterations == list(range(8))
    # Old periodic checkpoints beyond SOLVER.MAX_TO_KEEP (3) are gone: 2, 4, 6 remain.
    assert sorted(os.path.basename(p) for p in glob.glob(str(out / "model_0*.pth"))) == [
        "model_0000002.pth", "model_0000004.pth", "model_0000006.pth"]


def test_faster_rcnn_resumes_bit_identically_after_sigkill(tmp_path, data_root):
    # Its RPN and ROI heads sample anchors and proposals at random: the resumed run must draw the same
    # samples as the uninterrupted one (the loader's start once drew from the restored generator).
    reference = tmp_path / "reference"
    result = _run(["--config-file", QUICK_RCNN, *_opts(data_root, reference, *RESUME_OPTS)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "killed"
    _kill_after_iteration_4_then_resume(QUICK_RCNN, data_root, out)
    ours, ref = _load(out / "model_final.pth"), _load(reference / "model_final.pth")
    assert any(k.startswith("roi_heads.") for k in ref["model"])
    _assert_same_state(ours["model"], ref["model"])
    _assert_same_optimizer_and_ema(ours, ref)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, data_root, reference_run):
    out = tmp_path / "interrupted"
    args = ["--config-file", QUICK, *_opts(data_root, out, *RESUME_OPTS)]
    proc = _start(args)
    _wait_for(lambda: _iterations_logged(out) >= 2, proc)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout[-3000:]  # as shells report a command stopped by Ctrl-C
    assert "Interrupted" in stdout
    pointed = (out / "last_checkpoint").read_text()
    done = _load(out / pointed)["trainer"]["iteration"]
    assert pointed == f"model_{done:07d}.pth" and 3 <= done < 8
    resumed = _run(["--resume", *args])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"Resumed at iteration {done}" in resumed.stdout
    _assert_same_state(_load(out / "model_final.pth")["model"], _load(reference_run / "model_final.pth")["model"])


def test_truncated_checkpoint_is_named_and_resume_falls_back(tmp_path, data_root, reference_run, caplog):
    import shutil

    out = tmp_path / "truncated"
    shutil.copytree(reference_run, out)
    for name in ("model_final.pth", "metrics.json"):
        os.remove(out / name)
    # The newest checkpoint is cut short, as by a full disk or a broken copy.
    data = (out / "model_0000006.pth").read_bytes()
    (out / "model_0000006.pth").write_bytes(data[: len(data) // 2])
    (out / "last_checkpoint").write_text("model_0000006.pth")
    resumed = _run(["--resume", "--config-file", QUICK, *_opts(data_root, out, *RESUME_OPTS)])
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "model_0000006.pth" in resumed.stdout and "truncated or corrupt" in resumed.stdout
    assert "Resumed at iteration 4" in resumed.stdout
    _assert_same_state(_load(out / "model_final.pth")["model"], _load(reference_run / "model_final.pth")["model"])

    from retinadet.checkpoint.checkpointer import DetectionCheckpointer

    # (The resumed run wrote model_0000006.pth again; cut a copy to check the error directly.)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(RuntimeError, match="cut.pth .*truncated or corrupt"):
        DetectionCheckpointer(torch.nn.Linear(1, 1)).load(str(cut))


def test_nan_loss_stops_with_term_iteration_and_images_and_keeps_the_checkpoint(tmp_path, data_root, plugin_file):
    out = tmp_path / "nan"
    args = train_net.default_argument_parser().parse_args(
        ["--config-file", QUICK, *_opts(data_root, out, "MODEL.PLUGINS", f"['{plugin_file}']",
                                        "MODEL.META_ARCHITECTURE", "NaNAtIterationThree", "DATASETS.TEST", "()")])
    with pytest.raises(FloatingPointError) as info:
        train_net.main(args)
    message = str(info.value)
    assert "loss_cls = nan" in message and "iteration 3" in message and "image ids" in message
    # The batch's ids are named: two shapes_train_tiny images (ids 0..31).
    ids = json.loads(message.split("Batch image ids: ")[1].split("]")[0] + "]")
    assert len(ids) == 2 and all(0 <= i < 32 for i in ids)
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not (out / "model_final.pth").exists() and not (out / "model_0000004.pth").exists()
    assert _load(out / "model_0000002.pth")["trainer"]["iteration"] == 2


def test_bad_command_lines(tmp_path, data_root, caplog):
    parser = train_net.default_argument_parser()
    with pytest.raises(SystemExit, match="--config-file is required"):
        train_net.main(parser.parse_args([]))
    with pytest.raises(SystemExit, match="retinanet_R_18_shapes_tiny.yaml"):
        train_net.main(parser.parse_args(["--config-file", "configs/quick/retinanet_R_18_shapes_tiyn.yaml"]))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS 'nowhere.pth' does not exist"):
        train_net.main(parser.parse_args(["--config-file", QUICK, *_opts(data_root, tmp_path / "w",
                                                                          "MODEL.WEIGHTS", "nowhere.pth")]))


def test_resume_without_a_checkpoint_starts_from_scratch_and_says_so(tmp_path, data_root):
    out = tmp_path / "fresh"
    result = _run(["--resume", "--config-file", QUICK,
                   *_opts(data_root, out, "DATASETS.TEST", "()", "SOLVER.MAX_ITER", "1")])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no checkpoint in" in result.stdout and "starting from scratch" in result.stdout
    assert _load(out / "model_final.pth")["trainer"]["iteration"] == 1


def test_two_gloo_processes_agree_and_evaluate_each_image_once(tmp_path, data_root, plugin_file):
    out = tmp_path / "ddp"
    result = _run(["--num-gpus", "2", "--config-file", QUICK,
                   *_opts(data_root, out, "MODEL.PLUGINS", f"['{plugin_file}']", "TRAIN.HOOKS", "['SaveRankWeights']",
                          "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "SOLVER.MAX_ITER", "4")], timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    rank0, rank1 = _load(out / "weights_rank0.pth"), _load(out / "weights_rank1.pth")
    # Parameters agree; BatchNorm's running statistics are each process's own (its own images), as in
    # detectron2 without SyncBN.
    _assert_same_state(*({k: v for k, v in r.items() if not _is_bn_statistic(k)} for r in (rank0, rank1)))
    assert any(_is_bn_statistic(k) for k in rank0)
    _assert_same_state(rank0, _load(out / "model_final.pth")["model"])
    # Training changed the weights (the two ranks did not merely agree on the initial ones).
    initial = _load(out / "model_0000002.pth")["model"]
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0 if rank0[k].is_floating_point())
    # Each of the 16 validation images was evaluated exactly once: with no score threshold every image has
    # detections, the two ranks' shares (8 + 8) cover all ids, and none was dropped as a repeat.
    results = json.loads((out / "inference" / "shapes_val_tiny" / "coco_instances_results.json").read_text())
    gt = json.loads(open(os.path.join(data_root, "shapes", "val_tiny", "annotations.json")).read())
    assert {r["image_id"] for r in results} == {im["id"] for im in gt["images"]}
    per_image = {}
    for r in results:
        per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
    assert max(per_image.values()) <= 100
    log = (out / "log.txt").read_text()
    assert "Inference done 8/8 batches" in log
    assert "more than once" not in log and "were not processed" not in log
    assert (out / "log.txt.rank1").is_file()

"""tools/benchmark.py run in-process on tiny inputs: figures, JSON, the torchvision comparison and errors."""
import json
import math
import os
import statistics
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tools"))
import benchmark  # noqa: E402

from retinadet.config import get_cfg  # noqa: E402
from retinadet.engine import DefaultTrainer  # noqa: E402

QUICK = os.path.join(REPO, "configs", "quick", "retinanet_R_18_synthetic.yaml")
SHAPES_TINY = os.path.join(REPO, "configs", "quick", "retinanet_R_18_shapes_tiny.yaml")
COCO = os.path.join(REPO, "configs", "COCO-Detection", "retinanet_R_50_FPN_1x.yaml")
TORCHVISION = os.path.join(REPO, "configs", "torchvision", "retinanet_R_50_FPN.yaml")
TINY = ["--size", "64", "96", "--iters", "2", "--warmup", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a busy machine tiny convolutions spread over several threads mostly wait for each
    other. main() sets the count too (--threads 1); the other tests get theirs back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(tmp_path, args, opts=()):
    """main(args --json OUT opts) -> the JSON it wrote (KEY VALUE overrides come last)."""
    out = tmp_path / "figures.json"
    assert benchmark.main([*args, "--json", str(out), *opts]) == 0
    return json.loads(out.read_text())


def _config(path, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def _check_model_figures(f, images_per_iteration, iters=2):
    """The figures of one model agree with its per-iteration times."""
    times = f["times"]
    assert len(times) == iters and all(t > 0 for t in times)
    median = statistics.median(times)
    assert f["images_per_iteration"] == images_per_iteration
    assert f["s_per_iteration"] == pytest.approx(median)
    assert f["iterations_per_s"] == pytest.approx(1.0 / median)
    assert f["images_per_s"] == pytest.approx(f["iterations_per_s"] * images_per_iteration)
    assert f["s_per_image"] == pytest.approx(median / images_per_iteration)
    low, high = f["s_per_iteration_iqr"]
    assert min(times) <= low <= median <= high <= max(times)
    assert f["peak_memory_mib"] > 0
    if sys.platform.startswith("linux"):  # the peak RSS is reset per step, so the step's growth is known
        assert 0 <= f["step_extra_memory_mib"] < f["peak_memory_mib"]


def test_train_on_synthetic_batches(tmp_path, capsys):
    report = _run(tmp_path, ["--config-file", QUICK, "--task", "train", *TINY], ["SOLVER.IMS_PER_BATCH", "2"])
    assert (report["task"], report["input"], report["image_size"]) == ("train", "synthetic", [64, 96])
    assert list(report["models"]) == ["ours"] and report["threads"] == 1
    ours = report["models"]["ours"]
    _check_model_figures(ours, images_per_iteration=2)  # the SOLVER.IMS_PER_BATCH override
    assert set(ours["last"]) == {"loss_cls", "loss_box_reg"}
    assert all(math.isfinite(v) and v >= 0 for v in ours["last"].values())
    # The JSON is written through a temporary file that is renamed away.
    assert sorted(os.listdir(tmp_path)) == ["figures.json"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"torch {torch.__version__}, device cpu, 1 threads; 1-min load average")
    assert "| ours (retinanet_R_18_synthetic.yaml) | 2 | " in printed


def test_train_step_does_the_work_but_keeps_the_weights():
    # The optimizer runs at LR 0: backward reaches every trainable parameter and SGD keeps momentum
    # buffers for them, but the weights stay the initial ones, so a random model cannot diverge.
    cfg = _config(QUICK)
    torch.manual_seed(0)
    model = DefaultTrainer.build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items() if "normalizer" not in k}
    optimizer = benchmark.zero_lr_optimizer(cfg, model)
    assert {g["lr"] for g in optimizer.param_groups} == {0.0} and optimizer.defaults["momentum"] == 0.9
    batch = benchmark.synthetic_batches(cfg, 1, 2, (64, 96))[0]
    model.train()
    for _ in range(2):
        losses = benchmark.train_step(model, optimizer, batch)
    assert set(losses) == {"loss_cls", "loss_box_reg"} and all(math.isfinite(v) for v in losses.values())
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and "momentum_buffer" in optimizer.state[p] for p in trainable)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_eval_on_synthetic_batches(tmp_path):
    report = _run(tmp_path, ["--config-file", QUICK, "--task", "eval", *TINY], ["TEST.IMS_PER_BATCH", "3"])
    ours = report["models"]["ours"]
    _check_model_figures(ours, images_per_iteration=3)
    # Random weights: between none and DETECTIONS_PER_IMAGE (100) detections per image.
    assert 0 <= ours["last"]["detections_per_image"] <= 100


def test_data_loader_on_the_tiny_shapes_set(tmp_path, capsys):
    report = _run(tmp_path, ["--config-file", SHAPES_TINY, "--task", "data", "--iters", "3", "--warmup", "1"],
                  ["DATASETS.ROOT", str(tmp_path / "datasets")])
    assert report["input"] == "dataset" and report["datasets"] == ["shapes_train_tiny"]
    d = report["data"]
    assert len(d["times"]) == 3 and all(t > 0 for t in d["times"])
    # 3 batches of SOLVER.IMS_PER_BATCH = 2 images over one span: images/s is exactly 2 x batches/s.
    assert d["images_per_batch"] == 2
    assert d["images_per_s"] == pytest.approx(2 * d["batches_per_s"])
    assert d["s_per_batch"] == pytest.approx(statistics.median(d["times"]))
    # The span holds the 3 timed batches, so it is at least their sum.
    assert 3 / d["batches_per_s"] >= sum(d["times"])
    assert "| shapes_train_tiny | 2.0 | " in capsys.readouterr().out


def test_compare_with_torchvision_on_tiny_eval(tmp_path, capsys):
    report = _run(tmp_path, ["--config-file", COCO, "--task", "eval", "--compare-torchvision", *TINY])
    assert list(report["models"]) == ["ours", "torchvision"]
    assert report["torchvision"]
    ours, reference = report["models"]["ours"], report["models"]["torchvision"]
    for f in (ours, reference):
        _check_model_figures(f, images_per_iteration=1)
    ratio = report["ours_over_torchvision"]
    assert ratio["time"] == pytest.approx(ours["s_per_iteration"] / reference["s_per_iteration"])
    paired = sorted(o / r for o, r in zip(ours["times"], reference["times"]))
    # Two paired ratios a <= b: quartiles a + (b - a) / 4 and a + 3 (b - a) / 4.
    expected = [paired[0] + (paired[1] - paired[0]) * q for q in (0.25, 0.75)]
    assert ratio["time_iqr"] == pytest.approx(expected)
    assert ratio["peak_memory"] == pytest.approx(ours["peak_memory_mib"] / reference["peak_memory_mib"])
    printed = capsys.readouterr().out
    assert "| torchvision retinanet_resnet50_fpn | 1 | " in printed
    assert f"| eval | {ratio['time']:.3f} (" in printed


def test_torchvision_model_is_set_up_like_ours():
    # configs/torchvision/ builds our model with torchvision's architecture: with the backbone frozen
    # the same way (FrozenBN everywhere, stem and layer1 frozen by FREEZE_AT 2) both train the same
    # number of parameters and hold the same total.
    from torchvision.ops.misc import FrozenBatchNorm2d

    cfg = _config(TORCHVISION)
    torch.manual_seed(0)
    reference = benchmark.TorchvisionRetinaNet(cfg)
    ours = DefaultTrainer.build_model(cfg)

    def counts(model):
        params = list(model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    assert counts(reference) == counts(ours)
    body = reference.model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in body.modules()) == 53  # 1 stem + 16 blocks x 3 + 4 downsample
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    assert reference.model.head.classification_head.num_classes == 91
    # Its transform is told the batch's sides, so a 64 x 96 image is scaled by exactly 1.
    reference.eval()
    with torch.no_grad():
        reference([{"image": torch.zeros(3, 64, 96, dtype=torch.uint8)}])
    assert (reference.model.transform.min_size, reference.model.transform.max_size) == ((64,), 96)


def test_torchvision_images_are_rgb_floats():
    # A BGR config (COCO) feeds B=0, G=51, R=255; torchvision gets R, G, B scaled to 0-1: 1.0, 0.2, 0.0.
    batch = [{"image": torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 4)}]
    assert benchmark.torchvision_images(batch, bgr=True)[0][:, 1, 3].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert benchmark.torchvision_images(batch, bgr=False)[0][:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_mixed_image_sizes_are_refused_for_the_comparison():
    batch = [{"image": torch.zeros(3, 64, 96, dtype=torch.uint8)}, {"image": torch.zeros(3, 96, 64, dtype=torch.uint8)}]
    benchmark.check_one_size_per_batch([batch[:1], batch[1:]])
    with pytest.raises(benchmark.BenchmarkError, match="share one size"):
        benchmark.check_one_size_per_batch([batch])


def test_default_synthetic_size():
    # COCO: 800 x ceil(1.5 * 800 / 32) * 32 = 800 x 1216, under the 1333 cap; quick: 384 capped at 320.
    assert benchmark.default_size(_config(COCO)) == (800, 1216)
    assert benchmark.default_size(_config(QUICK)) == (256, 320)


def test_figures_and_ratio_by_hand():
    ours = {"times": [2.0, 4.0, 1.0], "images": [2, 2, 2], "peak_mib": 300.0, "extra_mib": 60.0, "last": {}}
    reference = {"times": [1.0, 2.0, 2.0], "images": [2, 2, 2], "peak_mib": 200.0, "extra_mib": 40.0, "last": {}}
    f = benchmark.figures(ours)
    # Median of 1, 2, 4 s is 2 s: 0.5 iterations/s, x 2 images = 1 image/s, 1 s/image; quartiles 1.5 and 3.
    assert (f["s_per_iteration"], f["iterations_per_s"], f["images_per_s"], f["s_per_image"]) == (2.0, 0.5, 1.0, 1.0)
    assert f["s_per_iteration_iqr"] == [1.5, 3.0]
    ratio = benchmark.compare(f, benchmark.figures(reference))
    # Medians 2 / 2 = 1; paired ratios 2, 2, 0.5 -> sorted 0.5, 2, 2 -> quartiles 1.25 and 2; memory 1.5 both.
    assert ratio == {"time": 1.0, "time_iqr": [1.25, 2.0], "peak_memory": 1.5, "step_extra_memory": 1.5}


def test_quartiles():
    assert benchmark.quartiles([5.0, 1.0, 3.0, 2.0, 4.0]) == (2.0, 4.0)
    assert benchmark.quartiles([1.0, 2.0]) == (1.25, 1.75)
    assert benchmark.quartiles([7.0]) == (7.0, 7.0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config-file", QUICK, "--task", "fly"], "invalid choice: 'fly'"),
        (["--config-file", "configs/nope.yaml", "--task", "train"], "'configs/nope.yaml' does not exist"),
        (["--config-file", QUICK, "--task", "train", "MODEL.RETINANET.NUM_CLASSE", "5"],
         "Did you mean 'MODEL.RETINANET.NUM_CLASSES'"),
        (["--config-file", QUICK, "--task", "train", "--compare-torchvision"],
         "this config has RetinaNet, ResNet, 18, FPN"),
        (["--config-file", COCO, "--task", "data", "--compare-torchvision"], "applies to --task train and --task eval"),
        (["--config-file", QUICK, "--task", "data"], "needs the data sets of DATASETS.TRAIN, but it is []"),
        (["--config-file", QUICK, "--task", "eval", "--input", "dataset"], "DATASETS.TEST, but it is []"),
        (["--config-file", QUICK, "--task", "train", "--iters", "0"], "--iters and --threads must be >= 1"),
        (["--config-file", QUICK, "--task", "train", "--device", "cuda:0"] if not torch.cuda.is_available() else
         ["--config-file", QUICK, "--task", "train", "--device", "gpu"], "device"),
    ],
    ids=["bad-task", "missing-config", "unknown-key", "not-r50", "data-compare", "no-train-set", "no-test-set",
         "zero-iters", "bad-device"],
)
def test_errors_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

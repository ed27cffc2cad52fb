"""tools/benchmark.py run in-process on tiny inputs: figures, parameters and FLOPs, JSON, the torchvision
comparisons (RetinaNet and Faster R-CNN), relative speeds and errors."""
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
RCNN_TINY = os.path.join(REPO, "configs", "quick", "faster_rcnn_R_18_shapes_tiny.yaml")
RCNN_TORCHVISION = os.path.join(REPO, "configs", "torchvision", "faster_rcnn_R_50_FPN.yaml")
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


def _check_model_size(f, model=None, image_size=(64, 96)):
    """The parameter and FLOP entries of one model (its counts when ``model`` is given)."""
    params = f["parameters"]
    assert 0 < params["trainable"] <= params["total"]
    if model is not None:
        assert params == {"total": sum(p.numel() for p in model.parameters()),
                          "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    flops = f["flops"]
    assert flops["image_size"] == list(image_size)
    assert flops["per_image"] == sum(flops["by_operator"].values()) > 0
    assert flops["gflops_per_image"] == pytest.approx(flops["per_image"] / 1e9)
    assert flops["by_operator"]["conv"] > 0 and all(n > 0 for n in flops["uncounted_ops"].values())


def _size_row(label, f):
    """The markdown row the size table prints for one model."""
    p, flops = f["parameters"], f["flops"]
    return (f"| {label} | {p['total'] / 1e6:.2f}M | {p['trainable'] / 1e6:.2f}M | {flops['gflops_per_image']:.3f} "
            "| {}x{} | ".format(*flops["image_size"]))


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
    # Parameters of the model as the trainer builds it; FLOPs of one 64 x 96 image's inference.
    model = DefaultTrainer.build_model(_config(QUICK))
    _check_model_size(ours, model)
    assert "retinadet::batched_nms" in ours["flops"]["uncounted_ops"]
    assert "one multiply-add counts as one flop" in report["flop_convention"]
    # The JSON is written through a temporary file that is renamed away.
    assert sorted(os.listdir(tmp_path)) == ["figures.json"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"torch {torch.__version__}, device cpu, 1 threads; 1-min load average")
    assert "| ours (retinanet_R_18_synthetic.yaml) | 2 | " in printed
    assert _size_row("ours (retinanet_R_18_synthetic.yaml)", ours) in printed
    assert "retinadet::batched_nms x1" in printed and f"FLOPs: {report['flop_convention']}." in printed


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
    for f in (ours, reference):
        _check_model_size(f)
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
         "torchvision's retinanet_resnet50_fpn for RetinaNet, so it needs MODEL.BACKBONE.NAME 'ResNet', "
         "MODEL.RESNETS.DEPTH 50, MODEL.NECK.NAME 'FPN', MODEL.HEAD.NAME 'RetinaNetHead'; this config has "
         "MODEL.RESNETS.DEPTH 18 (needs 50)."),
        (["--config-file", RCNN_TINY, "--task", "eval", "--compare-torchvision"],
         "torchvision's fasterrcnn_resnet50_fpn for GeneralizedRCNN, so it needs"),
        (["--config-file", QUICK, "--task", "flops", "--compare-torchvision", "MODEL.META_ARCHITECTURE", "FCOS"],
         "--compare-torchvision has a torchvision counterpart for MODEL.META_ARCHITECTURE RetinaNet "
         "(retinanet_resnet50_fpn), GeneralizedRCNN (fasterrcnn_resnet50_fpn); this config has "
         "MODEL.META_ARCHITECTURE 'FCOS'."),
        (["--config-file", COCO, "--task", "data", "--compare-torchvision"],
         "applies to --task train, eval and flops"),
        (["--config-file", QUICK, "--task", "eval", "--relative-to", "nope.json"],
         "--relative-to 'nope.json': cannot read a JSON report"),
        (["--config-file", QUICK, "--task", "flops", "--relative-to", "nope.json"],
         "--relative-to applies to --task train and --task eval, not flops"),
        (["--config-file", QUICK, "--task", "data"], "needs the data sets of DATASETS.TRAIN, but it is []"),
        (["--config-file", QUICK, "--task", "eval", "--input", "dataset"], "DATASETS.TEST, but it is []"),
        (["--config-file", QUICK, "--task", "train", "--iters", "0"], "--iters and --threads must be >= 1"),
        (["--config-file", QUICK, "--task", "train", "--device", "cuda:0"] if not torch.cuda.is_available() else
         ["--config-file", QUICK, "--task", "train", "--device", "gpu"], "device"),
    ],
    ids=["bad-task", "missing-config", "unknown-key", "not-r50", "rcnn-not-r50", "no-counterpart", "data-compare",
         "relative-missing", "relative-flops", "no-train-set", "no-test-set", "zero-iters", "bad-device"],
)
def test_errors_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- parameters and FLOPs
class _OneConvDetector(torch.nn.Module):
    """The model contract around one 3x3 convolution: list[dict] in, one detection per image out."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            pooled = self.conv(x["image"].float()[None]).mean(dim=(2, 3))  # (1, 8)
            scores = self.fc(pooled).sigmoid()[0]  # (2,)
            labels = torch.zeros(1, dtype=torch.long)
            outputs.append({"boxes": torch.zeros(1, 4), "scores": scores[:1], "labels": labels})
        return outputs


def test_parameters_are_counted_once_and_split_by_requires_grad():
    model = _OneConvDetector()
    model.conv.weight.requires_grad_(False)
    shared = torch.nn.Sequential(model, torch.nn.Sequential(model.fc))  # fc reachable twice, counted once
    # conv: 8 x 3 x 3 x 3 = 216 weights (frozen) + 8 biases; fc: 8 x 2 + 2 = 18.
    assert benchmark.count_parameters(shared) == {"total": 216 + 8 + 18, "trainable": 8 + 18}


def test_flops_of_a_known_model_by_hand():
    model = _OneConvDetector().train()
    flops = benchmark.count_flops(model, torch.randint(0, 256, (3, 10, 12), dtype=torch.uint8))
    # One multiply-add = one flop, biases not counted: the conv does 3 x 3 x 3 multiply-adds for each of
    # 8 x 10 x 12 outputs, the linear layer 8 for each of its 2 outputs.
    assert flops["by_operator"] == {"conv": 27 * 8 * 10 * 12, "linear": 8 * 2}
    assert flops["per_image"] == 25920 + 16 and flops["gflops_per_image"] == pytest.approx(25936e-9)
    assert flops["image_size"] == [10, 12]
    # The mean and the sigmoid have no fvcore formula: listed, counted as 0.
    assert flops["uncounted_ops"] == {"aten::mean": 1, "aten::sigmoid": 1}
    assert model.training  # the mode is restored


def test_flops_of_the_quick_retinanet_match_its_convolutions_and_repeat():
    cfg = _config(QUICK)
    torch.manual_seed(0)
    model = benchmark.build_model(cfg).eval()
    image = benchmark.synthetic_batches(cfg, 1, 1, (64, 96))[0][0]["image"]
    # Every Conv2d's multiply-adds from the shapes it sees in one inference forward:
    # C_in / groups x k_h x k_w per output element, biases not counted.
    by_hand = []

    def hook(module, inputs, output):
        kh, kw = module.kernel_size
        by_hand.append(module.in_channels // module.groups * kh * kw * output.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model([{"image": image}])
    for h in handles:
        h.remove()
    first = benchmark.count_flops(model, image)
    assert first["by_operator"]["conv"] == sum(by_hand) > 0
    # GroupNorm (the quick config's norm) is counted too; the NMS is not.
    assert first["by_operator"]["group_norm"] > 0 and first["uncounted_ops"]["retinadet::batched_nms"] == 1
    torch.manual_seed(1)
    other_weights = benchmark.build_model(cfg)
    assert benchmark.count_flops(model, image) == first
    assert benchmark.count_flops(other_weights, image)["per_image"] == first["per_image"]


@pytest.mark.parametrize("config", [TORCHVISION, RCNN_TORCHVISION], ids=["retinanet", "faster_rcnn"])
def test_torchvision_configs_do_torchvisions_convolutions(config):
    # configs/torchvision/ build torchvision's architectures: on the same 64 x 96 image both models do the
    # same convolution and nearest-upsampling work. torchvision also runs its (identity) bilinear resize.
    cfg = _config(config)
    image = benchmark.synthetic_batches(cfg, 1, 1, (64, 96))[0][0]["image"]
    torch.manual_seed(0)
    ours = benchmark.count_flops(benchmark.build_model(cfg), image)["by_operator"]
    reference = benchmark.count_flops(benchmark.build_torchvision_model(cfg), image)["by_operator"]
    assert ours["conv"] == reference["conv"] > 0
    assert ours["upsample_nearest2d"] == reference["upsample_nearest2d"]
    if config == RCNN_TORCHVISION:
        # The box head runs per proposal: 256 x 7 x 7 x 1024 + 1024 x 1024 multiply-adds in its two fc
        # layers, 1024 x (K + 1) for the class scores and 1024 x 4K (ours: no background box) or
        # 1024 x 4(K + 1) (torchvision) for the deltas, K = 90. The linear FLOPs are whole multiples of that.
        fc = 256 * 49 * 1024 + 1024 * 1024 + 1024 * 91
        assert ours["linear"] % (fc + 1024 * 360) == 0 and ours["linear"] > 0
        assert reference["linear"] % (fc + 1024 * 364) == 0 and reference["linear"] > 0


def test_flops_task_prints_sizes_only(tmp_path, capsys):
    report = _run(tmp_path, ["--config-file", RCNN_TINY, "--task", "flops", "--size", "64", "96", "--threads", "1"])
    assert (report["task"], report["input"], report["image_size"]) == ("flops", "synthetic", [64, 96])
    assert report["meta_architecture"] == "GeneralizedRCNN"
    ours = report["models"]["ours"]
    assert set(ours) == {"parameters", "flops"}
    torch.manual_seed(0)
    _check_model_size(ours, benchmark.build_model(_config(RCNN_TINY)))
    # The box head's fc layers and ROIAlign on the FPN levels ran.
    assert ours["flops"]["by_operator"]["linear"] > 0 and ours["flops"]["uncounted_ops"]["torchvision::roi_align"] > 0
    printed = capsys.readouterr().out
    assert _size_row("ours (faster_rcnn_R_18_shapes_tiny.yaml)", ours) in printed
    assert "timed iterations" not in printed and "iterations/s" not in printed


def test_no_flops_keeps_the_parameters(tmp_path, capsys):
    report = _run(tmp_path, ["--config-file", QUICK, "--task", "eval", "--no-flops", *TINY])
    ours = report["models"]["ours"]
    assert ours["flops"] is None and ours["parameters"]["total"] > 0
    _check_model_figures(ours, images_per_iteration=1)
    assert "| ours (retinanet_R_18_synthetic.yaml) | {:.2f}M | {:.2f}M | - | - | - |".format(
        ours["parameters"]["total"] / 1e6, ours["parameters"]["trainable"] / 1e6) in capsys.readouterr().out


def test_flop_count_failure_names_the_way_out():
    class Broken(torch.nn.Module):
        def forward(self, batched_inputs):
            raise RuntimeError("no inference here")

    with pytest.raises(benchmark.BenchmarkError, match=r"could not trace .*no inference here.*--no-flops"):
        benchmark.count_flops(Broken(), torch.zeros(3, 8, 8, dtype=torch.uint8))


# ---------------------------------------------------------------------------- Faster R-CNN
def test_torchvision_faster_rcnn_is_set_up_like_ours():
    # The torchvision config: the same frozen stages; torchvision's box predictor also has deltas for its
    # background class, 1024 x 4 weights + 4 biases more, and nothing else differs.
    cfg = _config(RCNN_TORCHVISION)
    torch.manual_seed(0)
    reference = benchmark.build_torchvision_model(cfg)
    assert isinstance(reference, benchmark.TorchvisionFasterRCNN)
    ours = DefaultTrainer.build_model(cfg)
    theirs, mine = benchmark.count_parameters(reference), benchmark.count_parameters(ours)
    assert theirs["total"] - mine["total"] == theirs["trainable"] - mine["trainable"] == 1024 * 4 + 4
    body = reference.model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert not body.layer1[0].conv1.weight.requires_grad and body.layer2[0].conv1.weight.requires_grad
    # K = 90 classes plus torchvision's background 0; our label k is its k + 1.
    assert reference.model.roi_heads.box_predictor.cls_score.out_features == 91 and reference.label_offset == 1
    assert reference.model.transform.min_size == (800,)


def test_compare_faster_rcnn_with_torchvision_on_tiny_training(tmp_path, capsys, monkeypatch):
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN as TorchvisionGeneralizedRCNN

    seen = []
    original = TorchvisionGeneralizedRCNN.forward

    def spy(self, images, targets=None):
        if targets is not None:
            seen.append([t["labels"].tolist() for t in targets])
        return original(self, images, targets)

    monkeypatch.setattr(TorchvisionGeneralizedRCNN, "forward", spy)
    args = ["--config-file", RCNN_TORCHVISION, "--task", "train", "--compare-torchvision", "--no-flops",
            "--size", "64", "96", "--iters", "2", "--warmup", "0", "--threads", "1"]
    report = _run(tmp_path, args, ["SOLVER.IMS_PER_BATCH", "1"])
    assert report["torchvision_model"] == "fasterrcnn_resnet50_fpn"
    ours, reference = report["models"]["ours"], report["models"]["torchvision"]
    for f in (ours, reference):
        _check_model_figures(f, images_per_iteration=1)
    assert set(reference["last"]) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v) for f in (ours, reference) for v in f["last"].values())
    ratio = report["ours_over_torchvision"]["time"]
    assert ratio == pytest.approx(ours["s_per_iteration"] / reference["s_per_iteration"])
    assert "| torchvision fasterrcnn_resnet50_fpn | 1 | " in capsys.readouterr().out
    # torchvision got the same batches with each label k (0..K-1 in ours) as k + 1 (0 is its background).
    batches = benchmark.synthetic_batches(_config(RCNN_TORCHVISION), 2, 1, (64, 96))
    assert seen == [[(x["labels"] + 1).tolist() for x in b] for b in batches]


# ---------------------------------------------------------------------------- relative speed
def _report(task="train", ours=2.0, torchvision=None, images=2, size=(64, 96)):
    models = {"ours": {"s_per_iteration": ours, "images_per_iteration": images}}
    if torchvision is not None:
        models["torchvision"] = {"s_per_iteration": torchvision, "images_per_iteration": images}
    return {"task": task, "image_size": list(size), "device": "cpu", "threads": 1, "models": models,
            "config_file": "configs/x.yaml"}


def test_relative_speed_by_hand():
    # RetinaNet 2 s (torchvision's 1.6 s) against Faster R-CNN 2.5 s (torchvision's 2.5 s): ours 0.8,
    # torchvision's 0.64, and 0.8 / 0.64 = 1.25 = (2 / 1.6) / (2.5 / 2.5), the quotient of the runs'
    # ours/torchvision ratios.
    this, other = _report(ours=2.0, torchvision=1.6), _report(ours=2.5, torchvision=2.5)
    relative = benchmark.relative_speed(this, other, "other.json")
    assert relative["time"] == pytest.approx({"ours": 0.8, "torchvision": 0.64})
    assert relative["ours_over_torchvision"] == pytest.approx(1.25)
    assert "ours_over_torchvision" not in benchmark.relative_speed(_report(), other, "other.json")


@pytest.mark.parametrize("other, message", [
    (_report(size=(128, 96)), "has image_size [128, 96] but this run has [64, 96]"),
    (_report(images=1), "ran ours on 1 images per iteration, this run on 2"),
    ({**_report(), "models": {"theirs": {}}}, "none of this run's ['ours']"),
])
def test_relative_speed_refuses_different_runs(other, message):
    with pytest.raises(benchmark.BenchmarkError, match=message.replace("[", r"\[").replace("]", r"\]")):
        benchmark.relative_speed(_report(), other, "other.json")


def test_relative_to_an_earlier_run(tmp_path, capsys):
    # RetinaNet, then Faster R-CNN on the same 64 x 96 images relative to it.
    first = _run(tmp_path, ["--config-file", QUICK, "--task", "eval", "--no-flops", *TINY])
    earlier = tmp_path / "retinanet.json"
    (tmp_path / "figures.json").rename(earlier)
    args = ["--config-file", RCNN_TINY, "--task", "eval", "--no-flops", "--input", "synthetic", *TINY,
            "--relative-to", str(earlier)]
    second = _run(tmp_path, args)
    relative = second["relative"]
    assert relative["other_config_file"] == QUICK
    assert relative["time"] == {"ours": pytest.approx(second["models"]["ours"]["s_per_iteration"]
                                                      / first["models"]["ours"]["s_per_iteration"])}
    printed = capsys.readouterr().out
    assert "| s/iteration: this / retinanet_R_18_synthetic.yaml | ours (faster_rcnn_R_18_shapes_tiny.yaml) |" in printed
    assert f"| eval | {relative['time']['ours']:.3f} |" in printed
    # A report of another task is refused before anything is timed.
    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", RCNN_TINY, "--task", "train", "--relative-to", str(earlier), *TINY])
    assert "has task 'eval' but this run has 'train'" in capsys.readouterr().err


def test_time_to_accuracy_task_end_to_end(tmp_path, capsys):
    out = tmp_path / "tta"
    assert benchmark.main(["--config-file", SHAPES_TINY, "--task", "time-to-accuracy", "--interval", "0.0001",
                           "--threads", "1", "DATASETS.ROOT", str(tmp_path / "data"), "OUTPUT_DIR", str(out),
                           "SOLVER.MAX_ITER", "3", "TRAIN.LOSS_CURVE", "False"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "time_to_accuracy.json").read_text())
    # An interval shorter than any step: an evaluation after every iteration, and none repeated at the end.
    assert [p["iteration"] for p in report["points"]] == [1, 2, 3]
    assert [p["images"] for p in report["points"]] == [2, 4, 6]  # IMS_PER_BATCH 2 of the tiny config
    minutes = [p["minutes"] for p in report["points"]]
    assert minutes == sorted(minutes) and minutes[0] > 0
    assert all(0.0 <= p["bbox/AP"] <= 100.0 or math.isnan(p["bbox/AP"]) for p in report["points"])
    assert (out / "time_to_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "| minutes | iteration | images | AP | AP50 | AP75 |" in printed and "| 3 | 6 |" in printed


def test_time_to_accuracy_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", SHAPES_TINY, "--task", "time-to-accuracy", "--interval", "0"])
    assert "--interval and --minutes must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.main(["--config-file", SHAPES_TINY, "--task", "time-to-accuracy", "--compare-torchvision"])
    assert "apply to --task train and eval" in capsys.readouterr().err

"""tools/benchmark.py, the command line over retinadet.benchmark: what it prints and writes, and how it
reports a request it cannot serve (exit status 2 and a message)."""
import json
import os

import pytest
import torch

from retinadet.benchmark.report import markdown
from retinadet.utils.testing import load_tool

benchmark = load_tool("benchmark")
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
QUICK = os.path.join(CONFIGS, "quick", "retinanet_R_18_synthetic.yaml")
SHAPES_TINY = os.path.join(CONFIGS, "quick", "retinanet_R_18_shapes_tiny.yaml")
RCNN_TINY = os.path.join(CONFIGS, "quick", "faster_rcnn_R_18_shapes_tiny.yaml")
COCO = os.path.join(CONFIGS, "COCO-Detection", "retinanet_R_50_FPN_1x.yaml")
TINY = ["--size", "64", "96", "--iters", "2", "--warmup", "1", "--threads", "1"]
# The keys of a --json report of the train task, and of each model in it.
REPORT_KEYS = {"config_file", "device", "flop_convention", "image_size", "input", "iters", "load_average",
               "meta_architecture", "models", "opts", "task", "threads", "torch", "torchvision", "torchvision_model",
               "warmup"}
MODEL_KEYS = {"flops", "images_per_iteration", "images_per_s", "iterations_per_s", "last", "parameters",
              "peak_memory_mib", "s_per_image", "s_per_iteration", "s_per_iteration_iqr", "step_extra_memory_mib",
              "times"}


@pytest.fixture(autouse=True)
def restore_threads():
    """main() sets torch's thread count (--threads 1); the other tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_prints_the_tables_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "figures.json"
    assert benchmark.main(["--config-file", QUICK, "--task", "train", *TINY, "--json", str(out),
                           "SOLVER.IMS_PER_BATCH", "2"]) == 0
    report = json.loads(out.read_text())
    assert set(report) == REPORT_KEYS and set(report["models"]["ours"]) == MODEL_KEYS
    assert (report["task"], report["threads"], report["opts"]) == ("train", 1, ["SOLVER.IMS_PER_BATCH", "2"])
    assert report["models"]["ours"]["images_per_iteration"] == 2 and len(report["models"]["ours"]["times"]) == 2
    # The JSON is written through a temporary file that is renamed away.
    assert sorted(os.listdir(tmp_path)) == ["figures.json"]
    # What is printed is the report's markdown, and the JSON holds the same report.
    assert capsys.readouterr().out == markdown(report) + "\n"


def test_help_gives_the_usage_and_points_to_the_docs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "--compare-torchvision" in printed and "benchmarks/README.md" in printed
    assert all(f"  {task} " in printed for task in ("train", "eval", "flops", "data", "time-to-accuracy"))


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
        (["--config-file", SHAPES_TINY, "--task", "time-to-accuracy", "--interval", "0"],
         "--interval and --minutes must be positive"),
        (["--config-file", SHAPES_TINY, "--task", "time-to-accuracy", "--compare-torchvision"],
         "apply to --task train and eval"),
    ],
    ids=["bad-task", "missing-config", "unknown-key", "not-r50", "rcnn-not-r50", "no-counterpart", "data-compare",
         "relative-missing", "relative-flops", "no-train-set", "no-test-set", "zero-iters", "bad-device",
         "tta-interval", "tta-compare"],
)
def test_errors_exit_with_a_message(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err

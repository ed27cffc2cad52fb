"""export_model / tools/export_model.py: TorchScript and ONNX files equal to the eager model, loadable
without retinadet; bad parts and bad images get clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from retinadet.export import (
    BOX_TOLERANCE,
    SCORE_TOLERANCE,
    ExportError,
    MissingPackageError,
    build_detection_graph,
    compare_detections,
    export_model,
    load_exported,
    sample_images,
    synthetic_scene,
)
from retinadet.export import errors as export_errors
from retinadet.modeling import build_model
from retinadet.utils.testing import config_file, get_config, load_tool, quick_cfg

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

NAMES = ["circle", "square", "triangle"]


def _retinanet_cfg(weights="", *opts):
    # Batch norm, as trained detectors' backbones: GroupNorm of a random network on a flat image divides
    # float noise by a near-zero spread, which no two runtimes round alike.
    return quick_cfg("MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.WEIGHTS", weights, "MODEL.RESNETS.NORM", "FrozenBN",
                     "MODEL.HEAD.NORM", "", *opts)


def _faster_rcnn_cfg(weights=""):
    return get_config("quick/faster_rcnn_R_18_shapes_tiny.yaml", "MODEL.WEIGHTS", weights)


def _spread(model):
    """Class scores spread over about 0.02-0.5 by anchor, as after some training. (Larger logits would
    saturate many scores to exactly 1.0, whose order among equals no two NMS implementations share.)"""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.head.cls_score.bias.copy_(torch.rand(model.head.cls_score.bias.shape, generator=g) * 3.0 - 4.0)
        model.head.cls_score.weight.mul_(3.0)


def _weights(cfg, path, spread):
    torch.manual_seed(0)
    model = build_model(cfg)
    if spread:
        _spread(model)
    torch.save({"model": model.state_dict(), "meta": {"thing_classes": NAMES}}, path)
    return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export-weights")
    return {"retinanet": _weights(_retinanet_cfg(), folder / "retinanet.pth", True),
            "faster_rcnn": _weights(_faster_rcnn_cfg(), folder / "faster_rcnn.pth", False)}


def _cfg(arch, weights):
    return _retinanet_cfg(weights[arch]) if arch == "retinanet" else _faster_rcnn_cfg(weights[arch])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, weights):
    """Every (architecture, format) exported once: {(arch, fmt): ExportResult}."""
    out = {}
    for arch in ("retinanet", "faster_rcnn"):
        for fmt in ("torchscript", "onnx"):
            folder = tmp_path_factory.mktemp(f"{arch}-{fmt}")
            out[(arch, fmt)] = export_model(_cfg(arch, weights), fmt, str(folder))
    return out


CASES = [(a, f) for a in ("retinanet", "faster_rcnn") for f in ("torchscript", "onnx")]


@pytest.mark.parametrize("arch, fmt", CASES)
def test_export_equals_eager_on_two_sizes_and_an_empty_image(exported, arch, fmt):
    result = exported[(arch, fmt)]
    assert os.path.isfile(result.path) and result.path.endswith(".ts" if fmt == "torchscript" else ".onnx")
    comparisons = result.comparisons
    assert all(c.equal for c in comparisons)
    assert len({tuple(c.image_size) for c in comparisons}) >= 2
    assert all(c.eager_count > 0 for c in comparisons[:2])  # detections compared, not only empty sets
    for c in comparisons:
        assert c.max_box_diff <= BOX_TOLERANCE and c.max_score_diff <= SCORE_TOLERANCE
    if fmt == "torchscript":  # same kernels, same order: bit for bit
        assert all(c.max_box_diff == 0 and c.max_score_diff == 0 for c in comparisons)
    meta = json.loads(open(result.metadata_path).read())
    assert meta["class_names"] == NAMES and meta["input"]["channel_order"] == "RGB" and meta["format"] == fmt
    assert len(meta["checked_against_eager"]) == len(comparisons)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_image_without_detections_gives_empty_outputs(weights, fmt, tmp_path):
    # A threshold no score reaches: every image has no detection above it.
    cfg = _retinanet_cfg(weights["retinanet"], "MODEL.RETINANET.SCORE_THRESH_TEST", "0.999")
    result = export_model(cfg, fmt, str(tmp_path))
    assert all(c.equal and c.eager_count == 0 for c in result.comparisons)
    detector = load_exported(result.path, "torchscript" if fmt == "torchscript" else "onnxruntime")
    out = detector(synthetic_scene(150, 200))
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,) and out["labels"].dtype == torch.int64


def _eager(cfg, image):
    graph = build_detection_graph(cfg)
    with torch.no_grad():
        boxes, scores, labels = graph(torch.from_numpy(image))
    return {"boxes": boxes, "scores": scores, "labels": labels}


# OpenVINO runs in a child process: in the whole suite, the pytest process that had run OpenVINO networks
# later died of a segmentation fault while waiting on an unrelated subprocess (not reproduced alone).
_OPENVINO_CHILD = (
    "import sys, json, numpy as np\n"
    "from retinadet.export import load_exported\n"
    "detector = load_exported(sys.argv[1], 'openvino')\n"
    "out = [{k: v.tolist() for k, v in detector(np.load(p)).items()} for p in sys.argv[2:]]\n"
    "print(json.dumps(out))\n")


def run_openvino_in_child(path, images, folder):
    """Detections of ``images`` by the OpenVINO runtime on ``path``, computed in a child process."""
    files = []
    for k, image in enumerate(images):
        files.append(str(folder / f"openvino-input-{k}.npy"))
        np.save(files[-1], image)
    run = subprocess.run([sys.executable, "-c", _OPENVINO_CHILD, path, *files], capture_output=True, text=True,
                         timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert run.returncode == 0, run.stderr[-3000:]
    return [{"boxes": torch.tensor(d["boxes"]).reshape(-1, 4), "scores": torch.tensor(d["scores"]),
             "labels": torch.tensor(d["labels"], dtype=torch.int64)}
            for d in json.loads(run.stdout.strip().splitlines()[-1])]


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime", "openvino"])
@pytest.mark.parametrize("arch", ["retinanet", "faster_rcnn"])
def test_a_new_size_runs_like_eager_in_every_backend(exported, weights, arch, backend, tmp_path):
    fmt = "torchscript" if backend == "torchscript" else "onnx"
    cfg = _cfg(arch, weights)
    images = [synthetic_scene(h, w, seed=h) for h, w in ((97, 211), (300, 140))]  # sizes the export never saw
    if backend == "openvino":
        pytest.importorskip("openvino")
        outputs = run_openvino_in_child(exported[(arch, fmt)].path, images, tmp_path)
    else:
        detector = load_exported(exported[(arch, fmt)].path, backend)
        outputs = [detector(image) for image in images]
    for image, got in zip(images, outputs):
        c = compare_detections(_eager(cfg, image), got, image.shape[1:])
        assert c.equal, c
        assert got["boxes"].dtype == torch.float32 and got["labels"].dtype == torch.int64


_STANDALONE = {
    "torchscript": (
        "import sys, json, numpy as np, torch, torchvision\n"
        "m = torch.jit.load(sys.argv[1])\n"
        "image = torch.from_numpy(np.load(sys.argv[2]))\n"
        "b, s, l = m(image)\n"
        "assert not any(k.startswith('retinadet') for k in sys.modules), 'retinadet was imported'\n"
        "print(json.dumps([b.tolist(), s.tolist(), l.tolist()]))\n"),
    "onnx": (
        "import sys, json, numpy as np, onnxruntime\n"
        "sess = onnxruntime.InferenceSession(sys.argv[1])\n"
        "b, s, l = sess.run(None, {'image': np.load(sys.argv[2])})\n"
        "assert not any(k.startswith('retinadet') or k == 'torch' for k in sys.modules), 'imported'\n"
        "print(json.dumps([b.tolist(), s.tolist(), l.tolist()]))\n"),
}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_file_runs_in_a_process_without_retinadet(exported, weights, fmt, tmp_path):
    cfg = _retinanet_cfg(weights["retinanet"])
    image = sample_images(cfg, seed=5)[1]
    np.save(tmp_path / "image.npy", image)
    # Run from an empty folder, so the checkout's retinadet/ is not importable by accident.
    run = subprocess.run([sys.executable, "-c", _STANDALONE[fmt], exported[("retinanet", fmt)].path,
                          str(tmp_path / "image.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    boxes, scores, labels = json.loads(run.stdout.strip().splitlines()[-1])
    got = {"boxes": torch.tensor(boxes).reshape(-1, 4), "scores": torch.tensor(scores), "labels": torch.tensor(labels)}
    c = compare_detections(_eager(cfg, image), got, image.shape[1:])
    assert c.equal and c.eager_count > 0, c


def test_onnx_graph_declares_a_uint8_image_and_refuses_floats(exported):
    import onnxruntime

    session = onnxruntime.InferenceSession(exported[("retinanet", "onnx")].path)
    (image_input,) = session.get_inputs()
    assert image_input.type == "tensor(uint8)" and len(image_input.shape) == 3
    with pytest.raises(Exception, match="float"):
        session.run(None, {"image": np.zeros((3, 64, 64), np.float32)})


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_bad_images_get_clear_errors(exported, backend):
    fmt = "torchscript" if backend == "torchscript" else "onnx"
    detector = load_exported(exported[("retinanet", fmt)].path, backend)
    with pytest.raises(ValueError, match="dtype float32.*uint8"):
        detector(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"shape \(32, 32\).*\(3, H, W\)"):
        detector(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="empty \\(0 x 0 pixels\\)"):
        detector(np.zeros((3, 0, 0), np.uint8))


def test_missing_runtime_package_names_what_to_install(exported, monkeypatch):
    real = export_errors.importlib.import_module

    def fake(name, *args):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args)

    monkeypatch.setattr(export_errors.importlib, "import_module", fake)
    with pytest.raises(MissingPackageError, match=r"pip install onnxruntime.*\.\[export\]"):
        load_exported(exported[("retinanet", "onnx")].path, "onnxruntime")


class _UnexportableHead(nn.Module):
    """A plug-in head using an operation the ONNX exporter has no conversion for."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, features):
        logits, deltas = self.head(features)
        return [x + 0 * torch.histc(x, bins=4).sum() for x in logits], deltas


def test_a_part_that_cannot_be_converted_is_named(weights, tmp_path):
    cfg = _retinanet_cfg(weights["retinanet"])
    model = build_model(cfg)
    model.head = _UnexportableHead(model.head)
    with pytest.raises(ExportError, match=r"aten::histc in module head \(_UnexportableHead\).*test_exporter\.py"):
        export_model(cfg, "onnx", str(tmp_path), model=model)
    assert not os.path.exists(tmp_path / "model.onnx")


def test_a_part_that_fixes_a_size_is_named_when_the_file_disagrees(weights, tmp_path):
    cfg = _retinanet_cfg(weights["retinanet"])
    model = build_model(cfg)

    class FixedAnchors(nn.Module):
        def __init__(self, generator):
            super().__init__()
            self.generator = generator
            self.num_anchors = generator.num_anchors

        def forward(self, features, image_size):
            sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]  # frozen by the trace
            return self.generator([features[0].new_zeros(1, 1, h, w) for h, w in sizes], image_size)

    model.anchor_generator = FixedAnchors(model.anchor_generator)
    (tmp_path / "model.ts").write_bytes(b"an earlier good export")
    with pytest.raises(ExportError, match=r"(?s)disagrees with the eager model.*anchor_generator \(FixedAnchors\) at "):
        export_model(cfg, "torchscript", str(tmp_path), model=model)
    # The earlier file is untouched and nothing half-checked is left behind.
    assert (tmp_path / "model.ts").read_bytes() == b"an earlier good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ts"]


def test_missing_weights_get_trainings_message(tmp_path):
    cfg = _retinanet_cfg(str(tmp_path / "nope.pth"))
    with pytest.raises(Exception, match="nope.pth"):
        export_model(cfg, "torchscript", str(tmp_path / "out"))


def test_export_tool_writes_the_file_and_reports_the_check(weights, tmp_path, capsys):
    tool = load_tool("export_model")
    code = tool.main(["--config-file", config_file("quick/retinanet_R_18_synthetic.yaml"), "--format", "torchscript",
                      "--output", str(tmp_path), "MODEL.RETINANET.NUM_CLASSES", "3",
                      "MODEL.WEIGHTS", weights["retinanet"]])
    out = capsys.readouterr().out
    assert code == 0 and os.path.isfile(tmp_path / "model.ts") and os.path.isfile(tmp_path / "model.json")
    assert out.count("same as eager") == 3


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 32, 32), "must be uint8"),
    (torch.zeros(32, 32, dtype=torch.uint8), r"must be \(3, H, W\)"),
    (torch.zeros(3, 0, 0, dtype=torch.uint8), "is empty"),
])
def test_the_torchscript_graph_itself_refuses_bad_images(exported, bad, match):
    import torchvision  # noqa: F401  (the graph's nms op)

    module = torch.jit.load(exported[("retinanet", "torchscript")].path)
    with pytest.raises(Exception, match=match):
        module(bad)

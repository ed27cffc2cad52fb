"""MODEL.INFERENCE_BACKEND / INFERENCE_PRECISION: DefaultPredictor and evaluation run by each backend
give the eager model's detections and AP."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from retinadet.engine import DefaultPredictor
from retinadet.export import BOX_TOLERANCE, SCORE_TOLERANCE, compare_detections, synthetic_scene

from .test_exporter import NAMES, _retinanet_cfg, weights  # noqa: F401  (weights: the module's fixture)

pytest.importorskip("onnxruntime")


def _predictor(weights, backend, precision="float32"):  # noqa: F811
    cfg = _retinanet_cfg(weights["retinanet"], "MODEL.INFERENCE_BACKEND", backend,
                         "MODEL.INFERENCE_PRECISION", precision)
    return DefaultPredictor(cfg)


@pytest.fixture(scope="module")
def images():
    # (H, W, 3) arrays of two sizes; the predictor resizes them with the data pipeline first.
    return [synthetic_scene(140, 200, seed=1).transpose(1, 2, 0).copy(),
            synthetic_scene(230, 170, seed=2).transpose(1, 2, 0).copy()]


_PREDICTOR_CHILD = (
    "import sys, json, numpy as np\n"
    "from retinadet.engine import DefaultPredictor\n"
    "from tests.export.test_exporter import _retinanet_cfg\n"
    "cfg = _retinanet_cfg(sys.argv[1], 'MODEL.INFERENCE_BACKEND', sys.argv[2])\n"
    "out = DefaultPredictor(cfg).predict_batch([np.load(p) for p in sys.argv[3:]])\n"
    "print(json.dumps([{k: (v.tolist() if hasattr(v, 'tolist') else v) for k, v in d.items()} for d in out]))\n")


def _predict_in_child(weights, backend, images, folder):  # noqa: F811
    """DefaultPredictor's detections with ``backend``, computed in a child process (see test_exporter.py)."""
    files = []
    for k, image in enumerate(images):
        files.append(str(folder / f"image-{k}.npy"))
        np.save(files[-1], image)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, "-c", _PREDICTOR_CHILD, weights["retinanet"], backend, *files],
                         capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    return [{"boxes": torch.tensor(d["boxes"]).reshape(-1, 4), "scores": torch.tensor(d["scores"]),
             "labels": torch.tensor(d["labels"], dtype=torch.int64), "class_names": d["class_names"]}
            for d in json.loads(run.stdout.strip().splitlines()[-1])]


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime", "openvino"])
def test_exported_backends_predict_the_eager_detections(weights, images, backend, tmp_path):  # noqa: F811
    eager = _predictor(weights, "eager").predict_batch(images)
    if backend == "openvino":  # in a child process, as in test_exporter.py
        pytest.importorskip("openvino")
        got = _predict_in_child(weights, backend, images, tmp_path)
    else:
        got = _predictor(weights, backend).predict_batch(images)
    for e, g, image in zip(eager, got, images):
        c = compare_detections(e, g, image.shape[:2])
        assert c.equal and c.eager_count > 0, c
        assert c.max_box_diff <= BOX_TOLERANCE and c.max_score_diff <= SCORE_TOLERANCE
        assert g["class_names"] == [NAMES[k] for k in g["labels"].tolist()]
        # Boxes in the given image's frame (W x H), as the eager predictor's.
        assert float(g["boxes"][:, 2].max()) <= image.shape[1] and float(g["boxes"][:, 3].max()) <= image.shape[0]


def test_bfloat16_eager_returns_float32_close_to_float(weights, images):  # noqa: F811
    eager = _predictor(weights, "eager")(images[0])
    bf16 = _predictor(weights, "eager", "bfloat16")(images[0])
    assert bf16["boxes"].dtype == torch.float32 and bf16["scores"].dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: the best score moves by well under 0.05, not by 1e-6.
    assert abs(float(bf16["scores"][0]) - float(eager["scores"][0])) < 0.05


@pytest.mark.parametrize("backend, precision, match", [
    ("onnx", "float32", "Did you mean 'onnxruntime'"),
    ("openvion", "float32", "Did you mean 'openvino'"),
    ("onnxruntime", "bfloat16", "needs MODEL.INFERENCE_BACKEND in"),
    ("eager", "fp16", "INFERENCE_PRECISION = 'fp16'"),
])
def test_bad_backend_settings_are_named(weights, backend, precision, match):  # noqa: F811
    with pytest.raises(ValueError, match=match):
        _predictor(weights, backend, precision)


def test_evaluation_ap_of_the_exported_model_equals_eager(weights, tmp_path):  # noqa: F811
    from retinadet.engine import DefaultTrainer
    from retinadet.export.inference_model import wrap_for_inference
    from retinadet.modeling import build_model
    from retinadet.utils.testing import get_config

    def ap(backend):
        cfg = get_config("quick/retinanet_R_18_shapes_tiny.yaml", "DATASETS.ROOT", str(tmp_path / "data"),
                         "MODEL.INFERENCE_BACKEND", backend, "OUTPUT_DIR", str(tmp_path / backend),
                         "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0", "MODEL.RESNETS.NORM", "FrozenBN")
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():  # scores spread by anchor, so the ranking (and the AP) depends on the network
            model.head.cls_score.bias.copy_(torch.linspace(-3.0, -1.0, model.head.cls_score.bias.numel()))
            model.head.cls_score.weight.mul_(3.0)
        return DefaultTrainer.test(cfg, wrap_for_inference(cfg, model))["bbox"]

    eager, exported = ap("eager"), ap("onnxruntime")
    assert np.isfinite(eager["AP"]) and eager["AP50"] >= 0
    assert abs(exported["AP"] - eager["AP"]) <= 0.1 and abs(exported["AP50"] - eager["AP50"]) <= 0.1

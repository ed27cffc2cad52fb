"""The data tools and the whole data path on a tiny embedded shapes set: loader -> model -> COCO AP."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from retinadet.config import get_cfg
from retinadet.data import (
    DatasetCatalog,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
)
from retinadet.data.shapes import register_shapes
from retinadet.evaluation import COCOEvaluator, default_output_dir, inference_on_dataset
from retinadet.modeling import build_model
from retinadet.utils.testing import load_tool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


demo, visualize_data = load_tool("demo"), load_tool("visualize_data")

CONFIG = os.path.join(REPO, "configs", "shapes", "retinanet_R_18_FPN.yaml")
TRAIN, VAL = "tools_tiny_shapes_train", "tools_tiny_shapes_val"


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("datasets"))
    names = register_shapes(root, splits={TRAIN: ("tiny_train", 6, 0), VAL: ("tiny_val", 4, 1)})
    yield root
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _overrides(root, out_dir):
    return ["DATASETS.ROOT", root, "DATASETS.TRAIN", f"('{TRAIN}',)", "DATASETS.TEST", f"('{VAL}',)",
            "OUTPUT_DIR", str(out_dir), "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]


def test_visualize_annotations_and_loader(tiny_shapes, tmp_path):
    out = tmp_path / "gt"
    assert visualize_data.main(["--config-file", CONFIG, "--source", "annotation", "--output-dir", str(out),
                                "--num-images", "3", *_overrides(tiny_shapes, tmp_path)]) == 0
    files = sorted(os.listdir(out))
    assert len(files) == 3
    records = DatasetCatalog.get(TRAIN)
    drawn = np.asarray(Image.open(out / files[0]))
    original = np.asarray(Image.open(records[0]["file_name"]).convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()  # boxes were drawn

    out2 = tmp_path / "loader"
    assert visualize_data.main(["--config-file", CONFIG, "--source", "dataloader", "--output-dir", str(out2),
                                "--num-images", "4", *_overrides(tiny_shapes, tmp_path)]) == 0
    shapes = [np.asarray(Image.open(out2 / f)).shape for f in sorted(os.listdir(out2))]
    assert len(shapes) == 4
    # The loader resizes the short side to a size drawn from MIN_SIZE_TRAIN's range [112, 176], the long
    # side capped at MAX_SIZE_TRAIN 224.
    assert all(112 <= min(h, w) <= 176 or max(h, w) == 224 for h, w, _ in shapes)
    assert all(max(h, w) <= 224 for h, w, _ in shapes)


def test_demo_draws_predictions(tiny_shapes, tmp_path):
    image_path = DatasetCatalog.get(VAL)[0]["file_name"]
    out = tmp_path / "demo"
    # An untrained model scores everything near the 0.01 prior: keep all scores to have boxes to draw.
    assert demo.main(["--config-file", CONFIG, "--input", image_path, "--output", str(out),
                      "--confidence-threshold", "0", *_overrides(tiny_shapes, tmp_path),
                      "MODEL.RETINANET.SCORE_THRESH_TEST", "0.0"]) == 0
    drawn = np.asarray(Image.open(out / (os.path.splitext(os.path.basename(image_path))[0] + ".png")))
    original = np.asarray(Image.open(image_path).convert("RGB"))
    assert drawn.shape == original.shape and (drawn != original).any()
    with pytest.raises(SystemExit, match="do not exist"):
        demo.main(["--config-file", CONFIG, "--input", str(tmp_path / "missing.png"), "--output", str(out)])


def test_train_steps_then_coco_evaluation(tiny_shapes, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(_overrides(tiny_shapes, tmp_path))
    cfg.freeze()
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    model.train()
    batches = iter(build_detection_train_loader(cfg))
    for _ in range(2):
        batch = next(batches)
        assert len(batch) == 2 and all(item["image"].dtype == torch.uint8 for item in batch)
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()

    evaluator = COCOEvaluator(VAL, output_dir=default_output_dir(cfg, VAL), distributed=False)
    results = inference_on_dataset(model, build_detection_test_loader(cfg, VAL), evaluator)
    assert set(results["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert all(0.0 <= v <= 100.0 for k, v in results["bbox"].items() if k in ("AP", "AP50"))
    written = json.loads((tmp_path / "inference" / VAL / "coco_instances_results.json").read_text())
    val_ids = {r["image_id"] for r in DatasetCatalog.get(VAL)}
    assert {d["image_id"] for d in written} <= val_ids
    assert {d["category_id"] for d in written} <= set(range(1, 7))

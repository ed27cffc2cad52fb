"""DetectionGraph: the eager form of the exported detector equals the model on the same pixels."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retinadet.data.transforms import resize_shortest_edge_shape
from retinadet.export import DetectionGraph, resized_shape
from retinadet.utils.testing import get_config, quick_model, spread_scores


@pytest.mark.parametrize("hw", [(300, 200), (200, 300), (256, 320), (1, 999), (999, 1), (77, 77), (481, 641)])
@pytest.mark.parametrize("short, cap", [(100, 140), (256, 320), (800, 1333), (128, 0)])
def test_resized_shape_is_the_data_pipelines(hw, short, cap):
    got = resized_shape(torch.tensor(hw[0]), torch.tensor(hw[1]), short, cap)
    assert (int(got[0]), int(got[1])) == resize_shortest_edge_shape(hw[0], hw[1], short, cap)


def test_resized_shape_by_hand():
    # (300, 200), short 100 -> (150, 100); long side 150 > 140 -> x 140/150 -> (140, 93.33) -> (140, 93).
    h, w = resized_shape(torch.tensor(300), torch.tensor(200), 100, 140)
    assert (int(h), int(w)) == (140, 93)


def _retinanet():
    model = quick_model("MODEL.RETINANET.NUM_CLASSES", "3")
    spread_scores(model)
    return model.eval()


def _faster_rcnn():
    torch.manual_seed(0)
    from retinadet.modeling import build_model

    return build_model(get_config("quick/faster_rcnn_R_18_shapes_tiny.yaml")).eval()


@pytest.mark.parametrize("build", [_retinanet, _faster_rcnn], ids=["retinanet", "faster_rcnn"])
def test_graph_at_the_test_size_equals_the_model(build):
    model = build()
    rng = np.random.default_rng(0)
    # Already at its test size (short side 256 for the quick RetinaNet, 128 for the tiny shapes model):
    # the in-graph resize is the identity, so the graph sees the model's pixels exactly.
    short = 256 if model.__class__.__name__ == "RetinaNet" else 128
    image = torch.from_numpy(rng.integers(0, 256, (3, short, short + 37), dtype=np.uint8))
    graph = DetectionGraph(model, short, 2 * short)
    with torch.no_grad():
        boxes, scores, labels = graph(image)
        expected = model([{"image": image}])[0]
    assert len(scores) > 0
    assert torch.equal(boxes, expected["boxes"]) and torch.equal(scores, expected["scores"])
    assert torch.equal(labels, expected["labels"])


def test_graph_resizes_and_returns_boxes_in_the_input_frame():
    model = _retinanet()
    image = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 100, 150), dtype=np.uint8))
    graph = DetectionGraph(model, 256, 320)
    # 100 x 150 -> short 256: (256, 384) -> capped at 320: (213.3, 320) -> (213, 320).
    resized = F.interpolate(image.float()[None], size=(213, 320), mode="bilinear", align_corners=False)[0]
    with torch.no_grad():
        boxes, scores, labels = graph(image)
        expected = model([{"image": resized, "height": 100, "width": 150}])[0]
    assert len(scores) > 0
    assert torch.equal(boxes, expected["boxes"]) and torch.equal(scores, expected["scores"])
    assert boxes[:, 2].max() <= 150 and boxes[:, 3].max() <= 100

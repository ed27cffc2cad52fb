"""Class-aware NMS of exported graphs: the per-class results of ops.batched_nms, with many classes too."""
import numpy as np
import pytest
import torch

from retinadet import ops
from retinadet.ops.traced_nms import traced_nms_format


class _BatchedNMS(torch.nn.Module):
    def forward(self, boxes, scores, idxs):
        return ops.batched_nms(boxes, scores, idxs, 0.5)


def _case(n, classes, seed):
    g = torch.Generator().manual_seed(seed)
    # Coordinates up to 1300 px: with 80 classes the coordinate-offset trick would shift boxes by 1e5.
    xy = torch.rand(n, 2, generator=g) * 1300
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 300 + 1], 1)
    return boxes, torch.rand(n, generator=g), torch.randint(0, classes, (n,), generator=g)


def _same_set(kept, expected):
    return np.array_equal(np.sort(np.asarray(kept)), np.sort(expected.numpy()))


def test_torchscript_trace_keeps_the_per_class_loop():
    example = _case(200, 5, 0)
    with traced_nms_format("torchscript"):
        traced = torch.jit.trace(_BatchedNMS(), example, check_trace=False)
    for n, classes, seed in ((300, 80, 1), (50, 2, 2), (0, 3, 3)):
        boxes, scores, idxs = _case(n, classes, seed)
        assert torch.equal(traced(boxes, scores, idxs), ops.batched_nms(boxes, scores, idxs, 0.5))


def test_onnx_multiclass_nonmaxsuppression_equals_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    example = _case(200, 5, 0)
    with traced_nms_format("onnx"):
        traced = torch.jit.trace(_BatchedNMS(), example, check_trace=False)
        torch.onnx.export(traced, example, str(tmp_path / "nms.onnx"), dynamo=False, opset_version=17,
                          input_names=["boxes", "scores", "idxs"],
                          dynamic_axes={"boxes": {0: "n"}, "scores": {0: "n"}, "idxs": {0: "n"}})
    session = ort.InferenceSession(str(tmp_path / "nms.onnx"))
    for n, classes, seed in ((300, 80, 1), (500, 80, 4), (50, 2, 2), (0, 3, 3)):
        boxes, scores, idxs = _case(n, classes, seed)
        expected = ops.batched_nms(boxes, scores, idxs, 0.5)
        (kept,) = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy(), "idxs": idxs.numpy()})
        assert _same_set(kept, expected)
        assert np.all(np.diff(scores.numpy()[kept]) <= 0)  # best first


def test_plain_tracing_keeps_the_compiled_ops():
    # fvcore's FLOP count traces the model too: outside an export the usual op is recorded.
    graph = torch.jit.trace(_BatchedNMS(), _case(20, 3, 0), check_trace=False).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    expected = "retinadet::batched_nms" if ops.extension_loaded() else "aten::sort"
    assert expected in kinds and "prim::CallFunction" not in kinds


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="'tflite' is not 'torchscript' or 'onnx'"):
        with traced_nms_format("tflite"):
            pass

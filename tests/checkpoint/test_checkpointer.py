"""DetectionCheckpointer: --resume refuses a checkpoint whose weights no longer fit the model (a full
disk while saving is in tests/reliability/test_checkpoint_inputs.py)."""
import pytest
import torch
from torch import nn

from retinadet.checkpoint.checkpointer import DetectionCheckpointer


class _Detector(nn.Module):
    """A stand-in with a detector's parameter names: backbone.conv, head.cls_score."""

    def __init__(self, num_classes: int, width: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(3, width, 1)
        self.head = nn.Module()
        self.head.cls_score = nn.Conv2d(width, num_classes * 9, 1)


def _saved(tmp_path, model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    DetectionCheckpointer(model, str(tmp_path), optimizer=optimizer).save("model_0000010")
    return optimizer


def test_resume_with_the_same_model_loads_everything(tmp_path):
    saved = _Detector(6)
    _saved(tmp_path, saved)
    again = _Detector(6)
    DetectionCheckpointer(again, str(tmp_path)).resume_or_load("", resume=True)
    for name, value in saved.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


def test_resume_after_num_classes_changed_names_tensors_and_keys(tmp_path):
    _saved(tmp_path, _Detector(6))
    changed = _Detector(7)
    before = {k: v.clone() for k, v in changed.state_dict().items()}
    optimizer = torch.optim.SGD(changed.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError) as info:
        DetectionCheckpointer(changed, str(tmp_path), optimizer=optimizer).resume_or_load("", resume=True)
    message = str(info.value)
    assert "model_0000010.pth does not fit the model, so the run cannot resume from it" in message
    # 6 x 9 = 54 anchors' class outputs saved, 7 x 9 = 63 in the model.
    assert "head.cls_score.weight [54, 4, 1, 1] in the checkpoint, [63, 4, 1, 1] in the model" in message
    assert "MODEL.RETINANET.NUM_CLASSES" in message and "MODEL.WEIGHTS" in message
    # Nothing was loaded: the model keeps its own weights, and the optimizer its empty state.
    for name, value in changed.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert optimizer.state_dict()["state"] == {}


def test_missing_and_extra_tensors_are_named(tmp_path):
    _saved(tmp_path, _Detector(6))
    wider = _Detector(6, width=8)
    wider.backbone.extra = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"backbone\.conv\.weight \[4, 3, 1, 1\] in the checkpoint, \[8, 3, 1, 1\].*"
                                         r"2 model tensors are not in the checkpoint: backbone\.extra\.weight, "
                                         r"backbone\.extra\.bias.*MODEL\.RESNETS"):
        DetectionCheckpointer(wider, str(tmp_path)).resume_or_load("", resume=True)


"""Reliability catalogue, checkpoint family: missing, damaged, hostile and mismatched weights files, and a full disk."""
import logging
import os
import pickle
import re
import tempfile

import numpy as np
import pytest
import torch
from torch import nn

from retinadet.checkpoint import load_checkpoint_file, load_weights
from retinadet.utils import file_io
from retinadet.checkpoint.checkpointer import DetectionCheckpointer


class _Detector(nn.Module):
    """A stand-in with a detector's parameter names: backbone.conv, head.cls_score."""

    def __init__(self, num_classes: int = 6, width: int = 4) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(3, width, 1)
        self.head = nn.Module()
        self.head.cls_score = nn.Conv2d(width, num_classes * 9, 1)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before):
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


def _hostile_pickle(module: str, name: str, argument: str) -> bytes:
    """Protocol-0 pickle that calls ``module.name(argument)`` when loaded by a plain unpickler."""
    return f"c{module}\n{name}\n(S'{argument}'\ntR.".encode()


# ------------------------------------------------------------------------------------------ reading files


def test_missing_file_is_named(tmp_path):
    path = str(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match=rf"Checkpoint file not found: {re.escape(path)}"):
        load_checkpoint_file(path)


@pytest.mark.parametrize("suffix,kind", [(".pth", r"torch\.save \(weights_only=True\)"), (".pkl", r"pickle \(\.pkl\)")])
def test_truncated_file_is_named_with_its_size(tmp_path, suffix, kind):
    weights = {"model": {"backbone.conv.weight": np.zeros((4, 3, 1, 1), dtype=np.float32)}}
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".pkl":  # a detectron2 model-zoo style pickle of numpy arrays
        whole.write_bytes(pickle.dumps(weights, protocol=2))
    else:
        torch.save({"model": _Detector().state_dict()}, whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[:100])
    with pytest.raises(RuntimeError, match=rf"(?s)Could not read checkpoint {re.escape(str(cut))} as a {kind} file "
                                           r"\(100 bytes\).*may be truncated or corrupt"):
        load_checkpoint_file(str(cut))


@pytest.mark.parametrize("module,name,argument", [
    ("os", "system", "touch {marker}"),
    ("posix", "system", "touch {marker}"),
    ("builtins", "eval", "__import__('os').system('touch {marker}')"),
    ("__builtin__", "eval", "__import__('os').system('touch {marker}')"),  # a Python 2 spelling
])
def test_pickle_that_would_run_code_is_refused_naming_the_global(tmp_path, module, name, argument):
    marker = tmp_path / "MARKER"
    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(_hostile_pickle(module, name, argument.format(marker=marker)))
    with pytest.raises(ValueError, match=rf"Refusing to load checkpoint {re.escape(str(path))}: it refers to the "
                                         rf"global {re.escape(module)}\.{name}, which a weights file does not need"):
        load_checkpoint_file(str(path))
    assert not marker.exists()
    with pytest.raises(ValueError, match=rf"global {re.escape(module)}\.{name}"):
        load_weights(_Detector(), str(path))
    assert not marker.exists()


def test_torch_file_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "MARKER"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pth"
    torch.save({"model": {"backbone.conv.weight": Evil()}}, path)
    with pytest.raises(RuntimeError, match=rf"(?s)Could not read checkpoint {re.escape(str(path))} as a torch\.save "
                                           r"\(weights_only=True\) file.*GLOBAL posix\.system"):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_state_dict_with_non_tensor_entries_names_them(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"model": {"backbone.conv.weight": torch.zeros(1), "note": "hello", "epoch": 3}}, path)
    with pytest.raises(ValueError, match=rf"Checkpoint {re.escape(str(path))} is not a state dict: entries 'note' "
                                         r"\(str\), 'epoch' \(int\) are neither tensors nor numpy arrays"):
        load_checkpoint_file(str(path))


def test_file_holding_a_list_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=rf"Checkpoint {re.escape(str(path))} holds a list, expected a dict of tensors"):
        load_checkpoint_file(str(path))


def test_unrecognised_key_layout_is_refused(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"encoder.layer0.weight": torch.zeros(1)}, path)
    model = _Detector()
    before = _state(model)
    with pytest.raises(ValueError, match=r"Unrecognised checkpoint layout \(keys such as \['encoder\.layer0\.weight'\]\)"):
        load_weights(model, str(path))
    _assert_unchanged(model, before)


# ------------------------------------------------------------------------------------------ DetectionCheckpointer


def test_checkpointer_missing_file_is_named(tmp_path):
    path = str(tmp_path / "model_0000009.pth")
    with pytest.raises(FileNotFoundError, match=rf"Checkpoint not found: {re.escape(path)}"):
        DetectionCheckpointer(_Detector(), str(tmp_path)).load(path)


def test_checkpointer_missing_model_weights_is_named(tmp_path):
    path = str(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match=rf"MODEL\.WEIGHTS file not found: '{re.escape(path)}'"):
        DetectionCheckpointer(_Detector(), str(tmp_path)).resume_or_load(path, resume=False)


def test_checkpointer_file_without_model_entry_is_refused(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(_Detector().state_dict(), path)
    with pytest.raises(RuntimeError, match=rf"{re.escape(str(path))} is not a retinadet checkpoint \(no 'model' state "
                                           r"dict in it\)"):
        DetectionCheckpointer(_Detector(), str(tmp_path)).load(str(path))


def test_resume_into_a_changed_model_names_tensors_and_config_keys(tmp_path):
    DetectionCheckpointer(_Detector(num_classes=6), str(tmp_path)).save("model_0000010")
    changed = _Detector(num_classes=7)
    before = _state(changed)
    optimizer = torch.optim.SGD(changed.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"model_0000010\.pth does not fit the model, so the run cannot resume from it: "
                                         r"shapes differ: head\.cls_score\.weight \[54, 4, 1, 1\] in the checkpoint, "
                                         r"\[63, 4, 1, 1\] in the model.*MODEL\.RETINANET\.NUM_CLASSES"):
        DetectionCheckpointer(changed, str(tmp_path), optimizer=optimizer).resume_or_load("", resume=True)
    _assert_unchanged(changed, before)
    assert optimizer.state_dict()["state"] == {}


def test_truncated_last_checkpoint_is_named_and_resume_falls_back(tmp_path, caplog):
    saved = _Detector()
    ckpt = DetectionCheckpointer(saved, str(tmp_path))
    ckpt.save("model_0000002")
    ckpt.save("model_0000004")
    newest = tmp_path / "model_0000004.pth"
    newest.write_bytes(newest.read_bytes()[:100])
    again = _Detector()
    with caplog.at_level(logging.ERROR):
        DetectionCheckpointer(again, str(tmp_path)).resume_or_load("", resume=True)
    _assert_unchanged(again, saved.state_dict())
    assert any(f"Cannot resume from {newest}" in r.getMessage() and "(100 bytes)" in r.getMessage()
               for r in caplog.records)


def test_no_readable_checkpoint_is_refused_listing_the_candidates(tmp_path):
    ckpt = DetectionCheckpointer(_Detector(), str(tmp_path))
    ckpt.save("model_0000002")
    (tmp_path / "model_0000002.pth").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match=rf"No readable checkpoint in {re.escape(str(tmp_path))}; tried "
                                           r"\[.*model_0000002\.pth'\]"):
        DetectionCheckpointer(_Detector(), str(tmp_path)).resume_or_load("", resume=True)


def _full_disk_for(fragment):
    """A mkstemp for retinadet.utils.file_io whose files named with ``fragment`` sit on a full disk:
    the temporary file exists, but its descriptor writes to /dev/full (ENOSPC)."""
    real_mkstemp = tempfile.mkstemp

    def fake_mkstemp(prefix="", suffix="", dir=None):
        fd, path = real_mkstemp(prefix=prefix, suffix=suffix, dir=dir)
        if fragment in prefix:
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, path

    return fake_mkstemp


def test_full_disk_while_saving_keeps_the_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    ckpt = DetectionCheckpointer(_Detector(), str(tmp_path))
    ckpt.save("model_0000002")
    kept = (tmp_path / "model_0000002.pth").read_bytes()
    monkeypatch.setattr(file_io.tempfile, "mkstemp", _full_disk_for(".model_"))
    with pytest.raises(OSError, match=r"No space left on device: could not write .*model_0000004\.pth; the files "
                                      r"written before it .* are unchanged") as info:
        ckpt.save("model_0000004")
    assert info.value.errno == 28
    monkeypatch.undo()
    assert not (tmp_path / "model_0000004.pth").exists()
    assert (tmp_path / "model_0000002.pth").read_bytes() == kept
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_while_writing_the_pointer_keeps_the_old_pointer(tmp_path, monkeypatch):
    ckpt = DetectionCheckpointer(_Detector(), str(tmp_path))
    ckpt.save("model_0000002")
    monkeypatch.setattr(file_io.tempfile, "mkstemp", _full_disk_for(".last_checkpoint."))
    with pytest.raises(OSError, match=r"No space left on device: could not write .*last_checkpoint;") as info:
        ckpt.save("model_0000004")
    assert info.value.errno == 28
    monkeypatch.undo()
    # The new checkpoint is complete, but the pointer still names the previous one, which still loads.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000002.pth"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    DetectionCheckpointer(_Detector(), str(tmp_path)).load(str(tmp_path / "model_0000002.pth"))

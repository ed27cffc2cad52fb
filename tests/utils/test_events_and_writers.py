"""Tests of EventStorage, the metric writers (console, metrics.json, TensorBoard) and the loss curve."""
import json
import logging
import re

import pytest
import torch

from retinadet.benchmark.memory import peak_memory_mb
from retinadet.utils.events import EventStorage, get_event_storage
from retinadet.utils.loss_curve import plot_loss_curves
from retinadet.utils.writers import CommonMetricPrinter, JSONWriter, TensorboardWriter, read_metrics


# ---------------------------------------------------------------- EventStorage


def test_storage_put_latest_history_and_median():
    storage = EventStorage(start_iter=5)
    for value in (4.0, 1.0, 3.0):
        storage.put_scalar("loss", value)
        storage.step()
    storage.put_scalar("lr", torch.tensor(0.02), smoothing_hint=False)  # 0-d tensors are accepted
    assert storage.iter == 8
    assert storage.latest()["loss"] == (3.0, 7)  # iterations 5, 6, 7
    assert storage.latest()["lr"] == (pytest.approx(0.02), 8)
    assert storage.history("loss").values() == [(4.0, 5), (1.0, 6), (3.0, 7)]
    assert storage.history("loss").median(3) == 3.0  # median of 4, 1, 3
    assert storage.history("loss").median(2) == 2.0  # median of 1, 3
    assert storage.history("loss").global_avg() == pytest.approx(8.0 / 3)
    storage.put_scalar("loss", 9.0, cur_iter=2)
    assert storage.latest()["loss"] == (9.0, 2)
    with pytest.raises(KeyError, match=r"No scalar named 'missing' was recorded; recorded: \['loss', 'lr'\]"):
        storage.history("missing")


def test_storage_smoothing_hints():
    storage = EventStorage()
    storage.put_scalars(loss_a=4.0, loss_b=10.0)
    storage.put_scalars(loss_a=2.0, loss_b=20.0)
    storage.put_scalar("lr", 0.5, smoothing_hint=False)
    storage.put_scalar("lr", 0.25, smoothing_hint=False)
    assert storage.smoothing_hints() == {"loss_a": True, "loss_b": True, "lr": False}
    smoothed = storage.latest_with_smoothing_hint(window=2)
    assert smoothed["loss_a"][0] == 3.0  # median of 4 and 2
    assert smoothed["loss_b"][0] == 15.0
    assert smoothed["lr"][0] == 0.25  # never smoothed: the latest value
    with pytest.raises(ValueError, match="'lr' was put with smoothing_hint=False before and True now"):
        storage.put_scalar("lr", 0.1)


def test_get_event_storage_needs_an_active_block():
    with pytest.raises(RuntimeError, match="outside of a training run"):
        get_event_storage()
    with EventStorage() as outer:
        assert get_event_storage() is outer
        with EventStorage() as inner:
            assert get_event_storage() is inner
        assert get_event_storage() is outer
    with pytest.raises(RuntimeError):
        get_event_storage()


# ---------------------------------------------------------------- JSONWriter


def test_json_writer_one_object_per_line(tmp_path):
    path = str(tmp_path / "metrics.json")
    writer = JSONWriter(path, window=2)
    writer.begin(0)
    with EventStorage() as storage:
        storage.put_scalar("loss", 4.0)
        storage.put_scalar("lr", 0.1, smoothing_hint=False)
        storage.step()
        storage.put_scalar("loss", 2.0)
        storage.put_scalar("lr", 0.2, smoothing_hint=False)
        writer.write()  # iteration 1: loss median(4, 2) = 3, lr 0.2
        storage.step()
        storage.put_scalar("loss", 1.0)
        storage.put_scalar("bbox/APl", float("nan"), smoothing_hint=False)
        storage.put_scalar("bbox/APs", float("inf"), smoothing_hint=False)
        writer.write()  # iteration 2: loss median(2, 1) = 1.5; lr unchanged, so not written again
        writer.write()  # nothing new: no line
    writer.close()
    with open(path) as f:
        raw = f.read().splitlines()
    assert len(raw) == 2
    lines = [json.loads(line) for line in raw]
    assert lines[0] == {"iteration": 1, "loss": 3.0, "lr": 0.2}
    assert lines[1] == {"iteration": 2, "loss": 1.5, "bbox/APl": None, "bbox/APs": None}
    assert "null" in raw[1] and "NaN" not in raw[1] and "Infinity" not in raw[1]


def test_json_writer_resume_drops_lines_from_start_iter(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("".join(json.dumps({"iteration": i, "loss": float(i)}) + "\n" for i in range(6)))
    writer = JSONWriter(str(path))
    writer.begin(3)  # the resumed run starts at iteration 3: lines 3, 4, 5 were written after the checkpoint
    assert [line["iteration"] for line in read_metrics(str(path))] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # rewritten atomically, no temp file left
    with EventStorage(3) as storage:
        storage.put_scalar("loss", 30.0)
        writer.write()
    writer.close()
    assert [(line["iteration"], line["loss"]) for line in read_metrics(str(path))] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 30.0)]


def test_json_writer_begin_zero_appends_and_reader_skips_a_cut_line(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"iteration": 7, "loss": 1.0}\n{"iteration": 8, "lo')  # a crash cut the last line
    assert read_metrics(str(path)) == [{"iteration": 7, "loss": 1.0}]
    writer = JSONWriter(str(path))
    writer.begin(0)  # a fresh run does not rewrite what is there
    writer.close()
    assert path.read_text().startswith('{"iteration": 7, "loss": 1.0}\n')


# ---------------------------------------------------------------- CommonMetricPrinter


def _printed_line(caplog, monkeypatch, write) -> str:
    """The message ``write()`` logs on "retinadet.engine" ("" when none)."""
    logger = logging.getLogger("retinadet.engine")
    # setup_logger() stops "retinadet" from propagating to caplog's root handler, so the handler is
    # attached to the logger itself, and propagation is cut so no other handler sees the line twice.
    monkeypatch.setattr(logger, "propagate", False)
    caplog.set_level(logging.INFO, logger="retinadet.engine")
    caplog.clear()
    logger.addHandler(caplog.handler)
    try:
        write()
    finally:
        logger.removeHandler(caplog.handler)
    messages = [r.getMessage() for r in caplog.records if r.name == "retinadet.engine"]
    assert len(messages) <= 1
    return messages[0] if messages else ""


def test_common_metric_printer_line(caplog, monkeypatch):
    printer = CommonMetricPrinter(max_iter=10, window=20)
    with EventStorage() as storage:
        for i in range(4):
            storage.put_scalars(loss_cls=1.0 + i, loss_box_reg=0.5, time=0.5, data_time=0.125)
            storage.put_scalar("lr", 0.02 * (i + 1), smoothing_hint=False)
            if i < 3:
                storage.step()
        line = _printed_line(caplog, monkeypatch, printer.write)
        # iteration 3 of 0..9: 6 iterations left x 0.5 s = 3 s
        assert line.startswith("eta: 0:00:03  iter: 4/10  ")
        assert "loss_box_reg: 0.5  loss_cls: 2.5" in line  # medians over the window; 2.5 = median(1, 2, 3, 4)
        assert "time: 0.5000" in line
        assert "data_time: 0.1250" in line
        assert "lr: 0.08" in line  # the latest, not a median
        # The process's peak memory (retinadet.benchmark.memory): its peak RSS on the CPU, in MiB.
        assert abs(int(re.search(r"max_mem: (\d+)M$", line).group(1)) - peak_memory_mb()) <= 2

        storage.iter = 10
        assert _printed_line(caplog, monkeypatch, printer.write) == ""  # past the last step: no line


# ---------------------------------------------------------------- TensorboardWriter


def test_tensorboard_writer_round_trip(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = TensorboardWriter(str(tmp_path), window=2)
    with EventStorage() as storage:
        for i, loss in enumerate([4.0, 2.0, 1.0]):
            storage.put_scalar("loss", loss)
            storage.put_scalar("lr", 0.1 / (i + 1), smoothing_hint=False)
            writer.write()
            writer.write()  # nothing new the second time: no duplicate events
            storage.step()
    writer.close()
    assert any(name.startswith("events.out.tfevents") for name in (p.name for p in tmp_path.iterdir()))

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"loss", "lr"}
    loss = acc.Scalars("loss")
    assert [e.step for e in loss] == [0, 1, 2]
    # medians over 2 values: 4; (4 + 2) / 2 = 3; (2 + 1) / 2 = 1.5
    assert [e.value for e in loss] == pytest.approx([4.0, 3.0, 1.5])
    lr = acc.Scalars("lr")
    assert [e.value for e in lr] == pytest.approx([0.1, 0.05, 0.1 / 3], rel=1e-6)


# ---------------------------------------------------------------- plot_loss_curves


def test_plot_loss_curves_writes_a_png(tmp_path):
    from PIL import Image

    metrics = tmp_path / "run" / "metrics.json"
    metrics.parent.mkdir()
    lines = [{"iteration": i, "loss_cls": 1.0 / (i + 1), "loss_box_reg": 0.5 / (i + 1), "lr": 0.01}
             for i in range(10)]
    lines.append({"iteration": 9, "bbox/AP": 30.0, "bbox/AP50": 55.0, "bbox/APl": None})
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    png = tmp_path / "run" / "loss_curve.png"

    assert plot_loss_curves(str(metrics), str(png)) == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (800, 450)  # figsize 8 x 4.5 inches at 100 dpi
    assert sorted(p.name for p in png.parent.iterdir()) == ["loss_curve.png", "metrics.json"]  # no temp file


def test_plot_loss_curves_without_losses_names_the_file(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"iteration": 0, "lr": 0.01, "bbox/AP": 1.0}) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{metrics} has no loss values to plot")):
        plot_loss_curves(str(metrics), str(tmp_path / "out.png"))
    assert not (tmp_path / "out.png").exists()

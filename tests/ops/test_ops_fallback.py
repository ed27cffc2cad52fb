"""Which implementation runs: the compiled ops when retinadet._C loads, else the fallback, reported once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from retinadet import ops
from retinadet.ops import fallback
from tests.ops.op_cases import OP_NAMES, has_kernel, random_boxes

REPO_ROOT = Path(__file__).resolve().parents[2]

# Run with RETINADET_DISABLE_EXT=1: records what the extension logger says while every op runs
# three times, and compares each op with torchvision; prints one JSON object.
_DISABLED_SCRIPT = r"""
import json, logging, sys

records = []

class Collect(logging.Handler):
    def emit(self, record):
        records.append({"level": record.levelno, "message": record.getMessage()})

logger = logging.getLogger("retinadet.ops.extension")
logger.addHandler(Collect())
logger.setLevel(logging.DEBUG)

import torch, torchvision
from torchvision.ops.boxes import _batched_nms_vanilla
from retinadet import ops

g = torch.Generator().manual_seed(0)
xy = torch.rand(60, 2, generator=g) * 100
boxes = torch.cat([xy, xy + torch.rand(60, 2, generator=g) * 40 + 1], 1)
scores = (torch.randint(0, 8, (60,), generator=g) / 8).float()
idxs = torch.randint(0, 3, (60,), generator=g)
gt, anchors = boxes[:12], boxes[12:]
checks = {}
for _ in range(3):
    iou = torchvision.ops.box_iou(gt, anchors)
    checks["box_iou"] = torch.equal(ops.box_iou(gt, anchors), iou)
    checks["batched_box_iou"] = torch.equal(
        ops.batched_box_iou(gt[None], anchors[None]), torchvision.ops.box_iou(gt[None], anchors[None]))
    max_iou, argmax, best = ops.match_max_iou(anchors, gt)
    checks["match_max_iou"] = (torch.equal(max_iou, iou.max(0).values)
                               and torch.equal(argmax, iou.max(0).indices)
                               and torch.equal(best, iou.max(1).values))
    low = ((iou == iou.max(1, keepdim=True).values) & (iou.max(1, keepdim=True).values > 0)).any(0)
    checks["low_quality_matches"] = torch.equal(ops.low_quality_matches(anchors, gt, best), low)
    checks["nms"] = torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))
    checks["batched_nms"] = torch.equal(
        ops.batched_nms(boxes, scores, idxs, 0.5), _batched_nms_vanilla(boxes, scores, idxs, 0.5))
print(json.dumps({
    "loaded": ops.extension_loaded(),
    "error": ops.extension_load_error(),
    "c_imported": "retinadet._C" in sys.modules,
    "ops_registered": [n for n in ("box_iou", "nms") if hasattr(torch.ops.retinadet, n)],
    "checks": checks,
    "records": records,
}))
"""


@pytest.fixture(scope="module")
def disabled_run():
    env = dict(os.environ, RETINADET_DISABLE_EXT="1")
    result = subprocess.run(
        [sys.executable, "-c", _DISABLED_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_disabled_extension_is_not_loaded(disabled_run):
    assert disabled_run["loaded"] is False
    assert "RETINADET_DISABLE_EXT" in disabled_run["error"]
    # The library was not even imported, so no compiled op exists in that process.
    assert disabled_run["c_imported"] is False
    assert disabled_run["ops_registered"] == []


def test_disabled_extension_ops_give_torchvision_results(disabled_run):
    assert disabled_run["checks"] == {name: True for name in OP_NAMES}


def test_fallback_is_reported_exactly_once(disabled_run):
    # Six ops called three times each: one warning, saying why.
    records = disabled_run["records"]
    assert len(records) == 1, records
    assert records[0]["level"] == 30  # logging.WARNING
    assert "RETINADET_DISABLE_EXT" in records[0]["message"]
    assert "fallback" in records[0]["message"]


needs_extension = pytest.mark.skipif(
    not ops.extension_loaded(), reason=f"compiled ops not in use: {ops.extension_load_error()}"
)


@needs_extension
def test_extension_loaded_registers_every_op():
    assert ops.extension_loaded() is True
    assert ops.extension_load_error() is None
    for name in OP_NAMES:
        assert hasattr(torch.ops.retinadet, name), name
        assert has_kernel(name, "cpu"), name


@needs_extension
def test_public_ops_run_the_compiled_ops(monkeypatch):
    # With every fallback disabled the public ops still work: they run torch.ops.retinadet.*.
    for name in OP_NAMES:
        monkeypatch.setattr(fallback, name, _refuse(name))
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, 30)
    scores = torch.rand(30, generator=generator)
    idxs = torch.randint(0, 3, (30,), generator=generator)
    iou = ops.box_iou(boxes, boxes)
    assert torch.equal(ops.batched_box_iou(boxes[None], boxes[None])[0], iou)
    max_iou, argmax, best = ops.match_max_iou(boxes, boxes)
    assert torch.equal(max_iou, torch.ones(30)) and torch.equal(argmax, torch.arange(30))
    assert ops.low_quality_matches(boxes, boxes, best).all()
    assert torch.equal(ops.nms(boxes, scores, 0.5), torch.ops.retinadet.nms(boxes, scores, 0.5))
    assert torch.equal(ops.batched_nms(boxes, scores, idxs, 0.5),
                       torch.ops.retinadet.batched_nms(boxes, scores, idxs, 0.5))


def _refuse(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"fallback.{name} called although the compiled op is loaded")

    return refuse

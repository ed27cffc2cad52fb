"""Tests of the anchor generators: hand-computed paper anchors and torchvision parity."""
import math

import pytest
import torch
from torchvision.models.detection.image_list import ImageList as TVImageList
from torchvision.models.detection.retinanet import _default_anchorgen

from retinadet.config import get_cfg
from retinadet.modeling.anchor_generators import DefaultAnchorGenerator
from retinadet.modeling.build import build
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import ANCHOR_GENERATOR_REGISTRY

STRIDES = [8, 16, 32, 64, 128]  # P3..P7
SHAPES = [ShapeSpec(channels=256, stride=s) for s in STRIDES]


def _grids(height, width):
    """P3..P7 grid sizes of a (height, width) batch padded to 32: ceil at each stride-2 conv."""
    h, w = height // 8, width // 8
    grids = []
    for _ in STRIDES:
        grids.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return grids


def _features(grids, batch=1, dtype=torch.float32, device="cpu"):
    return [torch.zeros(batch, 1, h, w, dtype=dtype, device=device) for h, w in grids]


def _build(name):
    return build(ANCHOR_GENERATOR_REGISTRY, name, get_cfg(), input_shape=SHAPES)


def test_default_800x1333_count_and_first_anchors():
    gen = _build("DefaultAnchorGenerator")
    assert gen.num_anchors == 9
    # 800x1333 padded by 32 -> 800x1344. P3: 800/8 x 1344/8 = 100x168, P4 50x84, P5 25x42,
    # P6 ceil(25/2) x 21 = 13x21, P7 7x11.
    grids = _grids(800, 1344)
    assert grids == [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]
    anchors = gen(_features(grids), (800, 1344))
    # 100*168 + 50*84 + 25*42 + 13*21 + 7*11 = 16800 + 4200 + 1050 + 273 + 77 = 22400; x 9 = 201600
    assert [a.shape[0] for a in anchors] == [16800 * 9, 4200 * 9, 1050 * 9, 273 * 9, 77 * 9]
    assert sum(a.shape[0] for a in anchors) == 201600
    # First 9 anchors of P3 (cell x=0, y=0, offset 0), size-major then ratio r = h/w:
    # size 32 (area 1024): r=0.5 w=sqrt(1024/0.5)=45.2548 h=22.6274; r=1 w=h=32; r=2 w=22.6274 h=45.2548
    # size 32*2^(1/3)=40.3175 (area 1625.50): r=0.5 w=57.0175 h=28.5088; r=1 40.3175;
    #   r=2 w=28.5088 h=57.0175
    # size 32*2^(2/3)=50.7968 (area 2580.32): r=0.5 w=71.8376 h=35.9188; r=1 50.7968;
    #   r=2 w=35.9188 h=71.8376
    # Each box is (-w/2, -h/2, w/2, h/2).
    expected = torch.tensor(
        [
            [-22.6274, -11.3137, 22.6274, 11.3137],
            [-16.0000, -16.0000, 16.0000, 16.0000],
            [-11.3137, -22.6274, 11.3137, 22.6274],
            [-28.5088, -14.2544, 28.5088, 14.2544],
            [-20.1587, -20.1587, 20.1587, 20.1587],
            [-14.2544, -28.5088, 14.2544, 28.5088],
            [-35.9188, -17.9594, 35.9188, 17.9594],
            [-25.3984, -25.3984, 25.3984, 25.3984],
            [-17.9594, -35.9188, 17.9594, 35.9188],
        ]
    )
    p3 = anchors[0]
    torch.testing.assert_close(p3[:9], expected, atol=1e-4, rtol=0)
    # Cell (x=1, y=0) is the next 9 anchors, shifted by the stride 8 in x only.
    shift_x = torch.tensor([8.0, 0.0, 8.0, 0.0])
    torch.testing.assert_close(p3[9:18], expected + shift_x, atol=1e-4, rtol=0)
    # Cell (x=0, y=1) starts after the 168 cells of row 0: shifted by 8 in y.
    row1 = 168 * 9
    shift_y = torch.tensor([0.0, 8.0, 0.0, 8.0])
    torch.testing.assert_close(p3[row1 : row1 + 9], expected + shift_y, atol=1e-4, rtol=0)
    # Last P7 cell (x=10, y=6, stride 128), anchor 1 (size 512, r=1): centre (1280, 768), half-side 256.
    assert anchors[4][-9 + 1].tolist() == [1024.0, 512.0, 1536.0, 1024.0]


def test_default_areas_and_ratios():
    gen = DefaultAnchorGenerator(STRIDES, [32, 64, 128, 256, 512])
    anchors = gen(_features(_grids(64, 96)), (64, 96))
    scales = torch.tensor([1.0, 2 ** (1 / 3), 2 ** (2 / 3)])
    for level, size in enumerate([32, 64, 128, 256, 512]):
        boxes = anchors[level].view(-1, 9, 4)
        w = boxes[..., 2] - boxes[..., 0]
        h = boxes[..., 3] - boxes[..., 1]
        area = (size * scales) ** 2  # per scale, repeated over the 3 ratios
        torch.testing.assert_close(w * h, area.repeat_interleave(3).expand_as(w), rtol=1e-5, atol=0)
        ratios = torch.tensor([0.5, 1.0, 2.0]).repeat(3)  # per ratio, repeated over the 3 scales
        torch.testing.assert_close(h / w, ratios.expand_as(w), rtol=1e-5, atol=0)


def test_default_offset_dtype_device_and_buffers():
    gen = DefaultAnchorGenerator([8, 16], [32, 64], scales=(1.0,), aspect_ratios=(1.0,), offset=0.5)
    assert gen.num_anchors == 1
    out = gen(_features([(2, 3), (1, 2)], dtype=torch.float16), (16, 24))
    # Offset 0.5 of stride 8: centres at 4, 12, 20 in x and 4, 12 in y; 32x32 squares.
    centres = (out[0][:, :2] + out[0][:, 2:]) / 2
    assert centres.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert out[1].tolist() == [[-24, -24, 40, 40], [-8, -24, 56, 40]]
    assert all(a.dtype == torch.float32 for a in out)
    # Cell anchors are buffers (moved by .to) but not saved in checkpoints.
    assert len(dict(gen.named_buffers())) == 2
    assert gen.state_dict() == {}
    meta = gen(_features([(2, 3), (1, 2)], device="meta"), (16, 24))
    assert all(a.device.type == "meta" and a.shape == (n, 4) for a, n in zip(meta, [6, 2]))


def test_paper_anchor_count_800():
    # The paper speaks of ~100k anchors per image. An 800x800 image has P3..P7 grids
    # 100x100, 50x50, 25x25, 13x13, 7x7: 10000 + 2500 + 625 + 169 + 49 = 13343 cells, x 9 = 120087.
    gen = _build("DefaultAnchorGenerator")
    anchors = gen(_features(_grids(800, 800)), (800, 800))
    total = sum(a.shape[0] for a in anchors)
    assert total == 120087
    assert 1e5 <= total < 1.5e5


@pytest.mark.parametrize(
    "image_size, grids",
    [
        ((256, 320), [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]),
        ((800, 1344), [(100, 168), (50, 84), (25, 42), (13, 21), (7, 11)]),
    ],
)
def test_torchvision_generator_equals_torchvision(image_size, grids):
    assert _grids(*image_size) == grids
    ours = _build("TorchvisionAnchorGenerator")
    theirs = _default_anchorgen()
    assert ours.num_anchors == theirs.num_anchors_per_location()[0] == 9
    images = TVImageList(torch.zeros(2, 3, *image_size), [image_size, image_size])
    feats = _features(grids, batch=2)
    ref = theirs(images, feats)
    out = ours(feats, image_size)
    assert len(ref) == 2
    assert torch.equal(torch.cat(out), ref[0]) and torch.equal(torch.cat(out), ref[1])


def test_torchvision_generator_by_hand():
    gen = _build("TorchvisionAnchorGenerator")
    # P3 sizes int(32), int(40.317)=40, int(50.797)=50; ratio-major. For r = 0.5:
    # h_ratio = sqrt(0.5) = 0.70711, w_ratio = 1.41421;
    # size 32: half-w 22.627 -> 23, half-h 11.314 -> 11;
    # size 40: 28.284 -> 28, 14.142 -> 14; size 50: 35.355 -> 35, 17.678 -> 18. For r = 1: 16, 20, 25.
    assert gen.cell_anchors[0][:4].tolist() == [
        [-23, -11, 23, 11], [-28, -14, 28, 14], [-35, -18, 35, 18], [-16, -16, 16, 16]
    ]
    # 320-wide batch: P7 has 3 columns, so its x stride is 320 // 3 = 106 (not 128); y: 256 // 2 = 128.
    out = gen(_features(_grids(256, 320)), (256, 320))
    p7 = out[4].view(2, 3, 9, 4)
    assert (p7[0, 1] - p7[0, 0]).tolist() == [[106.0, 0.0, 106.0, 0.0]] * 9
    assert (p7[1, 0] - p7[0, 0]).tolist() == [[0.0, 128.0, 0.0, 128.0]] * 9
    default = _build("DefaultAnchorGenerator")(_features(_grids(256, 320)), (256, 320))
    d7 = default[4].view(2, 3, 9, 4)
    torch.testing.assert_close(d7[0, 1] - d7[0, 0], torch.tensor([[128.0, 0.0, 128.0, 0.0]] * 9))


def test_bad_config():
    cfg = get_cfg()
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [32, 64, 128, 256]
    for name in ["DefaultAnchorGenerator", "TorchvisionAnchorGenerator"]:
        with pytest.raises(ValueError, match=r"SIZES has 4 entries.*5 feature levels"):
            build(ANCHOR_GENERATOR_REGISTRY, name, cfg, input_shape=SHAPES)
    with pytest.raises(ValueError, match="2 sizes"):
        DefaultAnchorGenerator([8, 16, 32], [32, 64])
    with pytest.raises(ValueError, match="offset"):
        DefaultAnchorGenerator([8], [32], offset=1.0)
    with pytest.raises(ValueError, match="aspect_ratios"):
        DefaultAnchorGenerator([8], [32], aspect_ratios=(0.0, 1.0))
    gen = DefaultAnchorGenerator([8, 16], [32, 64])
    with pytest.raises(ValueError, match="2 levels"):
        gen(_features([(4, 4)]), (32, 32))

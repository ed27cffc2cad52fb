"""Tests of the ResNet backbone against torchvision's resnet run in the same test."""
import pytest
import torch
import torchvision
from torch import nn

from retinadet.checkpoint import load_backbone_weights
from retinadet.config import get_cfg
from retinadet.modeling.backbones.resnet import ResNet, describe_resnet_weights
from retinadet.modeling.build import build
from retinadet.modeling.norm import FrozenBatchNorm2d
from retinadet.modeling.shape_spec import ShapeSpec
from retinadet.registry import BACKBONE_REGISTRY

ALL = ("res2", "res3", "res4", "res5")


def _torchvision_resnet(depth: int, seed: int = 0) -> nn.Module:
    """torchvision resnet with random weights and random BN statistics, in eval mode.

    torchvision's init leaves BN at weight 1, bias 0, mean 0, var 1 (nearly the identity), which
    would hide a norm layer loaded into the wrong place; random values make every BN matter.
    """
    torch.manual_seed(seed)
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.0)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _torchvision_features(model: nn.Module, x: torch.Tensor) -> dict:
    """torchvision's layer1..layer4 outputs as res2..res5."""
    with torch.no_grad():
        y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        out = {}
        for i, name in enumerate(ALL):
            y = getattr(model, f"layer{i + 1}")(y)
            out[name] = y
    return out


@pytest.mark.parametrize("depth,res5_channels", [(18, 512), (34, 512), (50, 2048), (101, 2048)])
def test_matches_torchvision_outputs_and_shapes(tmp_path, depth, res5_channels):
    reference = _torchvision_resnet(depth)
    path = tmp_path / f"resnet{depth}.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    expected = _torchvision_features(reference, x)

    for norm in ("BN", "FrozenBN"):
        ours = ResNet(depth, out_features=ALL, norm=norm, weights=str(path)).eval()
        with torch.no_grad():
            got = ours(x)
        assert list(got) == list(ALL)
        for name in ALL:
            ref = expected[name]
            # Deep random nets reach large activations (~1e4 in res5 of ResNet-101), so 1e-5 is
            # relative to the largest value; FrozenBN computes x*scale+shift, not (x-mean)/std.
            scale = max(1.0, ref.abs().max().item())
            assert (got[name] - ref).abs().max().item() <= 1e-5 * scale, (depth, norm, name)
        shapes = ours.output_shape()
        assert shapes["res5"] == ShapeSpec(channels=res5_channels, stride=32)
        for name, spec in shapes.items():
            assert got[name].shape == (2, spec.channels, 64 // spec.stride, 64 // spec.stride)
        assert [s.stride for s in shapes.values()] == [4, 8, 16, 32]
    assert ours.size_divisibility == 32


def test_only_stages_up_to_last_out_feature_are_built():
    reference = _torchvision_resnet(18)
    model = ResNet(18, out_features=("res3", "res2"), norm="BN").eval()
    assert not hasattr(model, "layer3") and not hasattr(model, "layer4")
    report = load_backbone_weights(model, reference.state_dict(), describe_resnet_weights)
    skipped_layers = {k.split(".")[0] for k, why in report.skipped.items() if "not built" in why}
    assert skipped_layers == {"fc", "layer3", "layer4"}  # the classifier and the stages beyond res3
    assert "fc.weight" in report.skipped and "fc.bias" in report.skipped
    # Everything of the stem, layer1 and layer2 loads (BN's num_batches_tracked too, under "BN").
    built = {"conv1", "bn1", "layer1", "layer2"}
    expected_keys = [k for k in reference.state_dict() if k.split(".")[0] in built]
    assert sorted(report.loaded) == sorted(expected_keys)
    x = torch.randn(1, 3, 64, 64)
    got = model(x)
    assert list(got) == ["res2", "res3"]  # res2..res5 order, whatever order was asked
    expected = _torchvision_features(reference, x)["res3"]
    torch.testing.assert_close(got["res3"], expected, rtol=0, atol=1e-5)


def test_freeze_at_2_freezes_stem_and_res2_after_loading(tmp_path):
    reference = _torchvision_resnet(18)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = ResNet(18, out_features=("res3", "res4"), norm="BN", freeze_at=2, weights=str(path))
    frozen = [model.conv1, model.bn1, model.layer1]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
    assert isinstance(model.bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(model.layer2[0].bn1, nn.BatchNorm2d)
    assert all(p.requires_grad for p in model.layer2.parameters())
    # Loaded before freezing: the frozen buffers hold the checkpoint's (random) statistics.
    torch.testing.assert_close(model.bn1.running_mean, reference.bn1.running_mean)
    torch.testing.assert_close(model.layer1[1].bn2.weight, reference.layer1[1].bn2.weight)

    model.train()
    out = model(torch.randn(2, 3, 64, 64))
    (out["res3"].sum() + out["res4"].sum()).backward()
    assert model.conv1.weight.grad is None
    assert all(p.grad is None for p in model.layer1.parameters())
    assert model.layer2[0].conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("freeze_at,num_frozen_layers", [(0, 0), (1, 0), (5, 4)])
def test_freeze_at_levels(freeze_at, num_frozen_layers):
    model = ResNet(18, out_features=ALL, norm="BN", freeze_at=freeze_at)
    assert model.conv1.weight.requires_grad == (freeze_at == 0)
    assert isinstance(model.bn1, FrozenBatchNorm2d) == (freeze_at >= 1)
    for i in range(1, 5):
        trainable = all(p.requires_grad for p in getattr(model, f"layer{i}").parameters())
        assert trainable == (i > num_frozen_layers)


def test_group_norm_forward_and_sync_bn_construct():
    model = ResNet(50, out_features=("res2",), norm="GN", num_groups_gn=16).eval()
    assert isinstance(model.bn1, nn.GroupNorm) and model.bn1.num_groups == 16
    assert isinstance(model.layer1[0].downsample[1], nn.GroupNorm)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, out_scaled = model(x)["res2"], model(3.0 * x)["res2"]
    assert out.shape == (1, 256, 16, 16)
    # The stem conv has no bias and GN normalises per sample, so a positive input scale cancels
    # (up to GN's eps); with BatchNorm in eval mode the output would triple instead.
    torch.testing.assert_close(out, out_scaled, rtol=1e-3, atol=1e-3)

    # ImageNet BN checkpoints load into GN nets: affine terms load, running statistics are skipped.
    reference = _torchvision_resnet(50)
    report = load_backbone_weights(model, reference.state_dict(), describe_resnet_weights)
    assert "bn1.running_mean" in report.skipped and "bn1.weight" in report.loaded
    torch.testing.assert_close(model.bn1.weight, reference.bn1.weight)

    sync = ResNet(18, norm="SyncBN", freeze_at=1)
    assert isinstance(sync.layer1[0].bn1, nn.SyncBatchNorm)
    assert isinstance(sync.bn1, FrozenBatchNorm2d)  # frozen SyncBN converts too


@pytest.mark.parametrize("stride_in_1x1,conv1_stride,conv2_stride", [(True, 2, 1), (False, 1, 2)])
def test_stride_in_1x1_moves_the_stride(stride_in_1x1, conv1_stride, conv2_stride):
    model = ResNet(50, out_features=("res3",), stride_in_1x1=stride_in_1x1)
    block = model.layer2[0]
    assert block.conv1.stride == (conv1_stride, conv1_stride)
    assert block.conv2.stride == (conv2_stride, conv2_stride)
    assert model(torch.randn(1, 3, 64, 64))["res3"].shape == (1, 512, 8, 8)


def test_bad_arguments_and_weights_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"depth=42.*\[18, 34, 50, 101\]"):
        ResNet(42)
    with pytest.raises(ValueError, match=r"res6.*res2"):
        ResNet(18, out_features=("res3", "res6"))
    with pytest.raises(ValueError, match=r"freeze_at=6.*0\.\.5"):
        ResNet(18, freeze_at=6)
    missing = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50.pth"):
        ResNet(50, weights=str(missing))

    r18 = _torchvision_resnet(18).state_dict()
    with pytest.raises(ValueError, match=r"ResNet-18.*ResNet-34"):
        load_backbone_weights(ResNet(34), r18, describe_resnet_weights)
    r18["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    shapes = r"layer1\.0\.conv1\.weight.*\(64, 64, 1, 1\).*\(64, 64, 3, 3\)"
    with pytest.raises(ValueError, match=shapes):
        load_backbone_weights(ResNet(18), r18, describe_resnet_weights)


def test_build_from_registry_with_config():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RESNETS.DEPTH", 18])
    model = build(BACKBONE_REGISTRY, "ResNet", cfg)
    assert isinstance(model, ResNet)
    assert model.output_shape() == {
        "res3": ShapeSpec(128, 8),
        "res4": ShapeSpec(256, 16),
        "res5": ShapeSpec(512, 32),
    }
    # Default FREEZE_AT = 2: stem and res2 frozen, res3 trainable.
    assert not model.layer1[0].conv1.weight.requires_grad
    assert model.layer2[0].conv1.weight.requires_grad


@pytest.mark.parametrize("depth, width, expected", [
    (18, 0, [64, 128, 256, 512]),        # the standard basic-block widths
    (18, 32, [32, 64, 128, 256]),        # a half-width ResNet-18: every stage halves
    (50, 0, [256, 512, 1024, 2048]),     # the standard bottleneck widths
    (50, 128, [128, 256, 512, 1024]),
])
def test_res2_out_channels_sets_every_stage_width(depth, width, expected):
    net = ResNet(depth=depth, out_features=["res2", "res3", "res4", "res5"], freeze_at=0, norm="BN",
                 res2_out_channels=width)
    shapes = net.output_shape()
    assert [shapes[f].channels for f in ("res2", "res3", "res4", "res5")] == expected
    out = net(torch.zeros(1, 3, 64, 64))
    assert [out[f].shape[1] for f in ("res2", "res3", "res4", "res5")] == expected
    with pytest.raises(ValueError, match="RES2_OUT_CHANNELS"):
        ResNet(depth=depth, out_features=["res5"], res2_out_channels=-8)


def test_backbone_weights_from_a_whole_detector_checkpoint(tmp_path):
    """MODEL.BACKBONE.WEIGHTS may name a retinadet checkpoint: its backbone.* tensors are taken, from
    the EMA weights when the run kept them, as MODEL.WEIGHTS reads checkpoints."""
    reference = ResNet(18, out_features=("res3",), norm="BN").eval()
    other = ResNet(18, out_features=("res3",), norm="BN").eval()
    ema = {f"backbone.{k}": v for k, v in reference.state_dict().items()}
    model = {f"backbone.{k}": v for k, v in other.state_dict().items()}
    path = tmp_path / "model_final.pth"
    torch.save({"model": {**model, "head.w": torch.zeros(1)}, "model_ema": {**ema, "head.w": torch.zeros(1)}}, path)
    fresh = ResNet(18, out_features=("res3",), norm="BN", weights=str(path)).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(fresh(x)["res3"], reference(x)["res3"], rtol=0, atol=0)

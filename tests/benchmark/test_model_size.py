"""retinadet.benchmark.model_size: parameters, and FLOPs by fvcore's convention checked by hand."""
import pytest
import torch

from retinadet.benchmark import BenchmarkError
from retinadet.benchmark.inputs import synthetic_batches
from retinadet.benchmark.model_size import FLOP_CONVENTION, count_flops, count_parameters, model_size
from retinadet.benchmark.torchvision_reference import build_torchvision_model
from retinadet.modeling import build_model
from tests.benchmark.benchmark_checks import QUICK, RCNN_TORCHVISION, TORCHVISION, frozen_config


class _OneConvDetector(torch.nn.Module):
    """The model contract around one 3x3 convolution: list[dict] in, one detection per image out."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, batched_inputs):
        outputs = []
        for x in batched_inputs:
            pooled = self.conv(x["image"].float()[None]).mean(dim=(2, 3))  # (1, 8)
            scores = self.fc(pooled).sigmoid()[0]  # (2,)
            labels = torch.zeros(1, dtype=torch.long)
            outputs.append({"boxes": torch.zeros(1, 4), "scores": scores[:1], "labels": labels})
        return outputs


def test_parameters_are_counted_once_and_split_by_requires_grad():
    model = _OneConvDetector()
    model.conv.weight.requires_grad_(False)
    shared = torch.nn.Sequential(model, torch.nn.Sequential(model.fc))  # fc reachable twice, counted once
    # conv: 8 x 3 x 3 x 3 = 216 weights (frozen) + 8 biases; fc: 8 x 2 + 2 = 18.
    assert count_parameters(shared) == {"total": 216 + 8 + 18, "trainable": 8 + 18}


def test_flops_of_a_known_model_by_hand():
    model = _OneConvDetector().train()
    flops = count_flops(model, torch.randint(0, 256, (3, 10, 12), dtype=torch.uint8))
    # One multiply-add = one flop, biases not counted: the conv does 3 x 3 x 3 multiply-adds for each of
    # 8 x 10 x 12 outputs, the linear layer 8 for each of its 2 outputs.
    assert flops["by_operator"] == {"conv": 27 * 8 * 10 * 12, "linear": 8 * 2}
    assert flops["per_image"] == 25920 + 16 and flops["gflops_per_image"] == pytest.approx(25936e-9)
    assert flops["image_size"] == [10, 12]
    # The mean and the sigmoid have no fvcore formula: listed, counted as 0.
    assert flops["uncounted_ops"] == {"aten::mean": 1, "aten::sigmoid": 1}
    assert model.training  # the mode is restored
    assert "one multiply-add counts as one flop" in FLOP_CONVENTION


def test_model_size_without_an_image_counts_parameters_only():
    model = _OneConvDetector()
    assert model_size(model, None) == {"parameters": {"total": 242, "trainable": 242}, "flops": None}
    assert model_size(model, torch.zeros(3, 10, 12, dtype=torch.uint8))["flops"]["per_image"] == 25936


def test_flops_of_the_quick_retinanet_match_its_convolutions_and_repeat():
    cfg = frozen_config(QUICK)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = synthetic_batches(cfg, 1, 1, (64, 96))[0][0]["image"]
    # Every Conv2d's multiply-adds from the shapes it sees in one inference forward:
    # C_in / groups x k_h x k_w per output element, biases not counted.
    by_hand = []

    def hook(module, inputs, output):
        kh, kw = module.kernel_size
        by_hand.append(module.in_channels // module.groups * kh * kw * output.numel())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model([{"image": image}])
    for h in handles:
        h.remove()
    first = count_flops(model, image)
    assert first["by_operator"]["conv"] == sum(by_hand) > 0
    # GroupNorm (the quick config's norm) is counted too; the NMS is not.
    assert first["by_operator"]["group_norm"] > 0 and first["uncounted_ops"]["retinadet::batched_nms"] == 1
    torch.manual_seed(1)
    other_weights = build_model(cfg)
    assert count_flops(model, image) == first
    assert count_flops(other_weights, image)["per_image"] == first["per_image"]


@pytest.mark.parametrize("config", [TORCHVISION, RCNN_TORCHVISION], ids=["retinanet", "faster_rcnn"])
def test_torchvision_configs_do_torchvisions_convolutions(config):
    # configs/torchvision/ build torchvision's architectures: on the same 64 x 96 image both models do the
    # same convolution and nearest-upsampling work. torchvision also runs its (identity) bilinear resize.
    cfg = frozen_config(config)
    image = synthetic_batches(cfg, 1, 1, (64, 96))[0][0]["image"]
    torch.manual_seed(0)
    ours = count_flops(build_model(cfg), image)["by_operator"]
    reference = count_flops(build_torchvision_model(cfg), image)["by_operator"]
    assert ours["conv"] == reference["conv"] > 0
    assert ours["upsample_nearest2d"] == reference["upsample_nearest2d"]
    if config == RCNN_TORCHVISION:
        # The box head runs per proposal: 256 x 7 x 7 x 1024 + 1024 x 1024 multiply-adds in its two fc
        # layers, 1024 x (K + 1) for the class scores and 1024 x 4K (ours: no background box) or
        # 1024 x 4(K + 1) (torchvision) for the deltas, K = 90. The linear FLOPs are whole multiples of that.
        fc = 256 * 49 * 1024 + 1024 * 1024 + 1024 * 91
        assert ours["linear"] % (fc + 1024 * 360) == 0 and ours["linear"] > 0
        assert reference["linear"] % (fc + 1024 * 364) == 0 and reference["linear"] > 0


def test_flop_count_failure_names_the_way_out():
    class Broken(torch.nn.Module):
        def forward(self, batched_inputs):
            raise RuntimeError("no inference here")

    with pytest.raises(BenchmarkError, match=r"could not trace .*no inference here.*--no-flops"):
        count_flops(Broken(), torch.zeros(3, 8, 8, dtype=torch.uint8))

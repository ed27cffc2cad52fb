"""Tests of what every training-example sampler shares (samplers/base.py): the needs_losses flag, the
per-image budget and foreground quota, their checks and their config node."""
import pytest

from retinadet.config import get_cfg
from retinadet.modeling.samplers import BalancedRandomSampler, ExampleSampler, OHEMSampler
from retinadet.registry import SAMPLER_REGISTRY


@pytest.mark.parametrize("name", SAMPLER_REGISTRY.names())
def test_every_registered_sampler_says_whether_it_needs_losses(name):
    cls = SAMPLER_REGISTRY.get(name)
    assert issubclass(cls, ExampleSampler)
    assert isinstance(cls.needs_losses, bool)
    assert "needs_losses" in (cls.__doc__ or "")


def test_needs_losses_values():
    assert BalancedRandomSampler.needs_losses is False and OHEMSampler.needs_losses is True


@pytest.mark.parametrize(
    "sampler, expected",
    [
        (BalancedRandomSampler(256, 0.25), 64),
        (BalancedRandomSampler(10, 0.33), 3),  # int(3.3)
        (OHEMSampler(128, -1.0, 0.5), 128),  # no ratio: the whole budget may be foreground
        (OHEMSampler(128, 0.25, 0.5), 32),
    ],
)
def test_max_positive(sampler, expected):
    assert sampler.max_positive == expected


def test_no_ratio_only_where_allowed():
    assert OHEMSampler.allow_no_ratio and not BalancedRandomSampler.allow_no_ratio
    with pytest.raises(ValueError, match=r"BalancedRandomSampler: positive_fraction = -1.0 must lie in \[0, 1\]\.$"):
        BalancedRandomSampler(8, -1.0)
    with pytest.raises(ValueError, match=r"OHEMSampler: positive_fraction = 1.5 .*, or < 0 for no ratio"):
        OHEMSampler(8, 1.5, 0.5)


def test_config_node_and_repr():
    node = get_cfg().MODEL.ROI_HEADS.SAMPLER
    assert BalancedRandomSampler.from_config(None, node) == {"batch_size_per_image": 512, "positive_fraction": 0.25}
    assert OHEMSampler.from_config(None, node) == {
        "batch_size_per_image": 512, "positive_fraction": 0.25, "nms_thresh": node.NMS_THRESH,
    }
    assert repr(OHEMSampler(16, -1.0, 0.7)) == (
        "OHEMSampler(batch_size_per_image=16, positive_fraction=-1.0, nms_thresh=0.7, pre_nms_topk=2000)"
    )

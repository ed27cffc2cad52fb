"""What both torchvision parity tests need: a reference and our model holding its weights, and a one-to-one
comparison of detections."""
import torch

from retinadet.benchmark.torchvision_reference import ours_with_weights_of


def converted_pair(reference, config):
    """(reference, ours) in eval mode: ours built from ``config`` with ``reference``'s converted weights,
    every key of both loaded."""
    ours, report = ours_with_weights_of(reference, config)
    assert not report["missing"] and not report["unexpected"] and not report["skipped_shape"], report
    return reference.eval(), ours.eval()


def assert_same_detections(actual, expected, tol=1e-3):
    """One-to-one match: every detection has a partner with the same label, score and box within tol.

    Position-by-position comparison would fail on float noise when two scores are nearly equal
    and NMS order swaps them, which says nothing about the method.
    """
    assert len(actual["boxes"]) == len(expected["boxes"])
    assert (actual["scores"] - expected["scores"]).abs().max() < tol  # both sorted by score
    unused = torch.ones(len(expected["boxes"]), dtype=torch.bool)
    for box, score, label in zip(actual["boxes"], actual["scores"], actual["labels"]):
        close = (
            unused
            & (expected["labels"] == label)
            & ((expected["scores"] - score).abs() < tol)
            & ((expected["boxes"] - box).abs().max(dim=1).values < tol)
        )
        assert close.any(), (box, score, label)
        unused[close.nonzero()[0]] = False

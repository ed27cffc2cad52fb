"""detectron2's own detections, reproduced: its config (a dump of its full config) and its checkpoint (a
narrow R-50-FPN RetinaNet and Faster R-CNN with random float16 weights), both made by the real detectron2
(tools/make_detectron2_fixtures.py), give the same detections here on two images whose sides are not
multiples of 32, each reported at another size, up to 1,000 detections per image with scores from 0."""
import os

import numpy as np
import pytest
import torch

from retinadet.checkpoint import load_weights
from retinadet.config import get_cfg
from retinadet.modeling import build_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "detectron2")


def _matched(ours, theirs, box_tol=1e-3, score_tol=1e-5):
    """Pairs every detection of ``ours`` with one of ``theirs`` of the same class, score within
    ``score_tol`` and box within ``box_tol`` px, in score order (detections whose scores tie within a
    float ulp may come in either order). Returns the number of unmatched detections on either side."""
    boxes, scores, labels = (x.numpy() for x in (ours["boxes"], ours["scores"], ours["labels"]))
    free = np.ones(len(theirs["scores"]), dtype=bool)
    unmatched = 0
    for b, s, c in zip(boxes, scores, labels):
        near = np.where(free & (np.abs(theirs["scores"] - s) <= score_tol) & (theirs["classes"] == c)
                        & (np.abs(theirs["boxes"] - b).max(axis=1) <= box_tol))[0]
        if len(near):
            free[near[0]] = False
        else:
            unmatched += 1
    return unmatched + int(free.sum())


@pytest.fixture(scope="module")
def images():
    data = np.load(os.path.join(FIXTURES, "images.npz"))
    return [{"image": torch.from_numpy(data[f"image{j}"]), "height": int(h), "width": int(w)}
            for j, (h, w) in enumerate(data["sizes"])]


@pytest.mark.parametrize("name", ["retinanet", "faster_rcnn"])
def test_detectron2_config_and_checkpoint_give_detectron2s_detections(name, images):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(FIXTURES, f"{name}.yaml"))  # detectron2's format, translated
    cfg.merge_from_list(["MODEL.WEIGHTS", os.path.join(FIXTURES, f"{name}.pth")])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model(images)
    reference = np.load(os.path.join(FIXTURES, f"{name}_detections.npz"))
    for j, output in enumerate(outputs):
        theirs = {key: reference[f"{key}{j}"] for key in ("boxes", "scores", "classes")}
        assert len(output["scores"]) == len(theirs["scores"]) > 300  # same count, most of the 1,000
        assert _matched(output, theirs) == 0, (name, j)
        # Beyond near-ties, the order is detectron2's too.
        assert np.array_equal(output["labels"].numpy()[:20], theirs["classes"][:20])


def test_the_checkpoints_load_strictly(tmp_path):
    """Every tensor of detectron2's checkpoints fills one of ours and every one of ours is filled."""
    for name in ("retinanet", "faster_rcnn"):
        cfg = get_cfg()
        cfg.merge_from_file(os.path.join(FIXTURES, f"{name}.yaml"))
        report = load_weights(build_model(cfg), os.path.join(FIXTURES, f"{name}.pth"))
        assert report.loaded and not report.missing and not report.unexpected and not report.skipped_shape, name


def test_the_torchvision_order_differs_where_detectron2s_was_chosen(images):
    """MODEL.RETINANET.CLIP_BEFORE_NMS True (torchvision) keeps other boxes near the border: the key chooses."""
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(FIXTURES, "retinanet.yaml"))
    cfg.merge_from_list(["MODEL.WEIGHTS", os.path.join(FIXTURES, "retinanet.pth"),
                         "MODEL.RETINANET.CLIP_BEFORE_NMS", "True", "TEST.DROP_EMPTY_BOXES", "False"])
    model = build_model(cfg).eval()
    with torch.no_grad():
        output = model(images[:1])[0]
    reference = np.load(os.path.join(FIXTURES, "retinanet_detections.npz"))
    theirs = {key: reference[f"{key}0"] for key in ("boxes", "scores", "classes")}
    assert _matched(output, theirs) > 0


def _faster_rcnn_state():
    return torch.load(os.path.join(FIXTURES, "faster_rcnn.pth"), map_location="cpu", weights_only=True)["model"]


def _faster_rcnn_model():
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(FIXTURES, "faster_rcnn.yaml"))
    return build_model(cfg)


def test_a_model_zoo_pkl_and_a_mask_rcnn_checkpoint_load_their_detection_part(tmp_path):
    import pickle

    state = _faster_rcnn_state()
    mask = {"roi_heads.mask_head.mask_fcn1.weight": torch.zeros(32, 32, 3, 3),
            "roi_heads.mask_head.predictor.weight": torch.zeros(5, 32, 1, 1)}
    pkl = tmp_path / "model_final.pkl"
    with open(pkl, "wb") as f:  # detectron2's model-zoo format: numpy arrays under "model"
        pickle.dump({"model": {k: v.float().numpy() for k, v in {**state, **mask}.items()},
                     "__author__": "Detectron2 Model Zoo"}, f)
    report = load_weights(_faster_rcnn_model(), str(pkl))
    assert sorted(report.unexpected) == sorted(mask)  # the mask head, listed as unused
    assert not report.missing and not report.skipped_shape


@pytest.mark.parametrize("rename, architecture", [
    (("roi_heads.box_head.fc1.", "roi_heads.box_head.0.fc1."), "Cascade R-CNN"),
    (("roi_heads.box_head.fc1.", "roi_heads.keypoint_head.conv_fcn1."), "Keypoint R-CNN"),
    (("roi_heads.box_head.fc1.", "roi_heads.res5.0.conv1."), "C4 Faster R-CNN"),
])
def test_another_detectron2_architecture_is_named(tmp_path, rename, architecture):
    old, new = rename
    state = {k.replace(old, new): v for k, v in _faster_rcnn_state().items()}
    path = tmp_path / "other.pth"
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match=f"looks like (a )?{architecture}.*which retinadet does not have"):
        load_weights(_faster_rcnn_model(), str(path))

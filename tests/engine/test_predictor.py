"""DefaultPredictor: an image (array or file) in, the model's detections in that image's frame out."""
import numpy as np
import pytest
import torch
from PIL import Image

from retinadet.data.mapper import build_augmentations
from retinadet.engine import DefaultPredictor
from retinadet.utils.testing import quick_cfg, quick_model, spread_scores

NAMES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint of the quick RetinaNet with spread scores, saved as the trainer saves one (with meta)."""
    model = quick_model("MODEL.RETINANET.NUM_CLASSES", "3")
    spread_scores(model)
    path = tmp_path_factory.mktemp("predictor") / "model.pth"
    torch.save({"model": model.state_dict(), "meta": {"thing_classes": NAMES}}, path)
    return str(path)


def _cfg(weights, *opts):
    return quick_cfg("MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.WEIGHTS", weights, *opts)


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _by_hand(cfg, image):
    """What the predictor must return: the test resize, then the model with the original size."""
    model = quick_model("MODEL.RETINANET.NUM_CLASSES", "3", "MODEL.WEIGHTS", cfg.MODEL.WEIGHTS).eval()
    (resize,) = build_augmentations(cfg, is_train=False)
    resized = resize.get_transform(image.shape[:2], np.random.default_rng(0)).apply_image(image)
    with torch.no_grad():
        return model([{"image": torch.from_numpy(resized.transpose(2, 0, 1).copy()), "height": image.shape[0],
                       "width": image.shape[1]}])[0]


def test_one_image_equals_the_model_and_names_classes(weights):
    cfg = _cfg(weights)
    predictor = DefaultPredictor(cfg)
    image = _image(90, 130)
    got = predictor(image)
    expected = _by_hand(cfg, image)
    assert len(got["scores"]) > 0
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(got[key], expected[key]), key
    # Boxes are in the given image's frame (130 x 90), not the resized one.
    assert got["boxes"][:, 2].max() <= 130 and got["boxes"][:, 3].max() <= 90
    assert got["class_names"] == [NAMES[k] for k in got["labels"].tolist()]
    assert predictor.class_names == NAMES


def test_path_and_batch_give_the_same_detections(weights, tmp_path):
    predictor = DefaultPredictor(_cfg(weights, "TEST.IMS_PER_BATCH", "2"))
    # One size: a batch pads nothing, so it must equal one call per image (batches of 2, then 1).
    images = [_image(90, 130, seed=seed) for seed in (1, 2, 3)]
    singles = [predictor(image) for image in images]
    batch = predictor.predict_batch(images)
    assert len(batch) == 3
    for single, batched in zip(singles, batch):
        assert torch.allclose(single["boxes"], batched["boxes"], atol=1e-3)
        assert torch.equal(single["labels"], batched["labels"])
    # Sizes differ: each image's boxes stay in its own frame.
    mixed = predictor.predict_batch([_image(90, 130), _image(40, 60)])
    assert mixed[1]["boxes"][:, 2].max() <= 60 and mixed[1]["boxes"][:, 3].max() <= 40
    # A file is read in INPUT.FORMAT order: the same detections as the array.
    path = tmp_path / "image.png"
    Image.fromarray(images[0][:, :, ::-1] if predictor.input_format == "BGR" else images[0]).save(path)
    from_file = predictor(str(path))
    assert torch.equal(from_file["boxes"], singles[0]["boxes"]) and from_file["class_names"] == singles[0]["class_names"]


@pytest.mark.parametrize("bad, message", [
    (np.zeros((40, 40, 3), np.float32), r"image 0 has dtype float32; expected uint8"),
    (np.zeros((40, 40), np.uint8), r"image 0 has shape \(40, 40\); expected \(H, W, 3\)"),
    (np.zeros((0, 0, 3), np.uint8), r"image 0 is empty \(0 x 0 pixels\)"),
    (np.zeros((40, 40, 4), np.uint8), r"shape \(40, 40, 4\)"),
    ([[1, 2, 3]], r"image 0 is a list"),
])
def test_bad_images_named(weights, bad, message):
    predictor = DefaultPredictor(_cfg(weights))
    with pytest.raises(ValueError, match=message):
        predictor(bad)


def test_names_without_checkpoint_meta_and_missing_weights(weights, tmp_path):
    state = torch.load(weights, weights_only=True)["model"]
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    predictor = DefaultPredictor(_cfg(str(plain), "DATASETS.TEST", "()", "DATASETS.TRAIN", "()"))
    assert predictor.class_names is None
    out = predictor(_image(90, 130))
    assert out["class_names"] == [str(k) for k in out["labels"].tolist()]
    with pytest.raises(FileNotFoundError, match="Checkpoint file not found: .*missing.pth"):
        DefaultPredictor(_cfg(str(tmp_path / "missing.pth")))

"""Box drawing: outlines land on the box edges in the class colour, captions above."""
import numpy as np
import pytest
from PIL import Image

from retinadet.utils.visualizer import class_color, draw_boxes, save_png


def test_outline_on_box_edges_in_class_colour():
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    out = draw_boxes(image, np.array([[10, 20, 30, 35]]), labels=[3], line_width=1)
    color = class_color(3)
    # A 1-px outline covers exactly the pixels of the four edges: x in {10, 30} or y in {20, 35}.
    assert tuple(out[20, 15]) == color and tuple(out[35, 15]) == color
    assert tuple(out[27, 10]) == color and tuple(out[27, 30]) == color
    assert tuple(out[27, 20]) == (0, 0, 0)  # inside stays untouched
    assert image.sum() == 0  # the input is not modified


def test_caption_strip_is_drawn_above_the_box():
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    out = draw_boxes(image, np.array([[10, 30, 70, 55]]), labels=[1], scores=[0.9], class_names=["a", "cat"])
    strip = out[18:29, 11:20]
    assert (strip == class_color(1)).all(axis=-1).any()


def test_distinct_colours_and_bad_image():
    assert len({class_color(k) for k in range(20)}) == 20
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        draw_boxes(np.zeros((4, 4), dtype=np.uint8), np.zeros((0, 4)))


def test_save_png_round_trip(tmp_path):
    image = (np.arange(5 * 6 * 3) % 255).astype(np.uint8).reshape(5, 6, 3)
    path = tmp_path / "x.png"
    save_png(image, str(path))
    assert np.array_equal(np.asarray(Image.open(path)), image)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]

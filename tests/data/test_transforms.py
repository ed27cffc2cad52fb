"""Tests for retinadet.data.transforms: output sizes, box geometry, flips, clipping."""
import numpy as np
import pytest
from PIL import Image

from retinadet.data.transforms import (
    HFlipTransform,
    NoOpTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    VFlipTransform,
    clip_and_filter_boxes,
    resize_shortest_edge_shape,
)


@pytest.mark.parametrize(
    "hw, short, max_size, expected",
    [
        # (300, 200), short 100: scale 0.5 -> (150, 100); 150 > 140: times 140/150 -> (140, 93.33) -> (140, 93).
        ((300, 200), 100, 140, (140, 93)),
        # Landscape (200, 300), short 100 -> (100, 150) -> capped (93.33, 140) -> (93, 140).
        ((200, 300), 100, 140, (93, 140)),
        # No cap needed: (480, 640), short 800 -> scale 5/3 -> (800, 1066.67) -> (800, 1067).
        ((480, 640), 800, 1333, (800, 1067)),
        # Cap: (100, 400), short 800 -> (800, 3200) -> times 1333/3200 -> (333.25, 1333) -> (333, 1333).
        ((100, 400), 800, 1333, (333, 1333)),
        # Rounding half up, no cap (max 0): (2, 3), short 3 -> (3, 4.5) -> (3, 5).
        ((2, 3), 3, 0, (3, 5)),
    ],
)
def test_resize_shortest_edge_shape(hw, short, max_size, expected):
    assert resize_shortest_edge_shape(hw[0], hw[1], short, max_size) == expected


def test_resize_choice_picks_listed_sizes_from_rng():
    aug = ResizeShortestEdge((32, 48), max_size=1000, sample_style="choice")
    rng = np.random.default_rng(0)
    sizes = {aug.get_transform((64, 96), rng).new_h for _ in range(40)}
    # The short side is the height 64; it becomes 32 or 48, and 40 draws hit both.
    assert sizes == {32, 48}


def test_resize_range_draws_integers_within_bounds():
    aug = ResizeShortestEdge((20, 23), max_size=1000, sample_style="range")
    rng = np.random.default_rng(1)
    sizes = {aug.get_transform((50, 100), rng).new_h for _ in range(200)}
    assert sizes == {20, 21, 22, 23}


def test_resize_same_generator_seed_same_choice():
    aug = ResizeShortestEdge((10, 20, 30, 40, 50), max_size=1000)
    a = [aug.get_transform((64, 64), np.random.default_rng(7)).new_h for _ in range(3)]
    assert len(set(a)) == 1


def test_resize_zero_short_edge_is_noop_and_bad_arguments_raise():
    assert isinstance(ResizeShortestEdge(0, 100).get_transform((10, 20), np.random.default_rng()), NoOpTransform)
    with pytest.raises(ValueError, match="sample_style"):
        ResizeShortestEdge((10,), 100, "random")
    with pytest.raises(ValueError, match=r"min <= max"):
        ResizeShortestEdge((30, 10), 100, "range")


def test_resize_boxes_follow_scale_per_axis():
    # (300, 200) -> (140, 93): sx = 93/200 = 0.465, sy = 140/300 = 0.466667.
    t = ResizeShortestEdge(100, 140).get_transform((300, 200), np.random.default_rng())
    assert (t.new_h, t.new_w) == (140, 93)
    boxes = np.array([[10, 30, 110, 150], [0, 0, 200, 300]], dtype=np.float32)
    # 10*0.465 = 4.65, 30*0.466667 = 14, 110*0.465 = 51.15, 150*0.466667 = 70; full image -> (0, 0, 93, 140).
    np.testing.assert_allclose(
        t.apply_boxes(boxes), [[4.65, 14.0, 51.15, 70.0], [0, 0, 93, 140]], rtol=0, atol=1e-4
    )
    assert t.apply_boxes(boxes).dtype == np.float32


def test_resize_image_uses_pil_bilinear():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = ResizeTransform(40, 60, 20, 30).apply_image(image)
    expected = np.asarray(Image.fromarray(image).resize((30, 20), Image.BILINEAR))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # A constant image stays constant under bilinear resizing.
    flat = np.full((40, 60, 3), 77, dtype=np.uint8)
    assert (ResizeTransform(40, 60, 53, 80).apply_image(flat) == 77).all()


def test_resize_rejects_image_of_other_size():
    with pytest.raises(ValueError, match=r"\(40, 60\)"):
        ResizeTransform(40, 60, 20, 30).apply_image(np.zeros((41, 60, 3), np.uint8))


def test_hflip_boxes_and_pixels():
    # Width 93: x' = 93 - x, so (4.65, 14, 51.15, 70) -> (93 - 51.15, 14, 93 - 4.65, 70) = (41.85, 14, 88.35, 70).
    t = HFlipTransform(93)
    np.testing.assert_allclose(
        t.apply_boxes(np.array([[4.65, 14.0, 51.15, 70.0]], np.float32)), [[41.85, 14.0, 88.35, 70.0]], atol=1e-4
    )
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 255  # top-left -> top-right
    flipped = t.apply_image(image)
    assert flipped[0, 2].tolist() == [255, 255, 255] and flipped[0, 0].tolist() == [0, 0, 0]
    # A box drawn on the image lands where the flipped pixels are: pixel column 0 covers x in [0, 1).
    np.testing.assert_allclose(HFlipTransform(3).apply_boxes(np.array([[0, 0, 1, 1]], np.float32)), [[2, 0, 3, 1]])


def test_vflip_boxes():
    # Height 10: y' = 10 - y: (1, 2, 3, 4) -> (1, 6, 3, 8).
    np.testing.assert_allclose(VFlipTransform(10).apply_boxes(np.array([[1, 2, 3, 4]], np.float32)), [[1, 6, 3, 8]])


def test_random_flip_probability_and_determinism():
    aug = RandomFlip(prob=0.5)
    rng = np.random.default_rng(123)
    kinds = [type(aug.get_transform((8, 8), rng)) for _ in range(400)]
    flips = sum(k is HFlipTransform for k in kinds)
    assert 150 < flips < 250 and set(kinds) == {HFlipTransform, NoOpTransform}
    assert all(isinstance(RandomFlip(prob=1.0).get_transform((8, 8), rng), HFlipTransform) for _ in range(20))
    assert all(isinstance(RandomFlip(prob=0.0).get_transform((8, 8), rng), NoOpTransform) for _ in range(20))
    t = RandomFlip(prob=1.0, horizontal=False).get_transform((8, 5), rng)
    assert isinstance(t, VFlipTransform) and t.height == 8
    # The same seed gives the same decisions.
    a = [type(aug.get_transform((8, 8), np.random.default_rng(5))) for _ in range(3)]
    assert len(set(a)) == 1


def test_clip_and_filter_boxes():
    boxes = np.array(
        [
            [-5, -2, 10, 8],  # partly outside -> (0, 0, 10, 8), kept
            [15, 5, 30, 9],  # x beyond width 20 -> (15, 5, 20, 9), kept
            [25, 1, 30, 3],  # fully right of the image -> (20, 1, 20, 3), width 0, dropped
            [3, 4, 3, 6],  # zero width, dropped
            [1, 1, 2, 2],  # inside, kept
        ],
        dtype=np.float32,
    )
    clipped, keep = clip_and_filter_boxes(boxes, (10, 20))
    assert keep.tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(clipped[keep], [[0, 0, 10, 8], [15, 5, 20, 9], [1, 1, 2, 2]])
    empty, keep_empty = clip_and_filter_boxes(np.zeros((0, 4), np.float32), (10, 20))
    assert empty.shape == (0, 4) and keep_empty.shape == (0,)

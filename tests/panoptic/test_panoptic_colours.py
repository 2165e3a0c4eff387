"""Panoptic colours: stuff in its palette colour, instances distinguishable, void black."""

import numpy as np
from PIL import Image

from segjax.visualize import id_png, instance_boundaries, panoptic_colours

PALETTE = np.array([[100, 100, 100], [200, 50, 50]], np.uint8)


def test_colours():
    classes = np.zeros((6, 6), np.int64)
    instance = np.zeros((6, 6), np.int64)
    classes[:, 3:] = 1
    instance[:3, 3:] = 1
    instance[3:, 3:] = 2
    classes[0, 0] = 255
    rgb = panoptic_colours(classes, instance, PALETTE)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 6, 3)
    assert rgb[1, 1].tolist() == [100, 100, 100] and rgb[0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 4].tolist() != rgb[5, 4].tolist()          # two instances of one class
    assert np.all(np.abs(rgb[0, 4].astype(int) - PALETTE[1]) <= 70)
    assert instance_boundaries(instance)[2, 4] and not instance_boundaries(instance)[1, 4]
    assert np.all(rgb[2, 4] <= rgb[1, 4])                     # darker outline
    np.testing.assert_array_equal(rgb, panoptic_colours(classes, instance, PALETTE))


def test_id_png_round_trips(tmp_path):
    ids = np.array([[0, 300], [132_017, 255_000]])
    id_png(ids).save(tmp_path / "i.png")
    rgb = np.asarray(Image.open(tmp_path / "i.png")).astype(np.int64)
    np.testing.assert_array_equal(rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2], ids)

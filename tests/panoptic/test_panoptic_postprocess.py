"""Panoptic-DeepLab post-processing: centres, NMS, grouping, majority vote, stuff area; jit."""

import numpy as np
import pytest
from PIL import Image

from segjax.data import panoptic as panoptic_data
from segjax.panoptic import postprocess
from segjax.panoptic.quality import PanopticQuality

OPTIONS = dict(thing_classes=(1, 2), center_threshold=0.1, nms_kernel=7, top_k=200,
               stuff_area=10, void_label=255, label_divisor=1000)


def _scene():
    """24 x 24: stuff 0 around two thing blocks and a 4-pixel region of stuff class 3."""
    semantic = np.zeros((24, 24), np.int64)
    semantic[2:10, 2:10] = 1
    semantic[2:4, 2:5] = 2                  # a minority of class 2 inside instance A
    semantic[14:23, 14:23] = 2
    semantic[20:22, 2:4] = 3                # stuff below stuff_area: void
    logits = np.eye(4, dtype=np.float32)[semantic] * 5.0
    center = np.zeros((24, 24, 1), np.float32)
    center[5, 5], center[5, 7] = 0.9, 0.5   # (5, 7) lies within the 7 x 7 window of (5, 5)
    center[18, 18], center[12, 3] = 0.8, 0.05
    rows, cols = np.indices((24, 24))
    offset = np.zeros((24, 24, 2), np.float32)
    for (top, bottom, left, right), (cy, cx) in (((2, 10, 2, 10), (5, 5)),
                                                 ((14, 23, 14, 23), (18, 18))):
        block = (slice(top, bottom), slice(left, right))
        offset[block + (0,)] = cy - rows[block]
        offset[block + (1,)] = cx - cols[block]
    return semantic, logits, center, offset


def test_centres_grouping_votes_and_stuff_area():
    semantic, logits, center, offset = _scene()
    run = postprocess.make_postprocess(**OPTIONS)
    out = {k: np.asarray(v)[0] for k, v in run(logits[None], center[None], offset[None]).items()}
    assert out["semantic"].tolist() == semantic.tolist()
    peaks = np.argwhere(out["center_peaks"] > 0).tolist()
    assert peaks == [[5, 5], [18, 18]]       # (5, 7) suppressed, (12, 3) below threshold
    assert set(np.unique(out["instance"][2:10, 2:10])) == {1}
    assert set(np.unique(out["instance"][14:23, 14:23])) == {2}
    assert np.all(out["instance"][semantic == 0] == 0)
    assert np.all(out["panoptic_class"][2:10, 2:10] == 1)    # class 2 pixels outvoted
    assert np.all(out["panoptic_class"][14:23, 14:23] == 2)
    assert np.all(out["panoptic_class"][semantic == 0] == 0)
    assert np.all(out["panoptic_class"][20:22, 2:4] == 255)  # 4 < stuff_area = 10
    assert out["panoptic"][5, 5] == 1001 and out["panoptic"][18, 18] == 2002
    assert out["panoptic"][0, 0] == 0 and out["panoptic"][20, 2] == 255000


def test_top_k_and_no_centre():
    semantic, logits, center, offset = _scene()
    one = postprocess.postprocess(logits[None], center[None], offset[None],
                                  **dict(OPTIONS, top_k=1))
    assert set(np.unique(np.asarray(one["instance"]))) == {0, 1}
    none = postprocess.postprocess(logits[None], 0 * center[None], offset[None], **OPTIONS)
    things = (semantic == 1) | (semantic == 2)
    assert np.all(np.asarray(none["instance"]) == 0)
    assert np.all(np.asarray(none["panoptic_class"])[0][things] == 255)


def test_options_are_checked():
    with pytest.raises(ValueError, match="odd window"):
        postprocess.make_postprocess(**dict(OPTIONS, nms_kernel=6))
    _, logits, center, offset = _scene()
    with pytest.raises(ValueError, match="outside"):
        postprocess.postprocess(logits[None], center[None], offset[None],
                                **dict(OPTIONS, thing_classes=(7,)))


def test_perfect_predictions_give_pq_one(isbi_root):
    """Targets of an ISBI slice fed back as predictions: every cell is recovered."""
    raw = np.asarray(Image.open(isbi_root / "train" / "labels" / "3.png"))
    label = (raw > 127).astype(np.int64)
    instance = panoptic_data.connected_instances(label, (1,))
    targets = panoptic_data.panoptic_targets(label, instance)
    logits = np.eye(2, dtype=np.float32)[label]
    options = dict(OPTIONS, thing_classes=(1,), stuff_area=2048)
    out = postprocess.make_postprocess(**options)(
        logits[None], targets["center"][None, ..., None], targets["offset"][None])
    quality = PanopticQuality(2, (1,))
    quality.update(label, instance, np.asarray(out["panoptic_class"])[0],
                   np.asarray(out["panoptic_instance"])[0])
    result = quality.result()
    assert result["pq"] == 1.0 and result["pq_classes_things"] == 1
    assert result["pq_tp"][1] == instance.max()

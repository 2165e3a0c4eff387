"""Boundary IoU, boundary F-score, HD95 and NSD against references.

- Boundary IoU: boundary-iou-api's `mask_to_boundary` and `boundary_iou`
  (bowenc0221/boundary-iou-api, boundary_iou/utils/boundary_utils.py; BSD
  licence, Copyright (c) 2021 Bowen Cheng), copied with its OpenCV calls
  (opencv-python-headless is a test-only dependency).
- HD95 and NSD: MONAI's `compute_hausdorff_distance(percentile=95)` and
  `compute_surface_dice` (test-only dependency), 2D and anisotropic 3D.
- Boundary F-score: no package implements it here; a brute-force reference
  (every pairwise distance between boundary pixels) and a hand-built example.
"""

from __future__ import annotations

import numpy as np
import pytest

from segjax import boundary_metrics as bm

IGNORE = 255


# ----------------------------------------------------------------------------- Boundary IoU


def api_mask_to_boundary(mask, dilation_ratio=0.02):
    """boundary-iou-api `mask_to_boundary`, copied verbatim."""
    cv2 = pytest.importorskip("cv2")
    h, w = mask.shape
    img_diag = np.sqrt(h ** 2 + w ** 2)
    dilation = int(round(dilation_ratio * img_diag))
    if dilation < 1:
        dilation = 1
    # Pad image so mask truncated by the image border is also considered as boundary.
    new_mask = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    kernel = np.ones((3, 3), dtype=np.uint8)
    new_mask_erode = cv2.erode(new_mask, kernel, iterations=dilation)
    mask_erode = new_mask_erode[1 : h + 1, 1 : w + 1]
    # G_d intersects G in the paper.
    return mask - mask_erode


def api_boundary_iou(gt, dt, dilation_ratio=0.02):
    """The api README's `boundary_iou(gt, dt)`, copied; also returns the two counts."""
    gt_boundary = api_mask_to_boundary(gt, dilation_ratio)
    dt_boundary = api_mask_to_boundary(dt, dilation_ratio)
    intersection = ((gt_boundary * dt_boundary) > 0).sum()
    union = ((gt_boundary + dt_boundary) > 0).sum()
    return intersection / union, intersection, union


def blobs(shape, seed, count=4):
    """A binary mask of random discs (boundaries of every orientation)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    mask = np.zeros(shape, bool)
    for _ in range(count):
        centre = rng.uniform(0, shape)
        radius = rng.uniform(0.1, 0.3) * min(shape)
        mask |= np.sum((grid - centre.reshape(-1, *[1] * len(shape))) ** 2, axis=0) <= radius ** 2
    return mask


@pytest.mark.parametrize("ratio", [0.005, 0.02, 0.08])
def test_boundary_iou_matches_the_api(ratio):
    for seed in range(4):
        gt, dt = blobs((61, 83), seed), blobs((61, 83), seed + 100)
        expected, intersection, union = api_boundary_iou(gt.astype(np.uint8),
                                                         dt.astype(np.uint8), ratio)
        np.testing.assert_array_equal(
            bm.mask_boundary(gt, bm.boundary_width(gt.shape, ratio)),
            api_mask_to_boundary(gt.astype(np.uint8), ratio) > 0)
        assert bm.boundary_iou_counts(dt, gt, ratio) == (intersection, union)
        assert intersection / union == pytest.approx(expected)


def test_dataset_boundary_iou_accumulates_counts_per_class():
    """Two images, three classes: per class, summed intersections over summed unions."""
    labels = [np.where(blobs((40, 50), i), 1, np.where(blobs((40, 50), i + 5), 2, 0))
              for i in range(2)]
    predictions = [np.where(blobs((40, 50), i + 50), 1, np.where(blobs((40, 50), i + 9), 2, 0))
                   for i in range(2)]
    accumulator = bm.BoundaryMetrics(bm.BoundaryOptions(metrics=("boundary_iou",)), 3)
    for prediction, label in zip(predictions, labels):
        accumulator.update(prediction, label)
    result = accumulator.result()
    for k in range(3):
        counts = [api_boundary_iou((y == k).astype(np.uint8), (p == k).astype(np.uint8))[1:]
                  for p, y in zip(predictions, labels)]
        expected = sum(c[0] for c in counts) / sum(c[1] for c in counts)
        assert result["per_class_boundary_iou"][k] == pytest.approx(expected)
    assert result["boundary_iou"] == pytest.approx(np.mean(result["per_class_boundary_iou"]))


# ----------------------------------------------------------------------------- BF score


def brute_force_bf(prediction, label, tolerance_ratio):
    """Every pairwise distance between the two boundaries (d = 1 boundaries as the api's)."""
    predicted = np.argwhere(api_mask_to_boundary(prediction.astype(np.uint8), 0) > 0)
    actual = np.argwhere(api_mask_to_boundary(label.astype(np.uint8), 0) > 0)
    tolerance = tolerance_ratio * np.hypot(*label.shape)
    distance = np.sqrt(((predicted[:, None] - actual[None]) ** 2).sum(-1))
    precision = np.mean(distance.min(axis=1) <= tolerance)
    recall = np.mean(distance.min(axis=0) <= tolerance)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@pytest.mark.parametrize("ratio", [0.0075, 0.03])
def test_boundary_f_matches_brute_force(ratio):
    for seed in range(3):
        gt, dt = blobs((47, 59), seed), blobs((47, 59), seed + 20)
        assert bm.boundary_f_score(dt, gt, ratio) == pytest.approx(brute_force_bf(dt, gt, ratio))


def test_boundary_f_hand_example():
    """A 6x6 square and the same square shifted by 2 columns in a 40x40 image: tolerance
    0.03 x diagonal = 1.70 px. The square's boundary has 20 pixels; of the shifted one's,
    the 2 + 2 top/bottom pixels past the original's right edge lie 1 and 2 px away from it,
    the 6-pixel right edge 2 px from the original's right edge: 20 - 6 - 2 = 12 within."""
    gt = np.zeros((40, 40), bool)
    gt[10:16, 10:16] = True
    dt = np.roll(gt, 2, axis=1)
    score = bm.boundary_f_score(dt, gt, 0.03)
    assert score == pytest.approx(12 / 20)   # precision = recall = 12 / 20 by symmetry
    assert bm.boundary_f_score(gt, gt, 0.03) == 1.0
    assert np.isnan(bm.boundary_f_score(np.zeros_like(gt), np.zeros_like(gt)))
    assert bm.boundary_f_score(gt, np.zeros_like(gt)) == 0.0


# ----------------------------------------------------------------------------- HD95, NSD


def monai_values(prediction, label, spacing, tolerance):
    torch = pytest.importorskip("torch")
    monai = pytest.importorskip("monai.metrics")
    y_pred = torch.tensor(prediction[None, None].astype(np.float32))
    y = torch.tensor(label[None, None].astype(np.float32))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # MONAI warns on empty masks
        hd = monai.compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                              spacing=spacing)
        nsd = monai.compute_surface_dice(y_pred, y, [tolerance], include_background=True,
                                         spacing=spacing)
    return float(hd[0, 0]), float(nsd[0, 0])


@pytest.mark.parametrize("shape,spacing,tolerance", [
    ((48, 56), None, 2.0),
    ((12, 30, 34), (3.0, 0.8, 0.8), 1.5),
    ((10, 25, 21), (1.0, 1.0, 2.5), 2.0)])
def test_hd95_and_nsd_match_monai(shape, spacing, tolerance):
    for seed in range(3):
        gt, dt = blobs(shape, seed, count=3), blobs(shape, seed + 7, count=3)
        expected_hd, expected_nsd = monai_values(dt, gt, spacing, tolerance)
        assert bm.hausdorff95(dt, gt, spacing) == pytest.approx(expected_hd, rel=1e-5)
        assert bm.normalized_surface_dice(dt, gt, tolerance, spacing) == pytest.approx(
            expected_nsd, rel=1e-6)


def test_hd95_and_nsd_empty_masks_follow_monai():
    """One empty mask: MONAI's HD95 is NaN (the percentile of no distances), its NSD 0."""
    gt = blobs((30, 30), 1)
    empty = np.zeros_like(gt)
    for prediction, label in ((empty, gt), (gt, empty)):
        hd, nsd = monai_values(prediction, label, None, 1.0)
        assert np.isnan(hd) and np.isnan(bm.hausdorff95(prediction, label))
        assert bm.normalized_surface_dice(prediction, label, 1.0) == nsd == 0.0
    assert np.isnan(bm.hausdorff95(empty, empty))
    assert np.isnan(bm.normalized_surface_dice(empty, empty, 1.0))


def test_dataset_hd95_and_nsd_are_means_over_images_skipping_nan():
    """Per class, the mean over images as MONAI's reduction (NaN skipped)."""
    labels = [np.where(blobs((8, 30, 32), i), 1, 0) for i in range(3)]
    predictions = [np.where(blobs((8, 30, 32), i + 30), 1, 0) for i in range(3)]
    predictions[2][:] = 0
    labels[2][:] = 0           # class 1 absent from both in image 2: skipped
    accumulator = bm.BoundaryMetrics(bm.BoundaryOptions(metrics=("hd95", "nsd")), 2)
    for prediction, label in zip(predictions, labels):
        accumulator.update(prediction, label, spacing=(2.0, 1.0, 1.0))
    result = accumulator.result()
    values = [monai_values(p == 1, y == 1, (2.0, 1.0, 1.0), 1.0) for p, y in
              zip(predictions[:2], labels[:2])]
    assert not np.isnan(values).any()
    assert result["per_class_hd95"][1] == pytest.approx(np.mean([v[0] for v in values]),
                                                        rel=1e-5)
    assert result["per_class_nsd"][1] == pytest.approx(np.mean([v[1] for v in values]))
    assert set(result) == {"hd95", "per_class_hd95", "nsd", "per_class_nsd"}


# ----------------------------------------------------------------------------- ignore index


def test_ignored_pixels_change_no_boundary_metric():
    """Whatever is predicted at ignored pixels, every metric is the same; labelling those
    pixels instead changes every one."""
    label = np.where(blobs((40, 44), 3), 1, 0)
    label[5:40:9] = 2
    prediction = np.where(blobs((40, 44), 40), 1, 0)
    ignored = np.zeros(label.shape, bool)
    ignored[:, 30:] = True
    ignored[18:26] = True
    options = bm.BoundaryOptions(metrics=bm.BOUNDARY_METRICS, f_tolerance=0.02)

    def result(prediction, label):
        accumulator = bm.BoundaryMetrics(options, 3, ignore_index=IGNORE)
        accumulator.update(prediction, label)
        return accumulator.result()

    base = result(prediction, np.where(ignored, IGNORE, label))
    scrambled = np.where(ignored, np.random.default_rng(1).integers(0, 3, label.shape),
                         prediction)
    np.testing.assert_equal(result(scrambled, np.where(ignored, IGNORE, label)), base)
    counted = result(prediction, label)
    for name in bm.BOUNDARY_METRICS:
        assert counted[name] != pytest.approx(base[name], rel=1e-6), name
    # channel stacks: an element that is not 0 or 1 is ignored
    channel_label = np.stack([label == 1, label == 2], -1).astype(np.int32)
    channel_prediction = np.stack([prediction == 1, prediction == 2], -1)
    channel_ignored = np.where(ignored[..., None], IGNORE, channel_label)
    multilabel = bm.BoundaryMetrics(options, 2, ignore_index=IGNORE, multilabel=True)
    multilabel.update(channel_prediction, channel_ignored)
    multilabel_scrambled = bm.BoundaryMetrics(options, 2, ignore_index=IGNORE, multilabel=True)
    multilabel_scrambled.update(np.where(ignored[..., None], True, channel_prediction),
                                channel_ignored)
    np.testing.assert_equal(multilabel.result(), multilabel_scrambled.result())
    assert multilabel.result()["per_class_boundary_iou"] == base["per_class_boundary_iou"][1:]


def test_options_are_checked():
    with pytest.raises(ValueError, match="unknown metric"):
        bm.BoundaryOptions(metrics=("hd99",))
    with pytest.raises(ValueError, match="nsd_tolerance"):
        bm.BoundaryOptions(nsd_tolerance=0.0)
    options = bm.BoundaryOptions.from_config({"metrics": ("nsd",), "nsd_tolerance": 2.0,
                                              "boundary_iou_dilation": 0.01})
    assert options.nsd_tolerance == 2.0 and options.dilation_ratio == 0.01

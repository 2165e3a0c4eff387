"""Panoptic quality on hand-built examples: by hand, and against the official Cityscapes scripts.

The reference is `cityscapesscripts.evaluation.evalPanopticSemanticLabeling`
(pip install --no-deps cityscapesscripts pyquaternion; a test-only
dependency): the maps are written as COCO-format panoptic PNGs and segment
lists, scored with its `pq_compute_single_core`, and every per-class count,
IoU sum and average is compared.
"""

import json

import numpy as np
import pytest
from PIL import Image

from segjax.panoptic.quality import PanopticQuality, format_pq_table

IGNORE = 255
CLASSES = ("road", "sky", "car", "person")     # 0, 1 stuff; 2, 3 things
THINGS = (2, 3)


def test_by_hand():
    """Stuff matched exactly; one car at IoU 8/12, one car missed, one car invented."""
    gt_class = np.zeros((10, 10), np.int64)
    gt_instance = np.zeros((10, 10), np.int64)
    gt_class[0, :] = 2
    gt_instance[0, :] = 1                       # car 1: 10 pixels
    gt_class[5, 0:4] = 2
    gt_instance[5, 0:4] = 2                     # car 2: missed (FN)
    pred_class = np.zeros_like(gt_class)
    pred_instance = np.zeros_like(gt_instance)
    pred_class[0, 2:] = 2
    pred_class[1, 0:2] = 2
    pred_instance[0, 2:] = 7
    pred_instance[1, 0:2] = 7                   # 8 of car 1 + 2 road pixels: IoU 8/12
    pred_class[8, 5:9] = 2
    pred_instance[8, 5:9] = 9                   # on road: FP
    quality = PanopticQuality(4, THINGS, class_names=CLASSES)
    quality.update(gt_class, gt_instance, pred_class, pred_instance)
    result = quality.result()
    assert result["pq_tp"] == [1, 0, 1, 0] and result["pq_fp"] == [0, 0, 1, 0]
    assert result["pq_fn"] == [0, 0, 1, 0]
    road_iou = 80 / (86 + 86 - 80)              # road: 86 px in each, 80 shared
    assert result["per_class_pq"][0] == pytest.approx(road_iou)
    assert result["per_class_sq"][2] == pytest.approx(8 / 12)
    assert result["per_class_rq"][2] == pytest.approx(1 / 2)
    assert result["per_class_pq"][2] == pytest.approx((8 / 12) / 2)
    assert np.isnan(result["per_class_pq"][1])  # sky never occurs: left out of the means
    assert result["pq"] == pytest.approx((road_iou + 8 / 24) / 2) and result["pq_classes"] == 2
    assert result["pq_things"] == pytest.approx(8 / 24) and result["pq_classes_stuff"] == 1
    assert result["pq/car"] == pytest.approx(8 / 24)
    assert "| car | thing |" in format_pq_table(result, CLASSES, THINGS)


def test_void_and_crowd_regions_do_not_count():
    gt_class = np.zeros((8, 8), np.int64)
    gt_instance = np.zeros((8, 8), np.int64)
    gt_class[:, 6:] = IGNORE                     # void columns
    gt_class[0:3, 0:3] = 3                       # a person crowd region (instance 0)
    pred_class = np.zeros_like(gt_class)
    pred_instance = np.zeros_like(gt_instance)
    pred_class[:, 5:] = 3
    pred_instance[:, 5:] = 4                     # 2/3 on void: not a false positive
    pred_class[0:3, 0:2] = 3
    pred_instance[0:3, 0:2] = 5                  # inside the crowd: not a false positive
    quality = PanopticQuality(4, THINGS)
    quality.update(gt_class, gt_instance, pred_class, pred_instance)
    result = quality.result()
    assert result["pq_fp"][3] == 0 and result["pq_fn"][3] == 0 and result["pq_tp"][3] == 0


def _random_scene(seed, size=48):
    """Ground truth of rectangles and a prediction that shifts, drops, adds and relabels some."""
    rng = np.random.default_rng(seed)
    gt_class = rng.integers(0, 2, (1, 1)).repeat(size, 0).repeat(size, 1)
    gt_class[size // 2:] = 1 - gt_class[0, 0]
    gt_instance = np.zeros((size, size), np.int64)
    pred_class, pred_instance = gt_class.copy(), gt_instance.copy()
    for index in range(1, 9):
        top, left = rng.integers(0, size - 8, 2)
        height, width = rng.integers(3, 12, 2)
        cls = int(rng.choice(THINGS))
        crowd = rng.random() < 0.15
        block = (slice(top, top + height), slice(left, left + width))
        gt_class[block] = cls
        gt_instance[block] = 0 if crowd else index
        fate = rng.random()
        if fate < 0.15:
            continue                                            # missed
        dy, dx = rng.integers(-3, 4, 2)
        shifted = (slice(max(top + dy, 0), top + dy + height),
                   slice(max(left + dx, 0), left + dx + width))
        pred_class[shifted] = cls if fate < 0.85 else (5 - cls)  # some relabelled
        pred_instance[shifted] = 10 + index
    for _ in range(2):                                          # invented instances
        top, left = rng.integers(0, size - 6, 2)
        pred_class[top:top + 5, left:left + 5] = THINGS[0]
        pred_instance[top:top + 5, left:left + 5] = 50 + top
    gt_class[rng.random((size, size)) < 0.03] = IGNORE          # scattered void
    gt_class[:, :3] = IGNORE
    pred_class[rng.random((size, size)) < 0.01] = IGNORE       # unassigned predictions
    return gt_class, gt_instance, pred_class, pred_instance


def _to_coco(classes, instances, folder, name, ground_truth):
    """A COCO panoptic PNG (id = R + 256 G + 256^2 B, 0 = VOID) and its segment list."""
    ids = np.zeros(classes.shape, np.int64)
    segments = []
    for cls, instance in sorted({(int(c), int(i)) for c, i in zip(
            classes.ravel(), np.where(np.isin(classes, THINGS), instances, 0).ravel())
            if c != IGNORE}):
        segment = len(segments) + 1
        mask = (classes == cls) & ((instances == instance) if cls in THINGS else True)
        ids[mask] = segment
        crowd = int(ground_truth and cls in THINGS and instance == 0)
        segments.append({"id": segment, "category_id": cls + 1, "iscrowd": crowd,
                         "area": int(mask.sum())})
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / f"{name}.png")
    return {"image_id": name, "file_name": f"{name}.png", "segments_info": segments}


def test_matches_cityscapes_scripts(tmp_path):
    evaluation = pytest.importorskip("cityscapesscripts.evaluation.evalPanopticSemanticLabeling")
    categories = {index + 1: {"id": index + 1, "name": name, "isthing": int(index in THINGS)}
                  for index, name in enumerate(CLASSES)}
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    quality = PanopticQuality(4, THINGS, ignore_index=IGNORE)
    annotations = []
    for seed in range(12):
        gt_class, gt_instance, pred_class, pred_instance = _random_scene(seed)
        quality.update(gt_class, gt_instance, pred_class, pred_instance)
        annotations.append((_to_coco(gt_class, gt_instance, tmp_path / "gt", str(seed), True),
                            _to_coco(pred_class, pred_instance, tmp_path / "pred", str(seed),
                                     False)))
    json.dumps(annotations)  # the reference's own inputs are plain JSON
    stats = evaluation.pq_compute_single_core(0, annotations, str(tmp_path / "gt"),
                                              str(tmp_path / "pred"), categories)
    reference = evaluation.average_pq(stats, categories)
    result = quality.result()
    for index in range(4):
        category = stats[index + 1]
        assert (result["pq_tp"][index], result["pq_fp"][index], result["pq_fn"][index]) == (
            category.tp, category.fp, category.fn), CLASSES[index]
        np.testing.assert_allclose(quality.iou[index], category.iou, rtol=1e-12)
    assert sum(result["pq_tp"]) > 20 and sum(result["pq_fp"]) > 5 and sum(result["pq_fn"]) > 5
    for ours, theirs in (("", "All"), ("_things", "Things"), ("_stuff", "Stuff")):
        for metric in ("pq", "sq", "rq"):
            assert result[metric + ours] == pytest.approx(reference[theirs][metric], abs=1e-12)
        assert result["pq_classes" + ours] == reference[theirs]["n"]

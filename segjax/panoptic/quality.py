"""Panoptic quality (Kirillov et al. 2019, arXiv:1801.00868): PQ = SQ x RQ per class and averaged.

`PanopticQuality` accumulates, image by image on the host, the per-class
true positives, false positives, false negatives and matched IoUs of
COCO's and the Cityscapes scripts' panoptic evaluation (`panopticapi`'s
`pq_compute_single_core`, `cityscapesscripts.evaluation.
evalPanopticSemanticLabeling`), from maps rather than PNG + JSON files:

- segments: a stuff class's pixels form one segment; a thing class's pixels
  form one segment per instance id. Ground-truth pixels labelled
  `ignore_index` are VOID; ground-truth thing pixels with instance id 0 are
  that class's crowd region. Predicted pixels of class `ignore_index` (void)
  belong to no segment.
- a ground-truth and a predicted segment of the same class match when their
  IoU exceeds 0.5, the union leaving out the predicted pixels on VOID (such
  matches are unique);
- unmatched ground-truth segments are false negatives (crowd regions never
  are); an unmatched predicted segment is a false positive unless more than
  half of it lies on VOID or on its class's crowd region.

PQ_c = sum of matched IoUs / (TP + FP/2 + FN/2), SQ_c = sum IoU / TP,
RQ_c = TP / (TP + FP/2 + FN/2). Averages run over the classes that occur
(TP + FP + FN > 0), over all of them, the things and the stuff; classes that
never occur have NaN entries (the Cityscapes scripts print 0 for them and
leave them out of the averages alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_VOID = -1


def _segment_ids(classes: np.ndarray, instances: np.ndarray, is_thing: np.ndarray,
                 valid: np.ndarray, stride: int) -> np.ndarray:
    """class * stride + instance (instance 0 for stuff) on valid pixels, _VOID elsewhere."""
    safe = np.where(valid, classes, 0)
    instance = np.where(is_thing[safe], instances, 0)
    return np.where(valid, safe.astype(np.int64) * stride + instance, _VOID)


class PanopticQuality:
    """Accumulates PQ statistics over images (see the module docstring)."""

    def __init__(self, num_classes: int, thing_classes: Sequence[int], *,
                 ignore_index: int = 255, class_names: Sequence[str] | None = None):
        self.num_classes = int(num_classes)
        self.is_thing = np.zeros((self.num_classes,), bool)
        for thing in thing_classes:
            if not 0 <= int(thing) < self.num_classes:
                raise ValueError(f"PanopticQuality: thing class {thing} is outside "
                                 f"[0, {self.num_classes})")
            self.is_thing[int(thing)] = True
        self.ignore_index = ignore_index
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"PanopticQuality: {len(class_names)} class_names for "
                             f"{self.num_classes} classes")
        self.class_names = tuple(class_names) if class_names is not None else None
        self.iou = np.zeros((self.num_classes,), np.float64)
        self.tp = np.zeros((self.num_classes,), np.int64)
        self.fp = np.zeros((self.num_classes,), np.int64)
        self.fn = np.zeros((self.num_classes,), np.int64)

    def _valid(self, classes: np.ndarray) -> np.ndarray:
        valid = (classes >= 0) & (classes < self.num_classes)
        return valid if self.ignore_index is None else valid & (classes != self.ignore_index)

    def update(self, gt_class, gt_instance, pred_class, pred_instance) -> None:
        """Adds one image: ground-truth and predicted (H, W) class and instance maps."""
        arrays = [np.asarray(a).astype(np.int64) for a in (gt_class, gt_instance, pred_class,
                                                            pred_instance)]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"PanopticQuality.update: maps of different shapes "
                             f"{[a.shape for a in arrays]}")
        gt_class, gt_instance, pred_class, pred_instance = (a.ravel() for a in arrays)
        stride = int(max(gt_instance.max(initial=0), pred_instance.max(initial=0))) + 1
        gt = _segment_ids(gt_class, gt_instance, self.is_thing, self._valid(gt_class), stride)
        pred = _segment_ids(pred_class, pred_instance, self.is_thing,
                            self._valid(pred_class), stride)

        gt_ids, gt_areas = np.unique(gt[gt != _VOID], return_counts=True)
        pred_ids, pred_areas = np.unique(pred[pred != _VOID], return_counts=True)
        gt_area, pred_area = dict(zip(gt_ids, gt_areas)), dict(zip(pred_ids, pred_areas))
        base = int(pred.max(initial=0)) + 2       # pairs as one integer, VOID shifted to 0
        pairs, counts = np.unique((gt + 1) * base + (pred + 1), return_counts=True)
        overlap = {(int(k // base) - 1, int(k % base) - 1): int(c) for k, c in zip(pairs, counts)}

        def is_crowd(segment: int) -> bool:
            return self.is_thing[segment // stride] and segment % stride == 0

        matched_gt, matched_pred = set(), set()
        for (g, p), intersection in overlap.items():
            if g == _VOID or p == _VOID or g // stride != p // stride or is_crowd(g):
                continue
            union = (pred_area[p] + gt_area[g] - intersection
                     - overlap.get((_VOID, p), 0))
            iou = intersection / union
            if iou > 0.5:
                self.tp[g // stride] += 1
                self.iou[g // stride] += iou
                matched_gt.add(g)
                matched_pred.add(p)
        for g in gt_area:
            if g not in matched_gt and not is_crowd(g):
                self.fn[g // stride] += 1
        for p, area in pred_area.items():
            if p in matched_pred:
                continue
            crowd = (p // stride) * stride  # the crowd segment of p's class (things only)
            ignored = overlap.get((_VOID, p), 0)
            if self.is_thing[p // stride]:
                ignored += overlap.get((crowd, p), 0)
            if ignored / area <= 0.5:
                self.fp[p // stride] += 1

    def merge(self, other: "PanopticQuality") -> None:
        """Adds another accumulator's statistics (e.g. of another process)."""
        for name in ("iou", "tp", "fp", "fn"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def per_class(self) -> dict[str, np.ndarray]:
        """PQ, SQ, RQ per class (NaN for classes without any segment)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            denominator = self.tp + 0.5 * self.fp + 0.5 * self.fn
            present = denominator > 0
            pq = np.where(present, self.iou / np.where(present, denominator, 1), np.nan)
            rq = np.where(present, self.tp / np.where(present, denominator, 1), np.nan)
            sq = np.where(present, np.where(self.tp > 0, self.iou / np.maximum(self.tp, 1), 0.0),
                          np.nan)
        return {"pq": pq, "sq": sq, "rq": rq}

    def result(self) -> dict:
        """'pq', 'sq', 'rq' over the classes that occur, '*_things', '*_stuff', the numbers of
        those classes ('pq_classes*'), per-class lists and counts ('pq_tp', 'pq_fp', 'pq_fn')."""
        per_class = self.per_class()
        present = ~np.isnan(per_class["pq"])
        metrics = {}
        for suffix, selection in (("", present), ("_things", present & self.is_thing),
                                  ("_stuff", present & ~self.is_thing)):
            for name, values in per_class.items():
                metrics[name + suffix] = (float(values[selection].mean()) if selection.any()
                                          else float("nan"))
            metrics["pq_classes" + suffix] = int(selection.sum())
        for name, values in per_class.items():
            metrics[f"per_class_{name}"] = values.tolist()
        metrics.update(pq_tp=self.tp.tolist(), pq_fp=self.fp.tolist(), pq_fn=self.fn.tolist(),
                       thing_classes=np.flatnonzero(self.is_thing).tolist())
        if self.class_names is not None:
            metrics["class_names"] = list(self.class_names)
            for name, value in zip(self.class_names, per_class["pq"]):
                metrics[f"pq/{name}"] = float(value)
        return metrics


def _cell(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.2f}"


def format_pq_table(metrics: dict, class_names: Sequence[str] | None = None,
                    thing_classes: Sequence[int] = ()) -> str:
    """A Markdown table of per-class PQ, SQ and RQ (percent) and the three averages."""
    count = len(metrics["per_class_pq"])
    names = list(class_names) if class_names else [f"class {i}" for i in range(count)]
    rows = ["| class | kind | PQ | SQ | RQ |", "| --- | --- | ---: | ---: | ---: |"]
    for index, name in enumerate(names):
        kind = "thing" if index in set(int(t) for t in thing_classes) else "stuff"
        values = (metrics[f"per_class_{m}"][index] for m in ("pq", "sq", "rq"))
        rows.append(f"| {name} | {kind} | " + " | ".join(_cell(v) for v in values) + " |")
    for label, suffix in (("**all**", ""), ("**things**", "_things"), ("**stuff**", "_stuff")):
        values = (metrics[m + suffix] for m in ("pq", "sq", "rq"))
        rows.append(f"| {label} | {metrics['pq_classes' + suffix]} classes | "
                    + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(rows)

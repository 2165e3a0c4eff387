"""Every loss of segjax.losses against a reference implementation, value and gradient.

References (all on the same random logits and labels, with ignored pixels):
- segmentation_models_pytorch 0.6.0 `losses` (the dev extra): FocalLoss, the
  softmax focal of its _functional module, SoftBCEWithLogitsLoss, DiceLoss,
  JaccardLoss, TverskyLoss, LovaszLoss (Berman's code);
- torch.nn.functional: cross_entropy / nll_loss (class weights, label smoothing);
- authors' code copied below with its source and licence named:
  HRNet-Semantic-Segmentation's OhemCrossEntropy (MIT), Kervadec et al.'s
  boundary loss (LIVIAETS/boundary-loss, MIT);
- the focal Tversky authors' formula (nabsabraham/focal-tversky-unet, losses.py:
  no licence, so restated here in NumPy rather than copied).
"Within 1e-5 relative": |ours - reference| <= 1e-5 * |reference| for values, and
max |ours - reference| <= 1e-5 * max |reference| for gradients with respect to
the logits. The references run in float64 (smp's Lovasz in float32: it casts its weights to
float32); segjax in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from segjax import losses, registry
from segjax.config import base_config
from tests import torch_refs

torch = torch_refs.import_torch()
smp = torch_refs.import_smp()          # defines torchvision's operator schemas first
from segmentation_models_pytorch import losses as smp_losses  # noqa: E402
from segmentation_models_pytorch.losses import _functional as smp_functional  # noqa: E402

F = torch.nn.functional

RTOL = 1e-5
IGNORE = 255
SHAPE = (2, 9, 11)          # N, H, W
K = 4


def index_case(seed: int = 0, classes: int = K, shape=SHAPE):
    """Random logits, class-index labels using every class, ~20% ignored pixels."""
    rng = np.random.default_rng(seed)
    logits = (1.5 * rng.standard_normal((*shape, classes))).astype(np.float32)
    labels = rng.integers(0, classes, shape).astype(np.int32)
    labels[rng.random(shape) < 0.2] = IGNORE
    return logits, labels


def channel_case(seed: int = 0, channels: int = 3, per_element: bool = False, shape=SHAPE):
    """Random logits and 0/1 channel stacks; ignored pixels (whole pixels, or elements)."""
    rng = np.random.default_rng(seed)
    logits = (1.5 * rng.standard_normal((*shape, channels))).astype(np.float32)
    labels = rng.integers(0, 2, (*shape, channels)).astype(np.int32)
    if per_element:
        labels[rng.random(labels.shape) < 0.2] = IGNORE
    else:
        labels[rng.random(shape) < 0.2] = IGNORE
    return logits, labels


def nchw(logits: np.ndarray, requires_grad: bool = True):
    tensor = torch.tensor(np.moveaxis(logits, -1, 1), dtype=torch.float64)
    return tensor.requires_grad_(requires_grad)


def channels_first(labels: np.ndarray):
    return torch.tensor(np.moveaxis(labels, -1, 1)).long()


def value_and_grad(function, logits, labels):
    value, grad = jax.value_and_grad(lambda z: function(z, jnp.asarray(labels)))(
        jnp.asarray(logits))
    return float(value), np.asarray(grad)


def reference_value_and_grad(function, logits, dtype=None):
    tensor = nchw(logits)
    if dtype is not None:      # smp's Lovasz casts its weights to float32
        tensor = tensor.detach().to(dtype).requires_grad_(True)
    value = function(tensor)
    value.backward()
    return float(value.detach()), np.moveaxis(tensor.grad.numpy(), 1, -1)


def assert_matches(ours, reference):
    (value, grad), (ref_value, ref_grad) = ours, reference
    assert abs(value - ref_value) <= RTOL * abs(ref_value), (value, ref_value)
    assert np.max(np.abs(grad - ref_grad)) <= RTOL * np.max(np.abs(ref_grad))


def relative_difference(ours, reference) -> tuple[float, float]:
    """(value, gradient) differences relative to the reference's scale (for the report)."""
    (value, grad), (ref_value, ref_grad) = ours, reference
    return (abs(value - ref_value) / abs(ref_value),
            float(np.max(np.abs(grad - ref_grad)) / np.max(np.abs(ref_grad))))


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_label_smoothing_and_class_weights_matches_torch(smoothing, weighted):
    logits, labels = index_case(1)
    weights = (0.5, 1.0, 2.0, 1.5) if weighted else None
    ours = value_and_grad(lambda z, y: losses.cross_entropy(
        z, y, class_weights=weights, label_smoothing=smoothing), logits, labels)
    reference = reference_value_and_grad(lambda z: F.cross_entropy(
        z, torch.tensor(labels).long(), ignore_index=IGNORE, label_smoothing=smoothing,
        weight=None if weights is None else torch.tensor(weights, dtype=torch.float64)),
        logits)
    assert_matches(ours, reference)


# ----------------------------------------------------------------------------- focal


def valid_rows(logits, labels):
    """(P, K) logits and (P,) labels of the valid pixels (torch float64)."""
    valid = labels != IGNORE
    return torch.tensor(logits[valid], dtype=torch.float64), torch.tensor(labels[valid]).long()


def test_softmax_focal_matches_smp():
    logits, labels = index_case(2)
    valid = labels != IGNORE
    ours = value_and_grad(lambda z, y: losses.focal_loss(z, y, gamma=2.0), logits, labels)

    def reference(tensor):      # smp's softmax focal on the valid pixels, (P, K)
        rows = torch.movedim(tensor, 1, -1)[torch.tensor(valid)]
        return smp_functional.softmax_focal_loss_with_logits(
            rows, torch.tensor(labels[valid]).long(), gamma=2.0)

    assert_matches(ours, reference_value_and_grad(reference, logits))


def test_softmax_focal_with_class_weights_is_torch_weighted_nll_of_focal_terms():
    logits, labels = index_case(3)
    weights = (0.5, 1.0, 2.0, 1.5)
    ours = value_and_grad(lambda z, y: losses.focal_loss(z, y, gamma=1.5,
                                                         class_weights=weights), logits, labels)

    def reference(tensor):
        log_probs = F.log_softmax(tensor, dim=1)
        focal = (1 - log_probs.exp()) ** 1.5 * log_probs
        return F.nll_loss(focal, torch.tensor(labels).long(), ignore_index=IGNORE,
                          weight=torch.tensor(weights, dtype=torch.float64))

    assert_matches(ours, reference_value_and_grad(reference, logits))


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, labels = index_case(4)
    np.testing.assert_allclose(float(losses.focal_loss(logits, labels, gamma=0.0)),
                               float(losses.cross_entropy(logits, labels)), rtol=1e-6)


def test_sigmoid_focal_matches_smp_binary_per_channel():
    """smp's 'multilabel' mode cannot take ignored pixels (it indexes a channel with the
    (N, C, H, W) mask); its 'binary' mode per channel can. Whole pixels are ignored, so
    every channel has the same count and the mean of the channels' means is the mean."""
    logits, labels = channel_case(5)
    ours = value_and_grad(lambda z, y: losses.focal_loss(z, y, gamma=2.0, alpha=0.25),
                          logits, labels)
    loss = smp_losses.FocalLoss("binary", alpha=0.25, gamma=2.0, ignore_index=IGNORE)
    target = channels_first(labels).double()
    reference = reference_value_and_grad(
        lambda z: sum(loss(z[:, c], target[:, c]) for c in range(3)) / 3, logits)
    assert_matches(ours, reference)


def test_sigmoid_focal_with_ignored_elements_matches_smp_on_the_valid_ones():
    logits, labels = channel_case(6, per_element=True)
    valid = labels != IGNORE
    ours = value_and_grad(lambda z, y: losses.focal_loss(z, y, gamma=2.0, alpha=0.25),
                          logits, labels)

    def reference(tensor):
        elements = torch.movedim(tensor, 1, -1)[torch.tensor(valid)]
        return smp_functional.focal_loss_with_logits(
            elements, torch.tensor(labels[valid], dtype=torch.float64), gamma=2.0, alpha=0.25)

    assert_matches(ours, reference_value_and_grad(reference, logits))


# ----------------------------------------------------------------------------- BCE


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_bce_matches_smp_soft_bce(smoothing):
    """smp's smooth_factor s gives targets t (1 - s) + (1 - t) s; segjax's label smoothing
    eps is PyTorch's (eps / 2 per side of two outcomes): s = eps / 2. smp's mean divides by
    every element, ignored ones too, so its sum is divided by the valid count."""
    logits, labels = channel_case(7, per_element=True)
    count = float(np.sum(labels != IGNORE))
    ours = value_and_grad(lambda z, y: losses.binary_cross_entropy(
        z, y, label_smoothing=smoothing), logits, labels)
    loss = smp_losses.SoftBCEWithLogitsLoss(ignore_index=IGNORE, reduction="sum",
                                            smooth_factor=smoothing / 2 or None)
    reference = reference_value_and_grad(
        lambda z: loss(z, channels_first(labels).double()) / count, logits)
    assert_matches(ours, reference)


def test_bce_class_weights_and_binary_case_match_torch():
    logits, labels = channel_case(8, channels=2)
    weights = (0.25, 2.0)
    valid = labels != IGNORE
    ours = value_and_grad(lambda z, y: losses.binary_cross_entropy(z, y, class_weights=weights),
                          logits, labels)

    def reference(tensor):
        z = torch.movedim(tensor, 1, -1)
        per = F.binary_cross_entropy_with_logits(
            z, torch.tensor((labels == 1).astype(np.float64)), reduction="none")
        w = torch.tensor(weights, dtype=torch.float64) * torch.tensor(valid.astype(np.float64))
        return (per * w).sum() / w.sum()

    assert_matches(ours, reference_value_and_grad(reference, logits))


def test_binary_bce_of_one_channel_equals_two_class_cross_entropy():
    logits, labels = channel_case(9, channels=1)
    two_class = np.concatenate([np.zeros_like(logits), logits], axis=-1)
    index = np.where(labels[..., 0] == IGNORE, IGNORE, labels[..., 0])
    np.testing.assert_allclose(
        float(losses.binary_cross_entropy(logits, labels, label_smoothing=0.1)),
        float(losses.cross_entropy(two_class, index, label_smoothing=0.1)), rtol=1e-6)


# ----------------------------------------------------------------------------- region losses


def smp_mode(multilabel: bool) -> str:
    return "multilabel" if multilabel else "multiclass"


def smp_target(labels, multilabel: bool):
    return channels_first(labels) if multilabel else torch.tensor(labels).long()


def region_case(multilabel: bool, seed: int):
    return channel_case(seed) if multilabel else index_case(seed)


@pytest.mark.parametrize("multilabel", [False, True])
def test_dice_matches_smp(multilabel):
    """smp's Dice is its Tversky index at 0.5, 0.5: (I + s) / (I + (FP + FN) / 2 + s), so its
    smooth s is segjax's 2s in (2I + smooth) / (sum p + sum t + smooth)."""
    logits, labels = region_case(multilabel, 10)
    ours = value_and_grad(lambda z, y: losses.soft_dice_loss(
        z, y, num_classes=logits.shape[-1], smooth=1.0), logits, labels)
    loss = smp_losses.DiceLoss(smp_mode(multilabel), smooth=0.5, ignore_index=IGNORE)
    assert_matches(ours, reference_value_and_grad(
        lambda z: loss(z, smp_target(labels, multilabel)), logits))


@pytest.mark.parametrize("multilabel", [False, True])
def test_jaccard_matches_smp(multilabel):
    logits, labels = region_case(multilabel, 11)
    ours = value_and_grad(lambda z, y: losses.jaccard_loss(
        z, y, num_classes=logits.shape[-1], smooth=1.0), logits, labels)
    loss = smp_losses.JaccardLoss(smp_mode(multilabel), smooth=1.0, ignore_index=IGNORE)
    assert_matches(ours, reference_value_and_grad(
        lambda z: loss(z, smp_target(labels, multilabel)), logits))


@pytest.mark.parametrize("multilabel", [False, True])
def test_tversky_matches_smp(multilabel):
    logits, labels = region_case(multilabel, 12)
    ours = value_and_grad(lambda z, y: losses.tversky_loss(
        z, y, num_classes=logits.shape[-1], alpha=0.3, beta=0.7, smooth=1.0), logits, labels)
    loss = smp_losses.TverskyLoss(smp_mode(multilabel), smooth=1.0, ignore_index=IGNORE,
                                  alpha=0.3, beta=0.7)
    assert_matches(ours, reference_value_and_grad(
        lambda z: loss(z, smp_target(labels, multilabel)), logits))


@pytest.mark.parametrize("multilabel", [False, True])
def test_focal_tversky_is_the_mean_of_each_class_smp_tversky_to_the_gamma(multilabel):
    """smp raises the class mean to gamma; per class (classes=[c]) it is (1 - TI_c)^gamma."""
    logits, labels = region_case(multilabel, 13)
    classes = logits.shape[-1]
    ours = value_and_grad(lambda z, y: losses.focal_tversky_loss(
        z, y, num_classes=classes, gamma=0.75, alpha=0.3, beta=0.7, smooth=1.0), logits, labels)
    per_class = [smp_losses.TverskyLoss(smp_mode(multilabel), classes=[c], smooth=1.0,
                                        ignore_index=IGNORE, alpha=0.3, beta=0.7, gamma=0.75)
                 for c in range(classes)]
    assert_matches(ours, reference_value_and_grad(
        lambda z: sum(loss(z, smp_target(labels, multilabel)) for loss in per_class) / classes,
        logits))


def test_binary_focal_tversky_matches_the_authors_formula():
    """nabsabraham/focal-tversky-unet losses.py `focal_tversky` (alpha 0.7 on false
    negatives, 1 - alpha on false positives, smooth 1, gamma 0.75, all pixels flattened),
    restated in NumPy on the valid pixels."""
    logits, labels = channel_case(14, channels=1)
    valid = labels != IGNORE
    y_pred = 1.0 / (1.0 + np.exp(-logits[valid].astype(np.float64)))
    y_true = labels[valid].astype(np.float64)
    true_pos = np.sum(y_true * y_pred)
    false_neg = np.sum(y_true * (1 - y_pred))
    false_pos = np.sum((1 - y_true) * y_pred)
    tversky = (true_pos + 1) / (true_pos + 0.7 * false_neg + 0.3 * false_pos + 1)
    expected = (1 - tversky) ** 0.75
    ours = losses.focal_tversky_loss(logits, labels, num_classes=1, alpha=0.3, beta=0.7,
                                     smooth=1.0, gamma=0.75)
    assert abs(float(ours) - expected) <= RTOL * expected


def test_tversky_reduces_to_dice_and_jaccard():
    logits, labels = index_case(15)
    kwargs = dict(num_classes=K, smooth=1.0)
    dice = losses.soft_dice_loss(logits, labels, num_classes=K, smooth=2.0)
    np.testing.assert_allclose(float(losses.tversky_loss(logits, labels, alpha=0.5, beta=0.5,
                                                         **kwargs)), float(dice), rtol=1e-6)
    np.testing.assert_allclose(float(losses.tversky_loss(logits, labels, alpha=1.0, beta=1.0,
                                                         **kwargs)),
                               float(losses.jaccard_loss(logits, labels, **kwargs)), rtol=1e-6)


# ----------------------------------------------------------------------------- Lovasz


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_softmax_matches_smp(per_image):
    logits, labels = index_case(16)
    ours = value_and_grad(lambda z, y: losses.lovasz_softmax_loss(z, y, per_image=per_image),
                          logits, labels)
    loss = smp_losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=IGNORE)
    assert_matches(ours, reference_value_and_grad(
        lambda z: loss(z, torch.tensor(labels).long()), logits, torch.float32))


def test_lovasz_softmax_averages_present_classes_only():
    logits, labels = index_case(17)
    labels[labels == 2] = 3                       # class 2 absent from the labels
    ours = value_and_grad(losses.lovasz_softmax_loss, logits, labels)
    loss = smp_losses.LovaszLoss("multiclass", ignore_index=IGNORE)
    assert_matches(ours, reference_value_and_grad(
        lambda z: loss(z, torch.tensor(labels).long()), logits, torch.float32))


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_hinge_matches_smp_per_channel(per_image):
    logits, labels = channel_case(18, per_element=True)
    ours = value_and_grad(lambda z, y: losses.lovasz_hinge_loss(z, y, per_image=per_image),
                          logits, labels)
    loss = smp_losses.LovaszLoss("binary", per_image=per_image, ignore_index=IGNORE)

    def reference(tensor):
        target = channels_first(labels)
        return sum(loss(tensor[:, c], target[:, c]) for c in range(labels.shape[-1])) / 3

    assert_matches(ours, reference_value_and_grad(reference, logits, torch.float32))


# ----------------------------------------------------------------------------- OHEM


def hrnet_ohem(score, target, ignore_label, thres, min_kept, weight=None):
    """HRNet-Semantic-Segmentation lib/core/criterion.py, OhemCrossEntropy._ohem_forward
    (MIT licence, Copyright (c) Microsoft, written by Ke Sun), copied without the
    resize branch (sizes agree here) and with its constructor's arguments inlined."""
    min_kept = max(1, min_kept)
    criterion = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_label,
                                          reduction='none')
    pred = F.softmax(score, dim=1)
    pixel_losses = criterion(score, target).contiguous().view(-1)
    mask = target.contiguous().view(-1) != ignore_label

    tmp_target = target.clone()
    tmp_target[tmp_target == ignore_label] = 0
    pred = pred.gather(1, tmp_target.unsqueeze(1))
    pred, ind = pred.contiguous().view(-1,)[mask].contiguous().sort()
    min_value = pred[min(min_kept, pred.numel() - 1)]
    threshold = max(min_value, thres)

    pixel_losses = pixel_losses[mask][ind]
    pixel_losses = pixel_losses[pred < threshold]
    return pixel_losses.mean()


@pytest.mark.parametrize("threshold,min_kept,weighted", [
    (0.7, 20, False),      # the threshold decides (more than min_kept are below it)
    (0.2, 60, False),      # the minimum kept decides
    (0.5, 10, True)])
def test_ohem_matches_hrnet(threshold, min_kept, weighted):
    logits, labels = index_case(19)
    weights = (0.5, 1.0, 2.0, 1.5) if weighted else None
    ours = value_and_grad(lambda z, y: losses.ohem_cross_entropy(
        z, y, threshold=threshold, min_kept=min_kept, class_weights=weights), logits, labels)
    reference = reference_value_and_grad(lambda z: hrnet_ohem(
        z, torch.tensor(labels).long(), IGNORE, threshold, min_kept,
        None if weights is None else torch.tensor(weights, dtype=torch.float64)), logits)
    assert_matches(ours, reference)
    # min_kept above the pixel count keeps every pixel but the easiest: a larger mean
    kept = losses.ohem_cross_entropy(logits, labels, threshold=0.0, min_kept=10**9)
    assert float(kept) > float(losses.cross_entropy(logits, labels))


# ----------------------------------------------------------------------------- boundary


def kervadec_one_hot2dist(seg: np.ndarray, resolution=None) -> np.ndarray:
    """LIVIAETS/boundary-loss utils.py `one_hot2dist` (MIT licence, Copyright (c) 2023 Hoel
    Kervadec), copied without its one-hot assertion (ignored pixels are all-zero here) and
    with `np.bool` (removed from NumPy) as `bool`; eucl_distance is scipy's EDT."""
    K: int = len(seg)

    res = np.zeros_like(seg, dtype=None)
    for k in range(K):
        posmask = seg[k].astype(bool)

        if posmask.any():
            negmask = ~posmask
            res[k] = ndimage.distance_transform_edt(negmask, sampling=resolution) * negmask \
                - (ndimage.distance_transform_edt(posmask, sampling=resolution) - 1) * posmask
        # The idea is to leave blank the negative classes
        # since this is one-hot encoded, another class will supervise that pixel

    return res


def kervadec_surface_loss(probs, dist_maps, idc, valid):
    """Their SurfaceLoss: einsum of probabilities and distance maps of classes `idc`, mean;
    the mean taken over valid pixels only (segjax's ignore rule)."""
    pc = probs[:, idc, ...].type(torch.float64)
    dc = dist_maps[:, idc, ...].type(torch.float64)
    multipled = torch.einsum("bk...,bk...->bk...", pc, dc)
    mask = valid[:, None].expand_as(multipled)
    return multipled[mask].mean()


@pytest.mark.parametrize("multilabel", [False, True])
def test_boundary_loss_matches_kervadec(multilabel):
    logits, labels = region_case(multilabel, 20)
    if multilabel:
        onehot = np.moveaxis(labels == 1, -1, 1).astype(np.float64)
        valid = torch.tensor(labels[..., 0] != IGNORE)
        idc = list(range(labels.shape[-1]))
    else:
        onehot = np.moveaxis(np.eye(K)[np.where(labels == IGNORE, 0, labels)]
                             * (labels != IGNORE)[..., None], -1, 1)
        valid = torch.tensor(labels != IGNORE)
        idc = list(range(1, K))
    dist = torch.tensor(np.stack([kervadec_one_hot2dist(image) for image in onehot]))

    def reference(tensor):
        probs = torch.sigmoid(tensor) if multilabel else F.softmax(tensor, dim=1)
        return kervadec_surface_loss(probs, dist, idc, valid)

    ours = value_and_grad(losses.boundary_loss, logits, labels)
    assert_matches(ours, reference_value_and_grad(reference, logits))


def test_boundary_loss_on_a_volume_with_spacing():
    logits, labels = index_case(21, classes=3, shape=(1, 5, 6, 7))
    spacing = (2.5, 1.0, 0.75)
    onehot = np.moveaxis(np.eye(3)[np.where(labels == IGNORE, 0, labels)]
                         * (labels != IGNORE)[..., None], -1, 1)
    dist = torch.tensor(kervadec_one_hot2dist(onehot[0], resolution=spacing)[None])
    valid = torch.tensor(labels != IGNORE)
    ours = value_and_grad(lambda z, y: losses.boundary_loss(z, y, spacing=spacing),
                          logits, labels)
    assert_matches(ours, reference_value_and_grad(
        lambda z: kervadec_surface_loss(F.softmax(z, dim=1), dist, [1, 2], valid), logits))


# ----------------------------------------------------------------------------- ignore index


NO_LABELS = {"center_mse", "offset_l1"}   # panoptic: weights are 0 on ignored pixels
CHANNEL_ONLY = {"bce", "lovasz_hinge"}
INDEX_ONLY = {"cross_entropy", "dice_ce", "lovasz_softmax", "ohem_cross_entropy",
              "bootstrapped_cross_entropy"}


def loss_config(name: str):
    config = base_config().loss
    config.name = name
    config.ohem.min_kept = 10
    config.boundary.include_background = True
    return config


def term_value(name, logits, labels, batch_extra=None):
    batch = {"label": jnp.asarray(labels), **(batch_extra or {})}
    value, _ = losses.segmentation_loss({"logits": jnp.asarray(logits)}, batch,
                                        loss_config(name), num_classes=logits.shape[-1],
                                        ignore_index=IGNORE)
    return value


def ignore_cases(name):
    if name not in INDEX_ONLY:
        yield "channels", channel_case(22, per_element=True)
    if name not in CHANNEL_ONLY:
        yield "indices", index_case(22)


def test_every_registered_loss_is_listed_here():
    assert set(registry.names("loss")) - NO_LABELS == (
        CHANNEL_ONLY | INDEX_ONLY | {"dice", "jaccard", "tversky", "focal_tversky", "focal",
                                    "boundary"})


@pytest.mark.parametrize("name", sorted(set(registry.names("loss")) - NO_LABELS))
def test_ignored_pixels_do_not_count_in_any_loss(name):
    """Whatever the logits at ignored pixels, the loss and its gradient elsewhere are the
    same, and their gradient is zero; labelling them instead changes the loss."""
    for _, (logits, labels) in ignore_cases(name):
        ignored = labels == IGNORE
        if logits.ndim != labels.ndim:
            ignored_logits = np.broadcast_to(ignored[..., None], logits.shape)
        else:
            ignored_logits = ignored
        extra = ({"semantic_weight": jnp.asarray(np.where(ignored, 0.0, 1.0), jnp.float32)}
                 if name == "bootstrapped_cross_entropy" else None)
        value, grad = jax.value_and_grad(lambda z: term_value(name, z, labels, extra))(
            jnp.asarray(logits))
        scrambled = np.where(ignored_logits, 10 * np.random.default_rng(1).standard_normal(
            logits.shape), logits).astype(np.float32)
        value2, grad2 = jax.value_and_grad(lambda z: term_value(name, z, labels, extra))(
            jnp.asarray(scrambled))
        np.testing.assert_allclose(float(value2), float(value), rtol=1e-6)
        assert np.all(np.asarray(grad)[ignored_logits] == 0)
        np.testing.assert_allclose(np.asarray(grad2), np.asarray(grad), rtol=1e-5, atol=1e-9)
        if name == "bootstrapped_cross_entropy":
            continue  # its ignore is the zero semantic weight, which the labels do not change
        relabelled = np.where(labels == IGNORE, 1, labels)
        assert abs(float(term_value(name, logits, relabelled, extra)) - float(value)) > 1e-4

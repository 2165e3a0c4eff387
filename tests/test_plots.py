"""segjax.plots: the figures hold the pictures and numbers they claim to show."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from segjax import plots, visualize  # noqa: E402

COLOURS = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)


def _image_data(axis) -> np.ndarray:
    (image,) = axis.get_images()
    return np.asarray(image.get_array())


def _example(seed: int, labelled: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    example = {"image": rng.integers(0, 256, (8, 10, 1), dtype=np.uint8), "name": f"x{seed}.png"}
    if labelled:
        example["label"] = rng.integers(0, 3, (8, 10)).astype(np.int32)
    return example


def test_overlay_grid_rows_are_the_overlay_panels_split_by_column():
    examples = [_example(0), _example(1)]
    predictions = [np.random.default_rng(5 + i).integers(0, 3, (8, 10)) for i in range(2)]
    figure = plots.overlay_grid(examples, predictions, colours=COLOURS,
                                class_names=("a", "b", "c"))
    axes = figure.axes
    assert len(axes) == 6
    for row, (example, prediction) in enumerate(zip(examples, predictions)):
        panel = visualize.overlay_panel(example["image"], prediction, example["label"],
                                        colours=COLOURS, ignore_index=255)
        shown = np.concatenate([_image_data(axes[3 * row + c]) for c in range(3)], axis=1)
        np.testing.assert_array_equal(shown, panel)
    assert axes[0].get_title() == "x0: image"
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["a", "b", "c"]


def test_overlay_grid_without_labels_has_two_columns_and_caps_rows():
    examples = [_example(i, labelled=False) for i in range(6)]
    predictions = [np.zeros((8, 10), np.int32)] * 6
    figure = plots.overlay_grid(examples, predictions, colours=COLOURS, max_rows=2)
    shown = [axis for axis in figure.axes if axis.get_images()]
    assert len(shown) == 4
    np.testing.assert_array_equal(_image_data(shown[1]),
                                  visualize.overlay(examples[0]["image"], predictions[0], COLOURS))
    with pytest.raises(ValueError, match="no \\(example, prediction\\) pairs"):
        plots.overlay_grid([], [], colours=COLOURS)


def test_training_curves_plot_each_key_against_its_steps():
    records = [{"step": 2, "train/loss": 1.0, "train/learning_rate": 0.1},
               {"step": 4, "train/loss": 0.5, "train/learning_rate": 0.05},
               {"step": 4, "val/miou": 0.25}]
    figure = plots.training_curves(records)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["train/loss", "train/learning_rate", "val/miou"]
    (loss_line,) = figure.axes[0].get_lines()
    np.testing.assert_array_equal(loss_line.get_xdata(), [2, 4])
    np.testing.assert_array_equal(loss_line.get_ydata(), [1.0, 0.5])
    with pytest.raises(ValueError, match="val/pq"):
        plots.training_curves(records, keys=["val/pq"])


def test_compare_runs_draws_each_run_and_its_last_value():
    runs = {"built-in": [{"step": 1, "train/loss": 2.0}, {"step": 2, "train/loss": 1.0},
                         {"step": 2, "val/miou": 0.4}],
            "new": [{"step": 1, "train/loss": 3.0}, {"step": 2, "val/miou": 0.3},
                    {"step": 4, "train/loss": 0.5}, {"step": 4, "val/miou": 0.6}]}
    figure = plots.compare_runs(runs)
    lines, bars = figure.axes
    assert [line.get_label() for line in lines.get_lines()] == ["built-in", "new"]
    np.testing.assert_array_equal(lines.get_lines()[1].get_xdata(), [1, 4])
    np.testing.assert_allclose([patch.get_height() for patch in bars.patches], [0.4, 0.6])
    with pytest.raises(ValueError, match="run 'x' has no records of val/miou"):
        plots.compare_runs({"x": [{"step": 1, "train/loss": 1.0}]})


def test_per_class_iou_bars_are_the_percentages_and_nan_is_marked():
    result = {"per_class_iou": [0.5, float("nan"), 0.25], "miou": 0.375}
    figure = plots.per_class_iou(result, ("road", "sky", "car"), colours=COLOURS)
    axis = figure.axes[0]
    widths = [patch.get_width() for patch in axis.patches]
    np.testing.assert_allclose(widths, [50.0, 0.0, 25.0])
    texts = [text.get_text() for text in axis.texts]
    assert texts == ["50.0", "n/a", "25.0"]
    assert [label.get_text() for label in axis.get_yticklabels()] == ["road", "sky", "car"]
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        plots.per_class_iou(result, ("road", "sky"))


def test_volume_sections_show_the_sections_along_the_axis():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(5, 6, 7, 1)).astype(np.float32)
    prediction = rng.integers(0, 3, (5, 6, 7))
    figure = plots.volume_sections(volume, prediction, prediction, colours=COLOURS, count=3,
                                   axis=0)
    assert len(figure.axes) == 9                     # image, prediction, label x 3 sections
    titles = [axis.get_title() for axis in figure.axes]   # row-major: rows image/prediction/label
    assert titles[:3] == ["image, section 0 (axis 0)", "image, section 2 (axis 0)",
                          "image, section 4 (axis 0)"]
    assert titles[7] == "label, section 2 (axis 0)"
    middle = visualize.to_uint8(volume[2])
    np.testing.assert_array_equal(_image_data(figure.axes[1]), np.repeat(middle, 3, -1))
    np.testing.assert_array_equal(_image_data(figure.axes[4]),
                                  visualize.overlay(middle, prediction[2], COLOURS))
    with pytest.raises(ValueError, match="\\(D, H, W\\) prediction"):
        plots.volume_sections(volume, prediction[0], colours=COLOURS)


def test_orthogonal_views_cut_through_the_centre():
    volume = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8, 1)
    prediction = np.zeros((4, 6, 8), np.int32)
    prediction[:, 3, :] = 1                           # a plane of class 1 at H = 3
    figure = plots.orthogonal_views(volume, prediction, colours=COLOURS,
                                    spacing=(4.0, 1.0, 1.0))
    axial, coronal, sagittal = (_image_data(axis) for axis in figure.axes)
    assert axial.shape[:2] == (6, 8) and coronal.shape[:2] == (4, 8)
    assert sagittal.shape[:2] == (4, 6)
    np.testing.assert_array_equal(coronal, visualize.overlay(
        visualize.to_uint8(volume[:, 3]), np.ones((4, 8), np.int32), COLOURS))
    assert figure.axes[1].get_aspect() == 4.0


def test_class_voxels_subsample_large_predictions():
    prediction = np.zeros((4, 70, 70), np.int32)
    prediction[1:3, 10:20, 30:40] = 2
    figure = plots.class_voxels(prediction, 2, max_size=32)
    title = figure.axes[0].get_title()
    assert "(strides (1, 3, 3))" in title
    expected = int((prediction[::1, ::3, ::3] == 2).sum())
    assert f"{expected} voxels" in title and expected > 0


def test_panoptic_grid_colours_predicted_and_true_instances():
    label = np.zeros((6, 6), np.int32)
    label[:, 3:] = 1
    instance = np.zeros((6, 6), np.int32)
    instance[:3, 3:], instance[3:, 3:] = 1, 2
    example = {"image": np.zeros((6, 6, 1), np.uint8), "label": label, "instance": instance,
               "name": "s.png"}
    predicted = {"panoptic_class": label, "panoptic_instance": np.where(label == 1, 1, 0)}
    figure = plots.panoptic_grid([example], [predicted], colours=COLOURS)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["s", "predicted (1 instances)", "ground truth (2 instances)"]
    np.testing.assert_array_equal(_image_data(figure.axes[2]),
                                  visualize.panoptic_colours(label, instance, COLOURS))

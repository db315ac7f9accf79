"""What the figures draw: bands equal the tables' bootstrap interval, heatmap paths pass through the named
cells, faceted figures have one column per facet and one legend entry per label."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from optbench import plotting, statistics  # noqa: E402
from optbench.studies import common  # noqa: E402


def _frame():
    rng = np.random.default_rng(1)
    rows = []
    for label in ("Adam", "SGD+momentum"):
        for seed in range(3):
            for epoch in range(1, 5):
                rows.append({"label": label, "seed": seed, "epoch": epoch, "architecture": "vgg16",
                             "train_loss": float(np.exp(-epoch + 0.3 * rng.standard_normal())),
                             "test_accuracy": float(np.clip(0.2 * epoch + 0.05 * rng.standard_normal(), 0, 1))})
    frame = pd.DataFrame(rows)
    return pd.concat([frame, frame.assign(architecture="resnet18", test_accuracy=frame["test_accuracy"] * 0.9)], ignore_index=True)


@pytest.mark.parametrize("log_y", [False, True])
def test_drawn_bands_match_the_interval_at_every_epoch(log_y):
    frame = _frame()
    frame = frame[(frame["architecture"] == "vgg16") & (frame["label"] == "Adam")]
    fig, ax = plt.subplots()
    plotting.metric_curves(frame, "train_loss", ax=ax, log_y=log_y, legend=False)
    vertices = ax.collections[0].get_paths()[0].vertices
    for epoch, losses in frame.groupby("epoch")["train_loss"]:
        values = np.log(losses) if log_y else losses
        _, low, high = statistics.mean_interval(values)
        if log_y:  # seaborn bootstraps in log space and draws the band back on the data's scale
            low, high = np.exp(low), np.exp(high)
        drawn = vertices[np.isclose(vertices[:, 0], epoch), 1]
        assert min(drawn) == pytest.approx(low) and max(drawn) == pytest.approx(high)
    plt.close(fig)


def test_heatmap_path_runs_through_the_named_cells():
    table = pd.DataFrame([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], index=["1/2", "1/16"], columns=["0.001", "0.01", "0.1"])
    fig, ax = plt.subplots()
    plotting.heatmap(table, ax=ax, path=[("1/2", "0.001"), ("1/16", "0.1")], path_label="best")
    line = next(line for line in ax.lines if line.get_label() == "best")
    assert list(line.get_xdata()) == [0.5, 2.5] and list(line.get_ydata()) == [0.5, 1.5]
    # the named cells are outlined, and every annotation sits above the line on its cell's colour
    outlined = {(patch.get_x(), patch.get_y()) for patch in ax.patches if patch.get_edgecolor()[:3] == (0, 0, 0)}
    assert outlined == {(0, 0), (2, 1)}
    mesh = ax.collections[0]
    for text in ax.texts:
        x, y = text.get_position()
        assert text.get_zorder() > line.get_zorder()
        assert tuple(text.get_bbox_patch().get_facecolor()) == tuple(mesh.get_facecolors()[int(y) * 3 + int(x)])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["best"]
    plt.close(fig)


def test_faceted_figure_has_a_column_per_facet_and_one_legend():
    fig = plotting.faceted_curve_figure(_frame(), ["train_loss", "test_accuracy"], facet="architecture",
                                        facet_order=["vgg16", "resnet18"], facet_titles=str.upper, log_y=["train_loss"])
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels[:2]] == ["VGG16", "RESNET18"] and len(panels) == 4
    assert panels[0].get_yscale() == "log" and panels[2].get_yscale() == "linear"
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1 and [text.get_text() for text in legends[0].get_texts()] == ["Adam", "SGD+momentum"]
    plt.close(fig)


def test_sensitivity_figure_shades_the_range_within_the_tolerance():
    rows = [{"label": label, "lr": lr, "seed": seed, "status": "finished", "final_accuracy": accuracy}
            for label, table in (("Adam", {0.001: 0.9, 0.01: 0.895, 0.1: 0.5}), ("SGD+momentum", {0.001: 0.3, 0.01: 0.7, 0.1: 0.9}))
            for lr, accuracy in table.items() for seed in (0, 1)]
    runs = pd.DataFrame(rows)
    sensitivity = common.lr_sensitivity(runs, tolerance=0.01)
    fig = plotting.lr_sensitivity_figure(runs, sensitivity, 0.01)
    adam = next(ax for ax in fig.axes if ax.get_title() == "Adam")
    shaded = adam.patches[0]
    # the shading spans 0.001 to 0.01, widened a little so single points show
    assert shaded.get_x() == pytest.approx(0.001 / 1.25) and shaded.get_x() + shaded.get_width() == pytest.approx(0.01 * 1.25)
    assert adam.get_xscale() == "log" and adam.lines[-1].get_ydata()[0] == pytest.approx(89.0)
    plt.close(fig)


def test_log_axes_below_a_decade_label_only_the_twos_and_fives():
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.plot([1, 2], [0.3, 2.5])
    ax.set_ylim(0.3, 2.5)
    plotting.label_log_axis(ax)
    fig.canvas.draw()
    low, high = ax.get_ylim()

    def shown(locations, formatter):
        return {formatter(value, 0) for value in locations if low <= value <= high} - {""}

    assert shown(ax.yaxis.get_minorticklocs(), ax.yaxis.get_minor_formatter()) == {"0.5", "2"}
    assert shown(ax.yaxis.get_majorticklocs(), ax.yaxis.get_major_formatter()) == {"1"}
    plt.close(fig)

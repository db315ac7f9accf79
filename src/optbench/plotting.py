"""The chapters' figures: curves over seeds, small multiples by optimizer family, cost bars, heatmaps.

Every curve takes its look from :mod:`optbench.styles`. Bands and error bars are the tables' 95%
percentile-bootstrap interval of the mean over seeds (:func:`band`, from :mod:`optbench.statistics`),
handed to seaborn as its ``errorbar``; on a log axis seaborn hands them log values, so a band never
reaches the axis floor. Accuracies and errors are shown in percent.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
from matplotlib.patches import Rectangle
import numpy as np
import pandas as pd
import seaborn as sns

from . import styles
from .statistics import mean_interval

#: figures with more curves than this become small multiples, one panel per family
MAX_CURVES_PER_PANEL = 6
X_LABELS = {"epoch": "epoch", "grad_evals": "gradient evaluations", "elapsed_seconds": "wall-clock seconds"}
Y_LABELS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy (%)",
    "test_error": "test error (%)",
    "train_accuracy": "training accuracy (%)",
    "validation_accuracy": "validation accuracy (%)",
    "seconds_per_epoch": "seconds per epoch",
}
#: metrics stored as fractions and shown in percent
PERCENT_METRICS = ("test_accuracy", "test_error", "train_accuracy", "validation_accuracy")


def band(values) -> tuple[float, float]:
    """A band or error bar: the 95% percentile-bootstrap interval of the mean, computed as the tables' is
    (:func:`optbench.statistics.mean_interval`, scipy's vectorized bootstrap, which is about a hundred times
    faster than seaborn's resampling loop)."""
    _, low, high = mean_interval(values)
    return low, high


def _percent(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    return frame.assign(**{metric: frame[metric] * 100.0}) if metric in PERCENT_METRICS else frame


def metric_curves(frame: pd.DataFrame, y: str, x: str = "epoch", hue: str = "label", ax=None, log_y: bool = False,
                  highlight=None, legend: bool = True):
    """Mean of ``y`` against ``x`` per ``hue`` with a 95% band over seeds.

    With ``highlight`` (a set of labels), the other curves are drawn thin and grey behind, as context.
    Runs are aligned by epoch: for another ``x`` (seconds, evaluations) the x value is the mean over seeds.
    """
    ax = ax if ax is not None else plt.gca()
    frame = _percent(frame, y)
    if x != "epoch":
        frame = frame.assign(**{x: frame.groupby([hue, "epoch"], sort=False)[x].transform("mean")})
    if log_y:
        # set before plotting: seaborn then averages and bootstraps in log space
        ax.set_yscale("log")
    labels = list(dict.fromkeys(frame[hue]))
    shown = [label for label in labels if highlight is None or label in highlight]
    context = [label for label in labels if label not in shown]
    for label in context:
        # the means only, as on the foreground's scale (geometric on a log axis)
        values = frame[frame[hue] == label]
        values = values.assign(**{y: np.log(values[y]) if log_y else values[y]}).groupby(x, sort=True)[y].mean()
        ax.plot(values.index, np.exp(values) if log_y else values, color=styles.CONTEXT_GREY, linewidth=0.9, zorder=1)
    foreground = frame[frame[hue].isin(shown)]
    points = foreground["epoch"].nunique() if "epoch" in foreground else 10
    sns.lineplot(data=foreground, x=x, y=y, hue=hue, style=hue, hue_order=shown, style_order=shown,
                 palette=styles.palette(shown), dashes=styles.dashes(shown), markers=styles.markers(shown),
                 markevery=max(1, math.ceil(points / 8)), markersize=6, linewidth=1.6, errorbar=band, err_kws={"alpha": 0.15},
                 ax=ax, legend=legend)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(Y_LABELS.get(y, y))
    return ax


def mark_diverged(ax, frame: pd.DataFrame, y: str, x: str = "epoch", hue: str = "label", annotate: bool = True) -> list[str]:
    """Mark each diverged run of ``frame`` on ``ax``: a cross in its label's colour at its last finite point (at
    the top of the axis when it has none), with "diverged, epoch n"; return one phrase per marked run.

    Call after the curves are drawn (the axis limits are final). Curves of a diverged run end where it did;
    this keeps the end from passing for a finished run.
    """
    if "status" not in frame:
        return []
    frame = _percent(frame, y)
    notes = []
    for (label, run_id), run in frame[frame["status"] == "diverged"].groupby([hue, "run_id"], sort=False):
        run = run.sort_values("epoch")
        epoch = int(run["diverged_epoch"].iloc[0])
        finite = run[np.isfinite(run[y].to_numpy(dtype=float))]
        if len(finite):
            point_x, point_y = float(finite[x].iloc[-1]), float(finite[y].iloc[-1])
        else:
            point_x, point_y = float(run[x].iloc[-1]), ax.get_ylim()[1]
        color = styles.style(label).color
        ax.plot([point_x], [point_y], marker="X", markersize=9, color=color, markeredgecolor="white", linestyle="none",
                zorder=5, clip_on=False)
        if annotate:
            ax.annotate(f"diverged, epoch {epoch}", (point_x, point_y), xytext=(4, -10), textcoords="offset points",
                        fontsize="x-small", color=color)
        seed = f" seed {int(run['seed'].iloc[0])}" if "seed" in run else ""
        notes.append(f"{label}{seed} diverged in epoch {epoch}")
    return notes


def family_panels(labels, look=None) -> list[tuple[str, list[str]]]:
    """(title, labels) of each panel: one panel for few optimizers, else one per family present.

    ``look(label)`` gives a label's style (default :func:`optbench.styles.style`; the summary chapter passes
    the styles the chapters stored).
    """
    labels = list(labels)
    if len(labels) <= MAX_CURVES_PER_PANEL:
        return [("", labels)]
    look = look if look is not None else styles.style
    families = {}
    for item in labels:
        families.setdefault(look(item).family, []).append(item)
    return [(family, members) for family, members in families.items()]


def curve_figure(frame: pd.DataFrame, metrics: list[str], x: str = "epoch", hue: str = "label", log_y=(),
                 panels: list[tuple[str, list[str]]] | None = None, columns: int = 2,
                 panel_width: float = 3.6, panel_height: float = 2.8):
    """The chapters' curve figure.

    Up to six optimizers: one panel per metric side by side, one legend below. More: small multiples, one
    panel per family (:func:`family_panels`, or the given ``panels``), each family in colour against the
    others in grey with its own legend under its panel, so every curve can be told apart and followed. With
    one metric the panels wrap into ``columns`` columns (readable on a phone); with several, each metric is
    a row and each panel a column.
    """
    labels = list(dict.fromkeys(frame[hue]))
    panels = panels if panels is not None else family_panels(labels)
    if len(panels) == 1:
        return _metric_row(frame, metrics, x, hue, log_y, panel_width, panel_height)
    if len(metrics) != 1:
        return _metric_by_panel_grid(frame, metrics, x, hue, log_y, panels, panel_width, panel_height)
    metric = metrics[0]
    fig, axes = small_multiples(panels, columns, panel_width, panel_height, sharey=True)
    for (title, members), (ax, legend_ax) in zip(panels, axes):
        metric_curves(frame, metric, x=x, hue=hue, ax=ax, log_y=metric in log_y, highlight=set(members), legend=True)
        handles, names = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        if metric in log_y:
            label_log_axis(ax)
        ax.set_title(title, fontsize="medium")
        legend_ax.legend(handles, names, loc="upper center", frameon=False, ncol=1, fontsize="small")
    fig.tight_layout()
    return fig


def small_multiples(panels: list[tuple[str, list[str]]], columns: int = 2, panel_width: float = 3.6,
                    panel_height: float = 2.8, sharey: bool = True):
    """A figure of small multiples: one axis per panel, wrapped into ``columns`` columns, each with a legend
    axis under it as tall as its row's longest legend (one line per member). Returns (figure, [(axis, legend
    axis)] in panel order). The panels share the x axis, and the y axis with ``sharey``, so they compare at
    a glance; the legend axes are switched off, ready for a legend."""
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    legend_lines = [max(len(members) for _, members in panels[row * columns:(row + 1) * columns]) for row in range(rows)]
    legend_heights = [0.2 * lines + 0.25 for lines in legend_lines]
    fig = plt.figure(figsize=(panel_width * columns, panel_height * rows + sum(legend_heights)))
    layout = fig.add_gridspec(2 * rows, columns, height_ratios=[value for row in range(rows) for value in (panel_height, legend_heights[row])])
    first = None
    axes = []
    for position in range(len(panels)):
        row, column = divmod(position, columns)
        ax = fig.add_subplot(layout[2 * row, column], sharex=first, sharey=first if sharey else None)
        first = first or ax
        legend_ax = fig.add_subplot(layout[2 * row + 1, column])
        legend_ax.axis("off")
        axes.append((ax, legend_ax))
    return fig, axes


def _metric_by_panel_grid(frame, metrics, x, hue, log_y, panels, panel_width, panel_height):
    rows, columns = len(metrics), len(panels)
    legend_height = 0.2 * max(len(members) for _, members in panels) + 0.3
    fig = plt.figure(figsize=(panel_width * columns, panel_height * rows + legend_height))
    layout = fig.add_gridspec(rows + 1, columns, height_ratios=[panel_height] * rows + [legend_height])
    for row, metric in enumerate(metrics):
        # each metric's row shares its axis, so the panels compare at a glance
        first = None
        for column, (title, members) in enumerate(panels):
            ax = fig.add_subplot(layout[row, column], sharey=first)
            first = first or ax
            metric_curves(frame, metric, x=x, hue=hue, ax=ax, log_y=metric in log_y, highlight=set(members), legend=True)
            handles, names = ax.get_legend_handles_labels()
            ax.get_legend().remove()
            if metric in log_y:
                label_log_axis(ax)
            _label_grid_axis(ax, row, column, rows, title)
            if row == rows - 1:
                legend_ax = fig.add_subplot(layout[rows, column])
                legend_ax.axis("off")
                legend_ax.legend(handles, names, loc="upper center", frameon=False, ncol=1, fontsize="small")
    fig.tight_layout()
    return fig


def _label_grid_axis(ax, row: int, column: int, rows: int, title: str) -> None:
    """In a metric × panel grid only the first column names the y axis, the top row the panel, the bottom
    row the x axis: the rows share their y axis, the columns their x quantity."""
    if column > 0:
        ax.set_ylabel("")
        ax.tick_params(labelleft=False)
    if row == 0:
        ax.set_title(title, fontsize="medium")
    if row < rows - 1:
        ax.set_xlabel("")


def _metric_row(frame, metrics, x, hue, log_y, panel_width, panel_height):
    labels = list(dict.fromkeys(frame[hue]))
    legend_height = 0.2 * math.ceil(len(labels) / 3) + 0.3
    fig = plt.figure(figsize=(panel_width * len(metrics), panel_height + legend_height))
    layout = fig.add_gridspec(2, len(metrics), height_ratios=[panel_height, legend_height])
    for column, metric in enumerate(metrics):
        ax = fig.add_subplot(layout[0, column])
        metric_curves(frame, metric, x=x, hue=hue, ax=ax, log_y=metric in log_y, legend=True)
        handles, names = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        if metric in log_y:
            label_log_axis(ax)
    legend_ax = fig.add_subplot(layout[1, :])
    legend_ax.axis("off")
    legend_ax.legend(handles, names, loc="upper center", frameon=False, ncol=min(3, len(names)), fontsize="small")
    fig.tight_layout()
    return fig


def label_log_axis(ax, axis: str = "y") -> None:
    """Plain numbers (0.1, 1, 10) on a log axis, never a single label: on one spanning less than a decade the
    minor ticks at 2 and 5 times a power of ten are labelled too, on one spanning less than two the major
    ticks step 1-2-5; wider axes label their decades only, so labels never crowd."""
    plain = mticker.FuncFormatter(lambda value, _: f"{value:g}")
    target = ax.yaxis if axis == "y" else ax.xaxis
    decades = _decades(ax, axis)
    if 1 <= decades < 2:
        target.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(plain)
    if decades < 1:
        target.set_minor_formatter(mticker.FuncFormatter(
            lambda value, _: f"{value:g}" if value > 0 and round(value / 10 ** math.floor(math.log10(value)), 6) in (2, 5) else ""))
    else:
        target.set_minor_formatter(mticker.NullFormatter())


def _decades(ax, axis: str = "y") -> float:
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    return math.log10(high / low) if low > 0 and high > 0 else 0.0


def cost_bars(frame: pd.DataFrame, y: str = "seconds_per_epoch", x: str = "label", ax=None, order=None, reference_line: float | None = None):
    """Mean of ``y`` per ``x`` (one value per measurement round or run) with its 95% interval, in each label's colour."""
    ax = ax if ax is not None else plt.gca()
    order = order if order is not None else list(dict.fromkeys(frame[x]))
    sns.barplot(data=frame, x=y, y=x, hue=x, order=order, hue_order=order, palette=styles.palette(order), legend=False,
                errorbar=band, ax=ax, orient="h")
    ax.set_ylabel("")
    ax.set_xlabel(Y_LABELS.get(y, y))
    if reference_line is not None:
        ax.axvline(reference_line, color="black", linewidth=0.8, linestyle=(0, (4, 2)))
    return ax


def heatmap(table: pd.DataFrame, ax=None, annotations: pd.DataFrame | None = None, cmap: str = "cividis",
            path: list | None = None, path_label: str | None = None, **kwargs):
    """Heatmap of a 2-D table (rows × columns), annotated with ``annotations`` (strings) or the values.

    ``path``, a list of (row, column) labels of ``table``, outlines those cells (the best column of each row,
    say) and joins their centres by a line under the annotations, labelled ``path_label`` in a legend below.
    """
    ax = ax if ax is not None else plt.gca()
    annot = annotations.to_numpy() if annotations is not None else True
    sns.heatmap(table.astype(float), annot=annot, fmt="" if annotations is not None else ".3g", cmap=cmap, ax=ax,
                linewidths=0.5, **kwargs)
    if path:
        rows, columns = list(table.index), list(table.columns)
        mesh = ax.collections[0]
        mesh.update_scalarmappable()
        colours = mesh.get_facecolors()
        # the annotations sit on a patch of their cell's colour above the path, which stays followable between them
        for text in ax.texts:
            x, y = text.get_position()
            text.set_bbox({"boxstyle": "round,pad=0.15", "facecolor": colours[int(y) * len(columns) + int(x)], "edgecolor": "none"})
            text.set_zorder(5)
        for row, column in path:
            corner = (columns.index(column), rows.index(row))
            ax.add_patch(Rectangle(corner, 1, 1, fill=False, edgecolor="white", linewidth=4, zorder=3))
            ax.add_patch(Rectangle(corner, 1, 1, fill=False, edgecolor="black", linewidth=1.6, zorder=3.5))
        xs = [columns.index(column) + 0.5 for _, column in path]
        ys = [rows.index(row) + 0.5 for row, _ in path]
        # white under black stays visible on every colour of the map
        ax.plot(xs, ys, color="white", linewidth=4.5, solid_capstyle="round", zorder=4)
        ax.plot(xs, ys, color="black", linewidth=1.8, zorder=4.5, label=path_label)
        if path_label:
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False, fontsize="small")
    return ax


def faceted_curve_figure(frame: pd.DataFrame, metrics: list[str], facet: str, facet_order=None, facet_titles=None,
                         x: str = "epoch", hue: str = "label", log_y=(), panel_width: float = 2.6, panel_height: float = 2.3):
    """Curves in small multiples by the values of column ``facet`` (an architecture, a learning rate): one row
    per metric, one column per facet value, every panel showing every label of its data; one legend below.

    ``facet_titles`` maps a facet value to its column title (default ``str``). Each row shares its y axis, so
    the panels compare at a glance.
    """
    facet_order = list(facet_order) if facet_order is not None else list(dict.fromkeys(frame[facet]))
    labels = list(dict.fromkeys(frame[hue]))
    rows, columns = len(metrics), len(facet_order)
    legend_rows = math.ceil(len(labels) / min(3, max(2, columns)))
    legend_height = 0.24 * legend_rows + 0.3
    fig = plt.figure(figsize=(panel_width * columns, panel_height * rows + legend_height))
    layout = fig.add_gridspec(rows + 1, columns, height_ratios=[panel_height] * rows + [legend_height])
    handles_by_label = {}
    for row, metric in enumerate(metrics):
        first = None
        for column, value in enumerate(facet_order):
            ax = fig.add_subplot(layout[row, column], sharey=first)
            first = first or ax
            metric_curves(frame[frame[facet] == value], metric, x=x, hue=hue, ax=ax, log_y=metric in log_y, legend=True)
            legend = ax.get_legend()
            if legend is not None:
                handles_by_label.update(zip([text.get_text() for text in legend.get_texts()], legend.legend_handles))
                legend.remove()
            if metric in log_y:
                label_log_axis(ax)
            _label_grid_axis(ax, row, column, rows, facet_titles(value) if facet_titles else str(value))
    legend_ax = fig.add_subplot(layout[rows, :])
    legend_ax.axis("off")
    shown = [label for label in labels if label in handles_by_label]
    legend_ax.legend([handles_by_label[label] for label in shown], shown, loc="upper center", frameon=False,
                     ncol=min(3, max(2, columns)), fontsize="small")
    fig.tight_layout()
    return fig


def lr_sensitivity_figure(final_rows: pd.DataFrame, sensitivity: pd.DataFrame, tolerance: float, score: str = "final_accuracy",
                          by: str = "lr", score_title: str = "final test accuracy (%)", columns: int = 2,
                          panel_width: float = 3.4, panel_height: float = 2.5):
    """One panel per label: mean ``score`` (an accuracy fraction, shown in %) against ``by`` on a log axis with
    a 95% band over seeds, the level ``tolerance`` below the best (dashed) and the range of values that stay
    above it (shaded), from :func:`optbench.studies.common.lr_sensitivity`."""
    labels = list(sensitivity.index)
    rows = math.ceil(len(labels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(panel_width * columns, panel_height * rows), sharex=True, sharey=True, squeeze=False)
    for ax, label in zip(axes.flat, labels):
        runs = final_rows[final_rows["label"] == label].assign(**{score: lambda data: data[score] * 100.0})
        look = styles.style(label)
        sns.lineplot(data=runs, x=by, y=score, color=look.color, marker=look.marker, markersize=6, linewidth=1.6,
                     errorbar=band, err_kws={"alpha": 0.15}, ax=ax)
        row = sensitivity.loc[label]
        if math.isfinite(row["low"]):
            ax.axvspan(row["low"] / 1.25, row["high"] * 1.25, color=look.color, alpha=0.12, linewidth=0)
            ax.axhline(100.0 * (row["best_score"] - tolerance), color="black", linewidth=0.8, linestyle=(0, (4, 2)))
        ax.set_xscale("log")
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(score_title)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


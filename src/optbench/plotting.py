"""The chapters' figures: curves over seeds, small multiples by optimizer family, cost bars, heatmaps.

Every curve takes its look from :mod:`optbench.styles`. Bands are the tables' 95% percentile-bootstrap
interval of the mean over seeds (:func:`optbench.statistics.interval_bounds`, handed to seaborn as its
``errorbar``); on a log axis seaborn hands it the logarithms, so a band never reaches the axis floor.
Accuracies are shown in percent.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from . import styles
from .statistics import BOOTSTRAP_SEED, RESAMPLES, interval_bounds

#: figures with more curves than this become small multiples, one panel per family
MAX_CURVES_PER_PANEL = 6
X_LABELS = {"epoch": "epoch", "grad_evals": "gradient evaluations", "elapsed_seconds": "wall-clock seconds"}
Y_LABELS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy (%)",
    "train_accuracy": "training accuracy (%)",
    "validation_accuracy": "validation accuracy (%)",
    "seconds_per_epoch": "seconds per epoch",
}
#: metrics stored as fractions and shown in percent
PERCENT_METRICS = ("test_accuracy", "train_accuracy", "validation_accuracy")
#: what every curve band and bar interval is: the tables' percentile bootstrap of the mean (scipy's, vectorized;
#: seaborn's own ("ci", 95) resamples in a Python loop, minutes for a chapter's figures)
ERRORBAR = interval_bounds


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
                 markevery=max(1, math.ceil(points / 8)), markersize=6, linewidth=1.6,
                 errorbar=ERRORBAR, n_boot=RESAMPLES, seed=BOOTSTRAP_SEED, err_kws={"alpha": 0.15},
                 ax=ax, legend=legend)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(Y_LABELS.get(y, y))
    return ax


def family_panels(labels) -> list[tuple[str, list[str]]]:
    """(title, labels) of each panel: one panel for few optimizers, else one per family present."""
    labels = list(labels)
    if len(labels) <= MAX_CURVES_PER_PANEL:
        return [("", labels)]
    families = {}
    for item in labels:
        families.setdefault(styles.style(item).family, []).append(item)
    return [(family, members) for family, members in families.items()]


def curve_figure(frame: pd.DataFrame, metrics: list[str], x: str = "epoch", hue: str = "label", log_y=(),
                 panels: list[tuple[str, list[str]]] | None = None, panel_width: float = 3.4, panel_height: float = 2.7):
    """The chapters' curve figure.

    Few optimizers: one row, one panel per metric, a shared legend below. More than six: small multiples,
    one row per metric and one column per panel of :func:`family_panels`, each family in colour against the
    others in grey, its legend under its column; so every curve can be told apart and followed.
    """
    labels = list(dict.fromkeys(frame[hue]))
    panels = panels if panels is not None else family_panels(labels)
    if len(panels) == 1:
        grid = [[(metric, panels[0]) for metric in metrics]]
    else:
        grid = [[(metric, panel) for panel in panels] for metric in metrics]
    rows, columns = len(grid), len(grid[0])
    legend_rows = max(len(members) for _, members in panels) if len(panels) > 1 else math.ceil(len(labels) / min(3, columns * 2))
    legend_height = 0.22 * legend_rows + 0.3
    fig = plt.figure(figsize=(panel_width * columns, panel_height * rows + legend_height))
    layout = fig.add_gridspec(rows + 1, columns, height_ratios=[panel_height] * rows + [legend_height])
    axes = [[None] * columns for _ in range(rows)]
    for column in range(columns):
        for row in range(rows):
            metric, (title, members) = grid[row][column]
            # small multiples share each metric's axis, so panels compare at a glance
            shared = axes[row][0] if len(panels) > 1 and column > 0 else None
            ax = axes[row][column] = fig.add_subplot(layout[row, column], sharey=shared)
            metric_curves(frame, metric, x=x, hue=hue, ax=ax, log_y=metric in log_y,
                          highlight=set(members) if len(panels) > 1 else None, legend=True)
            handles, names = ax.get_legend_handles_labels()
            ax.get_legend().remove()
            if metric in log_y:
                plain = mticker.FuncFormatter(lambda value, _: f"{value:g}")
                ax.yaxis.set_major_formatter(plain)
                ax.yaxis.set_minor_formatter(plain if _decades(ax) < 1 else mticker.NullFormatter())
            if shared is not None:
                ax.set_ylabel("")
                ax.tick_params(labelleft=False)
            if row == 0 and title:
                ax.set_title(title, fontsize="medium")
            if row < rows - 1:
                ax.set_xlabel("")
        if len(panels) > 1:
            legend_ax = fig.add_subplot(layout[rows, column])
            legend_ax.axis("off")
            legend_ax.legend(handles, names, loc="upper center", frameon=False, ncol=1, fontsize="small")
    if len(panels) == 1:
        legend_ax = fig.add_subplot(layout[rows, :])
        legend_ax.axis("off")
        legend_ax.legend(handles, names, loc="upper center", frameon=False, ncol=min(3, columns * 2), fontsize="small")
    fig.tight_layout()
    return fig


def _decades(ax) -> float:
    low, high = ax.get_ylim()
    return math.log10(high / low) if low > 0 and high > 0 else 0.0


def cost_bars(frame: pd.DataFrame, y: str = "seconds_per_epoch", x: str = "label", ax=None, order=None, reference_line: float | None = None):
    """Mean of ``y`` per ``x`` (one value per measurement round or run) with its 95% interval, in each label's colour."""
    ax = ax if ax is not None else plt.gca()
    order = order if order is not None else list(dict.fromkeys(frame[x]))
    sns.barplot(data=frame, x=y, y=x, hue=x, order=order, hue_order=order, palette=styles.palette(order), legend=False,
                errorbar=ERRORBAR, n_boot=RESAMPLES, seed=BOOTSTRAP_SEED, ax=ax, orient="h")
    ax.set_ylabel("")
    ax.set_xlabel(Y_LABELS.get(y, y))
    if reference_line is not None:
        ax.axvline(reference_line, color="black", linewidth=0.8, linestyle=(0, (4, 2)))
    return ax


def heatmap(table: pd.DataFrame, ax=None, annotations: pd.DataFrame | None = None, cmap: str = "cividis", **kwargs):
    """Heatmap of a 2-D table (rows × columns), annotated with ``annotations`` (strings) or the values."""
    ax = ax if ax is not None else plt.gca()
    annot = annotations.to_numpy() if annotations is not None else True
    sns.heatmap(table.astype(float), annot=annot, fmt="" if annotations is not None else ".3g", cmap=cmap, ax=ax,
                linewidths=0.5, **kwargs)
    return ax


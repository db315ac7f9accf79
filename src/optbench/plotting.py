"""Seaborn figures of the chapters: metric curves with 95% bands over seeds, time bars, heatmaps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .statistics import bounded_band

#: the range each metric can take, to which its interval bands are clipped
METRIC_RANGES = {
    "test_accuracy": (0.0, 1.0), "train_accuracy": (0.0, 1.0), "test_error": (0.0, 1.0),
    "train_loss": (0.0, float("inf")), "test_loss": (0.0, float("inf")),
    "seconds": (0.0, float("inf")), "seconds_per_epoch": (0.0, float("inf")),
}

X_LABELS = {"epoch": "epoch", "grad_evals": "gradient evaluations", "elapsed_seconds": "wall-clock seconds"}
Y_LABELS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "test_error": "test error",
    "test_accuracy": "test accuracy",
    "train_accuracy": "training accuracy",
    "seconds": "seconds per epoch",
    "seconds_per_epoch": "seconds per epoch",
}


def metric_curves(frame: pd.DataFrame, y: str, x: str = "epoch", hue: str = "label", ax=None, log_y: bool = False, **kwargs):
    """Mean of ``y`` against ``x`` per ``hue`` with a 95% band over seeds (runs aligned by epoch)."""
    ax = ax if ax is not None else plt.gca()
    errorbar = bounded_band(*METRIC_RANGES.get(y, (-float("inf"), float("inf"))))
    palette = kwargs.pop("palette", sns.color_palette("husl", frame[hue].nunique()))
    if x != "epoch":
        # seeds differ slightly in seconds (and may differ in evaluations): average x per epoch too
        frame = frame.assign(**{x: frame.groupby([hue, "epoch"], sort=False)[x].transform("mean")})
    sns.lineplot(data=frame, x=x, y=y, hue=hue, errorbar=errorbar, ax=ax, palette=palette, **kwargs)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel(Y_LABELS.get(y, y))
    if log_y:
        ax.set_yscale("log")
    return ax


def curve_grid(frame: pd.DataFrame, metrics: list[str], x: str = "epoch", hue: str = "label", log_y=()):
    """The chapters' standard curve figure: a 2×2 grid of metric panels, the legend in the last free cell."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.2))
    axes = axes.ravel()
    for ax, metric in zip(axes, metrics):
        metric_curves(frame, metric, x=x, hue=hue, ax=ax, log_y=metric in log_y)
        ax.get_legend().remove()
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[len(metrics):]:
        ax.axis("off")
    legend_ax = axes[-1] if len(metrics) < len(axes) else axes[0]
    legend_ax.legend(handles, labels, loc="center", frameon=False, ncol=1 if len(labels) <= 12 else 2)
    fig.tight_layout()
    return fig


def time_bars(frame: pd.DataFrame, y: str = "seconds_per_epoch", x: str = "label", ax=None, order=None, **kwargs):
    """Mean ``y`` per ``x`` with a 95% interval: one value per run (e.g. its median seconds per epoch)."""
    ax = ax if ax is not None else plt.gca()
    errorbar = bounded_band(*METRIC_RANGES.get(y, (-float("inf"), float("inf"))))
    sns.barplot(data=frame, x=x, y=y, errorbar=errorbar, ax=ax, order=order, **kwargs)
    ax.set_xlabel("")
    ax.set_ylabel(Y_LABELS.get(y, y))
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def heatmap(table: pd.DataFrame, ax=None, fmt: str = ".3f", cmap: str = "viridis_r", **kwargs):
    """Annotated heatmap of a 2-D table (rows × columns)."""
    ax = ax if ax is not None else plt.gca()
    sns.heatmap(table, annot=True, fmt=fmt, cmap=cmap, ax=ax, **kwargs)
    return ax

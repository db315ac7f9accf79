"""Performance profiles (Dolan & Moré 2002) of the optimizers across the workloads of the book.

For a measure where lower is better (final test error, seconds to a target, ...) with value
:math:`t_{w,s}` of optimizer :math:`s` on workload :math:`w`, the performance ratio is

.. math:: r_{w,s} = t_{w,s} / \\min_{s'} t_{w,s'},

and the profile of :math:`s` is the fraction of its workloads on which it is within a factor
:math:`\\tau` of the best,

.. math:: \\rho_s(\\tau) = |\\{w : r_{w,s} \\le \\tau\\}| / |W_s|.

A failure (a diverged run, a target never reached) is :math:`t = \\infty`, so :math:`r = \\infty`: it
never counts. An optimizer that did not run on a workload (``NaN``) is left out of that workload:
:math:`W_s` is the set of workloads it ran on, and tables give its size beside every profile. A workload
on which every optimizer failed has no best; it counts as a failure for all. A best value of 0 gives
ratio 1 to the optimizers that reach 0 too and ∞ to the others.

The score of a profile is AlgoPerf's (Dahl et al. 2023): its normalized area up to :data:`TAU_MAX`,

.. math:: \\frac{1}{\\tau_{max} - 1} \\int_1^{\\tau_{max}} \\rho_s(\\tau)\\,d\\tau
          = \\frac{1}{|W_s|} \\sum_{w} \\frac{\\max(0, \\tau_{max} - r_{w,s})}{\\tau_{max} - 1},

1 for an optimizer that is the best on every workload it ran, 0 for one never within :data:`TAU_MAX`.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

#: the largest ratio a profile's score counts, AlgoPerf's choice
TAU_MAX = 4.0


def _check_values(values: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(values, pd.DataFrame) or values.empty:
        raise ValueError("performance values must be a non-empty DataFrame: one row per workload, one column per optimizer")
    numbers = values.apply(pd.to_numeric, errors="coerce").astype(float)
    invalid = values.notna() & numbers.isna()
    if invalid.any().any():
        workload, optimizer = next((w, s) for w in values.index for s in values.columns if invalid.loc[w, s])
        raise ValueError(f"performance value {values.loc[workload, optimizer]!r} of {optimizer!r} on {workload!r} is not a number")
    if (numbers < 0).any().any():
        workload, optimizer = next((w, s) for w in values.index for s in values.columns if numbers.loc[w, s] < 0)
        raise ValueError(f"performance value {float(numbers.loc[workload, optimizer])!r} of {optimizer!r} on {workload!r} is negative: "
                         "a profile needs measures where lower is better and 0 is the ideal")
    return numbers


def performance_ratios(values: pd.DataFrame) -> pd.DataFrame:
    """:math:`r_{w,s}` of a workloads × optimizers table of a measure (lower is better; ∞ failed, NaN not run)."""
    numbers = _check_values(values)
    best = numbers.min(axis=1, skipna=True)
    ratios = pd.DataFrame(np.nan, index=numbers.index, columns=numbers.columns)
    for workload in numbers.index:
        row, smallest = numbers.loc[workload], best.loc[workload]
        if not math.isfinite(smallest):  # every optimizer failed (or none ran): no best to compare with
            ratios.loc[workload] = row.where(row.isna(), math.inf)
        elif smallest == 0.0:
            ratios.loc[workload] = row.where(row.isna(), np.where(row == 0.0, 1.0, math.inf))
        else:
            ratios.loc[workload] = row / smallest
    return ratios


def profile(values: pd.DataFrame, taus: Iterable[float]) -> pd.DataFrame:
    """:math:`\\rho_s(\\tau)` at each of ``taus`` (rows, index ``tau``) for each optimizer (columns)."""
    ratios = performance_ratios(values)
    taus = [float(tau) for tau in taus]
    if any(tau < 1 or not math.isfinite(tau) for tau in taus):
        raise ValueError(f"invalid taus {taus!r}: a profile is read at finite factors tau >= 1")
    ran = ratios.notna().sum().to_numpy(dtype=float)
    within = (ratios.to_numpy()[None, :, :] <= np.asarray(taus)[:, None, None]).sum(axis=1)
    fractions = np.divide(within, ran, out=np.full(within.shape, np.nan), where=ran > 0)
    return pd.DataFrame(fractions, index=pd.Index(taus, name="tau"), columns=ratios.columns)


def scores(values: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """AlgoPerf's score of each optimizer's profile: its normalized area for τ from 1 to ``tau_max``."""
    if not tau_max > 1 or not math.isfinite(tau_max):
        raise ValueError(f"invalid tau_max {tau_max!r}: give a finite factor above 1")
    ratios = performance_ratios(values)
    credit = ((tau_max - ratios.clip(lower=1.0)).clip(lower=0.0) / (tau_max - 1.0)).where(ratios.notna())
    return credit.mean(skipna=True)


def summary_table(values: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.DataFrame:
    """Per optimizer: workloads it ran on, fraction on which it is the best (ρ(1)), fraction within ×2 of the
    best (ρ(2)) and the score, best score first (ties: more workloads first)."""
    ratios = performance_ratios(values)
    ran = ratios.notna().sum()
    table = pd.DataFrame({
        "workloads": ran.astype(int),
        "best": (ratios <= 1.0).sum() / ran.where(ran > 0),
        "within 2": (ratios <= 2.0).sum() / ran.where(ran > 0),
        "score": scores(values, tau_max),
    })
    return table.sort_values(["score", "workloads"], ascending=False, kind="stable")


def winner(values: pd.DataFrame, tau_max: float = TAU_MAX) -> str | None:
    """The optimizer with the highest score among those that ran on the most workloads (None if none has a score)."""
    table = summary_table(values, tau_max).dropna(subset=["score"])
    if table.empty:
        return None
    widest = table[table["workloads"] == table["workloads"].max()]
    return str(widest.index[0])


def profile_figure(values: pd.DataFrame, look: Callable[[str], object], measure: str, tau_max: float = TAU_MAX,
                   panels: list[tuple[str, list[str]]] | None = None, columns: int = 2,
                   panel_width: float = 3.6, panel_height: float = 2.6):
    """The step curves :math:`\\rho_s(\\tau)` of one measure (``values``: workloads × optimizers), named ``measure``.

    ``look(label)`` gives each optimizer's :class:`~optbench.styles.Style`. With ``panels`` ((title, labels)
    each) the panels wrap into ``columns`` columns, as the chapters' small multiples do, each showing its
    optimizers in colour against the others in grey with its own legend beneath. The τ axis is
    logarithmic, from 1 past ``tau_max`` (a dashed line: the end of the score's area) and past the largest
    finite ratio; a curve that never reaches 1 has failures.
    """
    import matplotlib.ticker as mticker

    from .plotting import small_multiples
    from .styles import CONTEXT_GREY

    labels = list(values.columns)
    panels = panels if panels is not None else [("", labels)]
    ratios = performance_ratios(values)
    finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
    # past tau_max, so that its dashed line shows
    right = max(tau_max * 1.25, float(finite.max()) * 1.05 if finite.size else 0.0)
    taus = np.unique(np.concatenate([[1.0, right], np.clip(finite, 1.0, right)]))
    curves = profile(values, taus)
    fig, axes = small_multiples(panels, columns, panel_width, panel_height, sharey=True)
    for position, ((panel_title, members), (ax, legend_ax)) in enumerate(zip(panels, axes)):
        handles = []
        for label in labels:
            if curves[label].isna().all():
                continue
            shown = label in members
            style = look(label)
            line, = ax.step(curves.index, curves[label], where="post",
                            color=style.color if shown else CONTEXT_GREY, linestyle=style.linestyle if shown else "-",
                            marker=style.marker if shown else None, markevery=[-1], markersize=5,
                            linewidth=1.6 if shown else 0.9, zorder=3 if shown else 1, label=label)
            if shown:
                handles.append(line)
        ax.set_xscale("log", base=2)
        ax.set_xlim(1.0, right)
        ax.set_ylim(-0.03, 1.03)
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda value, _: f"{value:g}"))
        ax.axvline(tau_max, color="black", linewidth=0.6, linestyle=(0, (3, 3)))
        ax.set_xlabel("factor τ of the best")
        ax.set_ylabel(f"fraction of workloads\n{measure}" if position % min(columns, len(panels)) == 0 else "")
        if panel_title:
            ax.set_title(panel_title, fontsize="medium")
        # long handles, so that dashed variants (report 003's plain SGD) show their dashes
        legend_ax.legend(handles=handles, loc="upper center", frameon=False, ncol=1, fontsize="small", handlelength=3.5)
    fig.tight_layout()
    return fig

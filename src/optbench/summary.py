"""What the book sums up: the compute a build took (for the introduction), read from its run records, and
the summary chapter's tables, read from the chapters' hand-overs (:mod:`optbench.chapter_results`)."""

from __future__ import annotations

import pandas as pd

from .statistics import format_number
from .store import ResultsStore
from .verdicts import VERDICTS


def compute_summary(store: ResultsStore) -> dict:
    """Runs, epochs, training seconds, devices, software and dates of every record in ``store``."""
    records = list(store.records())
    devices = sorted({f"{record['provenance']['device']} with {record['provenance']['num_threads']} threads" for record in records})
    software = sorted({f"torch {record['provenance']['torch_version']}, optbench {record['provenance']['optbench_version']}" for record in records})
    dates = sorted(record["provenance"]["date"][:10] for record in records)
    return {
        "runs": len(records),
        "diverged": sum(record["status"] == "diverged" for record in records),
        "epochs": sum(len(record["epochs"]) for record in records),
        "seconds": sum(record["epochs"][-1]["elapsed_seconds"] for record in records if record["epochs"]),
        "devices": "; ".join(devices) or "no device (no runs)",
        "software": "; ".join(software) or "no software (no runs)",
        "dates": (f"between {dates[0]} and {dates[-1]}" if dates[0] != dates[-1] else f"on {dates[0]}") if dates else "never",
    }


# ---- the summary chapter: every chapter's hand-over (optbench.chapter_results) in one place --------------

def chapter_reference(name: str, title: str) -> str:
    """A MyST link to a chapter by its label (``(study1)=``), shown as its short title ("Study 1")."""
    return f"{{ref}}`{title.split(' — ')[0]} <{name.split('_')[0]}>`"


def claims_overview(results: dict) -> pd.DataFrame:
    """Every chapter's claims, one row each: chapter, claim, report, claim text and verdict (the chapters' own
    claim tables give the rule and what was measured)."""
    frames = [result.claims.assign(chapter=chapter_reference(name, result.title)) for name, result in results.items()]
    table = pd.concat(frames, ignore_index=True)
    return table[["chapter", "claim", "report", "claim (reported)", "verdict"]]


def verdicts_by_report(results: dict) -> pd.DataFrame:
    """Per source report: how many of its claims got each verdict, and in all; a last row sums the book."""
    claims = pd.concat([result.claims for result in results.values()], ignore_index=True)
    counts = pd.crosstab(claims["report"], claims["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    counts = counts.sort_index()
    counts["claims"] = counts.sum(axis=1)
    counts.loc["all reports"] = counts.sum()
    counts.index = [index if index == "all reports" else f"report {index}" for index in counts.index]
    return counts.rename_axis("report").reset_index()


def book_workloads(results: dict) -> pd.DataFrame:
    """Every chapter's workload table, with the chapter's short title in a ``chapter`` column."""
    return pd.concat([result.workloads.assign(chapter=result.title.split(" — ")[0]) for result in results.values()],
                     ignore_index=True)


def workload_overview(workloads: pd.DataFrame) -> pd.DataFrame:
    """Per workload: its chapter, optimizers, seeds, runs and target test error (%)."""
    rows = []
    for (chapter, workload), runs in workloads.groupby(["chapter", "workload"], sort=False):
        rows.append({"workload": workload, "chapter": chapter, "optimizers": runs["optimizer"].nunique(),
                     "seeds": runs["seed"].nunique(), "runs": len(runs),
                     "target test error (%)": format_number(100 * runs["target_test_error"].iloc[0]),
                     "runs reaching it": f"{int(runs['seconds_to_target'].notna().sum())} of {len(runs)}"})
    return pd.DataFrame(rows)


#: the measures of the book's performance profiles: title → column of the workload tables
PROFILE_MEASURES = {
    "final test error": "final_test_error",
    "seconds to target": "seconds_to_target",
    "gradient evaluations to target": "grad_evals_to_target",
}


def profile_measures(workloads: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Workloads × optimizers tables of each of :data:`PROFILE_MEASURES` (median over seeds; failures ∞)."""
    from .chapter_results import measure_table

    return {title: measure_table(workloads, column) for title, column in PROFILE_MEASURES.items()}


def profile_scores_table(measures: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per optimizer (best final-test-error score first): workloads run and, per measure, the fraction of its
    workloads on which it is the best and its profile's score."""
    from .performance_profiles import summary_table

    tables = {title: summary_table(values) for title, values in measures.items()}
    first = next(iter(tables.values()))
    shown = pd.DataFrame({"optimizer": first.index, "workloads": first["workloads"].to_numpy()})
    for title, table in tables.items():
        table = table.reindex(first.index)
        shown[f"{title}: best on"] = [_fraction(value) for value in table["best"]]
        shown[f"{title}: score"] = [format_number(value, 2) for value in table["score"]]
    return shown


def _fraction(value: float) -> str:
    return "–" if value != value else f"{100 * value:.0f}%"


def looks(results: dict) -> dict:
    """label → style of every optimizer of the chapters' workloads (the first chapter's where they differ),
    ordered by family (as :data:`optbench.styles.FAMILIES`), then by first appearance."""
    from .styles import FAMILIES

    merged = {}
    for result in results.values():
        for label, style in result.looks.items():
            merged.setdefault(label, style)
    rank = {family: position for position, family in enumerate(FAMILIES)}
    return dict(sorted(merged.items(), key=lambda item: rank.get(item[1].family, len(rank))))


def headlines_table(results: dict) -> pd.DataFrame:
    """Every chapter's headline findings: chapter, what, value (as the chapter computed them)."""
    rows = [{"chapter": chapter_reference(name, result.title), "finding": what, "value": value}
            for name, result in results.items() for what, value in result.headlines.items()]
    return pd.DataFrame(rows, columns=["chapter", "finding", "value"])

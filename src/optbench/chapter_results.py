"""What a study chapter hands over at its end: its results to the summary chapter, its run records to readers.

The contract (``CONTRIBUTING.md`` states it for chapter authors): the last cell of every study chapter calls

.. code-block:: python

    chapter_results.hand_over(study.STUDY, store, claims=claims, workloads=workloads,
                              run_ids=run_ids, headlines=headlines)

- ``claims``: the chapter's claim table, :func:`optbench.verdicts.claim_table` (one row per claim of
  ``STUDY.claims``, in that order);
- ``workloads``: one row per run of the chapter's workloads (its model × dataset problems, each at the
  chapter's fairest protocol), built with :func:`workload_runs` and concatenated: columns
  :data:`WORKLOAD_COLUMNS`;
- ``run_ids``: every run the chapter shows (the reproducibility appendix lists them, the CSV holds them);
- ``headlines``: a few of the chapter's computed findings, ``{what: value as text}``, shown in the summary.

It writes ``<results>/<profile>/chapters/<name>.json`` (strict JSON, atomically, and only when its content
changed, so re-executing a chapter over the same records touches nothing), writes the chapter's run records
as a CSV beside its executed notebook (one row per run and epoch), and returns the Markdown sentence that
offers that CSV for download. The summary chapter and the appendices read the JSON with :func:`load_all`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import styles
from .store import PLAIN_NAME, ResultsStore, parse_record, write_atomically, write_json_atomically
from .verdicts import VERDICTS

SCHEMA_VERSION = 1
#: the directory the executed chapter is written to, set by ``optbench execute`` for each kernel
OUTPUT_DIR_VARIABLE = "OPTBENCH_OUTPUT_DIR"
#: columns of the claim table a chapter hands over (those of :func:`optbench.verdicts.claim_table`)
CLAIM_COLUMNS = ("claim", "report", "claim (reported)", "rule", "measured", "verdict")
#: columns of the workload table: one row per run; test errors are fractions, NaN where the run diverged
#: or never reached the target
WORKLOAD_COLUMNS = ("workload", "optimizer", "seed", "run_id", "status", "final_test_error", "target_test_error",
                    "epochs_to_target", "seconds_to_target", "grad_evals_to_target")
#: the rule of :func:`target_test_error`, in words for the book
TARGET_RULE = ("the median over the workload's optimizers (the lower middle one for an even count) of their median final "
               "test error over seeds, a diverged optimizer counting as the worst, so that about half of them reach it; "
               "a run reaches it at the first epoch whose test error is at or below it")


class ChapterResultsMissing(FileNotFoundError):
    """A registered chapter has not handed over its results (it was not executed, or lacks the call)."""


@dataclass(frozen=True)
class ChapterResults:
    """One chapter's hand-over, as the summary reads it."""

    name: str
    title: str
    reports: tuple[str, ...]
    claims: pd.DataFrame
    workloads: pd.DataFrame
    run_ids: tuple[str, ...]
    headlines: dict[str, str]
    #: label → style of every optimizer in ``workloads`` (variants registered by the chapter included)
    looks: dict[str, styles.Style]


def results_path(store: ResultsStore, name: str) -> Path:
    """``<store>/chapters/<name>.json``."""
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        raise ValueError(f"invalid chapter name {name!r}: use letters, digits, '_' and '-' only")
    return store.root / "chapters" / f"{name}.json"


# ---- the workload table -------------------------------------------------------------------------------

def _final_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """Per run: label, seed, status and final test error (NaN for a diverged run)."""
    rows = []
    for (label, run_id), run in frame.groupby(["label", "run_id"], sort=False):
        run = run.sort_values("epoch")
        final = float(run["test_error"].iloc[-1])
        diverged = run["status"].iloc[0] == "diverged"
        rows.append({"label": label, "run_id": run_id, "seed": int(run["seed"].iloc[0]), "status": run["status"].iloc[0],
                     "final_test_error": math.nan if diverged or not math.isfinite(final) else final})
    return pd.DataFrame(rows)


def target_test_error(frame: pd.DataFrame) -> float:
    """The default target of a workload (:data:`TARGET_RULE`) from its labelled per-epoch frame."""
    finals = _final_errors(frame)
    per_label = np.sort(finals.groupby("label", sort=False)["final_test_error"].apply(
        lambda values: float(np.median(values.fillna(math.inf)))).to_numpy())
    middle = float(per_label[(len(per_label) - 1) // 2])
    # more than half of the optimizers failed: there is no target most of them could be compared on
    return middle if math.isfinite(middle) else math.nan


def workload_runs(frame: pd.DataFrame, workload: str, target: float | None = None) -> pd.DataFrame:
    """The workload table of one workload: per run of ``frame`` (a labelled per-epoch frame, as
    :func:`optbench.studies.common.run_groups` returns), its final test error and the epochs, seconds and
    gradient evaluations until its test error first reached ``target`` (default :func:`target_test_error`).

    Seconds and evaluations are the run's cumulative ones at the end of that epoch; NaN where never reached.
    """
    if not isinstance(workload, str) or not workload.strip():
        raise ValueError(f"invalid workload name {workload!r}: name the model and data, e.g. 'ResNet-18 on digits'")
    missing = {"label", "run_id", "seed", "epoch", "status", "test_error", "elapsed_seconds", "grad_evals"} - set(frame.columns)
    if missing:
        raise ValueError(f"workload {workload!r}: the frame lacks column(s) {', '.join(sorted(missing))}; pass a labelled "
                         "per-epoch frame (common.run_groups)")
    if frame.empty:
        raise ValueError(f"workload {workload!r} has no runs")
    target = target_test_error(frame) if target is None else float(target)
    if not (math.isnan(target) or 0.0 <= target <= 1.0):
        raise ValueError(f"invalid target test error {target!r} for workload {workload!r}: give a fraction in [0, 1]")
    finals = _final_errors(frame).set_index("run_id")
    rows = []
    for (label, run_id), run in frame.groupby(["label", "run_id"], sort=False):
        run = run.sort_values("epoch")
        reached = run[run["test_error"] <= target]
        first = reached.iloc[0] if len(reached) else None
        rows.append({
            "workload": workload, "optimizer": label, "seed": int(finals.loc[run_id, "seed"]), "run_id": run_id,
            "status": finals.loc[run_id, "status"], "final_test_error": float(finals.loc[run_id, "final_test_error"]),
            "target_test_error": target,
            "epochs_to_target": math.nan if first is None else float(first["epoch"]),
            "seconds_to_target": math.nan if first is None else float(first["elapsed_seconds"]),
            "grad_evals_to_target": math.nan if first is None else float(first["grad_evals"]),
        })
    return pd.DataFrame(rows, columns=list(WORKLOAD_COLUMNS))


def measure_table(workloads: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Workloads × optimizers: the median over seeds of ``measure`` (a column of :data:`WORKLOAD_COLUMNS`),
    where a diverged run or a target never reached counts as ∞; NaN where the optimizer did not run.

    Workloads are named ``"<workload> (<chapter>)"`` when the table holds a ``chapter`` column.
    """
    if measure not in WORKLOAD_COLUMNS or measure in ("workload", "optimizer", "seed", "run_id", "status"):
        raise ValueError(f"invalid measure {measure!r}: choose final_test_error, seconds_to_target, grad_evals_to_target or epochs_to_target")
    names = workloads["workload"] + (" (" + workloads["chapter"] + ")" if "chapter" in workloads else "")
    values = workloads.assign(workload=names, value=workloads[measure].astype(float).fillna(math.inf))
    table = values.groupby(["workload", "optimizer"], sort=False)["value"].median().unstack("optimizer")
    return table.reindex(index=list(dict.fromkeys(names)), columns=list(dict.fromkeys(workloads["optimizer"])))


# ---- saving and loading -------------------------------------------------------------------------------

def _check_claims(study, claims: pd.DataFrame) -> pd.DataFrame:
    claims = claims.reset_index() if "claim" not in claims.columns else claims
    missing = [column for column in CLAIM_COLUMNS if column not in claims.columns]
    if missing:
        raise ValueError(f"{study.name}: the claim table lacks column(s) {', '.join(missing)}; build it with verdicts.claim_table")
    if list(claims["claim"]) != list(study.claims):
        raise ValueError(f"{study.name}: the claim table holds claims {list(claims['claim'])}, the study registers {list(study.claims)}")
    wrong = sorted(set(claims["verdict"]) - set(VERDICTS))
    if wrong:
        raise ValueError(f"{study.name}: verdict(s) {wrong} are not among {', '.join(VERDICTS)}")
    return claims[list(CLAIM_COLUMNS)]


def _check_workloads(study, workloads: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    missing = [column for column in WORKLOAD_COLUMNS if column not in workloads.columns]
    if missing:
        raise ValueError(f"{study.name}: the workload table lacks column(s) {', '.join(missing)}; build it with chapter_results.workload_runs")
    if workloads.empty:
        raise ValueError(f"{study.name}: the workload table is empty; a chapter hands over at least one workload")
    unknown = sorted(set(workloads["run_id"]) - set(run_ids))
    if unknown:
        raise ValueError(f"{study.name}: workload run(s) {', '.join(unknown[:3])} are not among the chapter's run_ids")
    duplicated = workloads.duplicated(["workload", "optimizer", "seed"])
    if duplicated.any():
        row = workloads[duplicated].iloc[0]
        raise ValueError(f"{study.name}: workload {row['workload']!r} has optimizer {row['optimizer']!r} seed {row['seed']} twice")
    return workloads[list(WORKLOAD_COLUMNS)]


def _json_rows(frame: pd.DataFrame) -> list[dict]:
    # JSON has no NaN: a missing number is null
    return [{key: (None if isinstance(value, float) and not math.isfinite(value) else
                   int(value) if isinstance(value, np.integer) else float(value) if isinstance(value, np.floating) else value)
             for key, value in row.items()} for row in frame.to_dict(orient="records")]


def _look(label: str) -> dict:
    style = styles.style(label)
    return {"family": style.family, "color": style.color, "dashes": list(style.dashes) if isinstance(style.dashes, tuple) else style.dashes,
            "marker": style.marker}


def save(study, store: ResultsStore, claims: pd.DataFrame, workloads: pd.DataFrame, run_ids: Iterable[str],
         headlines: dict[str, str] | None = None) -> Path:
    """Check the chapter's hand-over and write it to ``<store>/chapters/<name>.json`` (see the module docstring).

    ``ValueError`` names what is wrong before anything is written; an unchanged file is left as it is.
    """
    # canonical order: the same runs handed over in another order are the same hand-over (no rewrite)
    run_ids = sorted(set(run_ids))
    missing = [run_id for run_id in run_ids if run_id not in store]
    if missing:
        raise ValueError(f"{study.name}: run(s) {', '.join(missing[:3])} have no record in {store.root}")
    headlines = dict(headlines or {})
    for what, value in headlines.items():
        if not isinstance(what, str) or not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ValueError(f"{study.name}: headline {what!r}: {value!r}; give text → text (or an integer count), numbers formatted")
    claims = _check_claims(study, claims)
    workloads = _check_workloads(study, workloads, run_ids).sort_values(["workload", "optimizer", "seed", "run_id"], kind="stable")
    content = {
        "schema": SCHEMA_VERSION, "name": study.name, "title": study.title, "reports": list(study.reports),
        "claims": _json_rows(claims), "workloads": _json_rows(workloads), "run_ids": run_ids,
        "headlines": [[what, str(value)] for what, value in headlines.items()],
        "looks": {label: _look(label) for label in dict.fromkeys(workloads["optimizer"])},
    }
    path = results_path(store, study.name)
    text = json.dumps(content, indent=1, sort_keys=True, allow_nan=False) + "\n"
    if not (path.is_file() and path.read_text(encoding="utf-8") == text):
        write_json_atomically(path, content)
    return path


def load(name: str, store: ResultsStore) -> ChapterResults:
    """The hand-over of chapter ``name``; :class:`ChapterResultsMissing` if it has none."""
    path = results_path(store, name)
    if not path.is_file():
        raise ChapterResultsMissing(
            f"chapter {name!r} has handed over no results ({path} is missing): execute it (optbench execute --notebook {name}) "
            "and make sure its last cell calls chapter_results.hand_over (CONTRIBUTING.md)")
    content = parse_record(path.read_bytes())
    if not isinstance(content, dict) or content.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path}: not a chapter hand-over of schema {SCHEMA_VERSION}; execute chapter {name!r} again")
    looks = {label: styles.Style(label, look["family"], look["color"],
                                 tuple(look["dashes"]) if isinstance(look["dashes"], list) else look["dashes"], look["marker"])
             for label, look in content["looks"].items()}
    workloads = pd.DataFrame(content["workloads"], columns=list(WORKLOAD_COLUMNS))
    for column in ("final_test_error", "target_test_error", "epochs_to_target", "seconds_to_target", "grad_evals_to_target"):
        workloads[column] = pd.to_numeric(workloads[column]).astype(float)
    return ChapterResults(
        name=content["name"], title=content["title"], reports=tuple(content["reports"]),
        claims=pd.DataFrame(content["claims"], columns=list(CLAIM_COLUMNS)), workloads=workloads,
        run_ids=tuple(content["run_ids"]), headlines=dict(content["headlines"]), looks=looks,
    )


def load_all(store: ResultsStore, names: Iterable[str] | None = None) -> dict[str, ChapterResults]:
    """The hand-overs of every registered study chapter (or of ``names``), in the book's order."""
    from .studies import STUDIES

    return {name: load(name, store) for name in (names if names is not None else STUDIES)}


# ---- the run records as a download --------------------------------------------------------------------

def records_csv_name(name: str) -> str:
    """The file name of chapter ``name``'s run records: ``<name>_runs.csv``."""
    return f"{name}_runs.csv"


def write_records_csv(study, store: ResultsStore, run_ids: Iterable[str], directory: str | Path | None = None) -> tuple[Path, int, int]:
    """Write the records of ``run_ids`` as a CSV (one row per run and epoch: configuration and metrics) into
    ``directory`` (default: beside the chapter's executed notebook, relative to the working directory, which
    is the repository root when the executor runs it); return (path, runs, rows)."""
    run_ids = list(dict.fromkeys(run_ids))
    frame = store.dataframe(run_ids)
    found = frame["run_id"].nunique()
    if found != len(run_ids):
        absent = sorted(set(run_ids) - set(frame["run_id"]))
        raise ValueError(f"{study.name}: run(s) {', '.join(absent[:3])} have no intact record in {store.root}")
    directory = Path(directory) if directory is not None else Path(study.executed).parent
    path = directory / records_csv_name(study.name)
    text = frame.to_csv(index=False)
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
    return path, found, len(frame)


def output_directory(study) -> Path:
    """Where the executed chapter goes: ``$OPTBENCH_OUTPUT_DIR`` (``optbench execute`` sets it), else its place in the book."""
    return Path(os.environ.get(OUTPUT_DIR_VARIABLE) or Path(study.executed).parent)


def hand_over(study, store: ResultsStore, claims: pd.DataFrame, workloads: pd.DataFrame, run_ids: Iterable[str],
              headlines: dict[str, str] | None = None):
    """The chapter's last call: :func:`save` its results, :func:`write_records_csv` its records beside the executed
    notebook, and return the Markdown sentence with the CSV's download link (shown in the chapter's reproduce section).

    A chapter executed elsewhere than into the book (``optbench execute --output``) writes its CSV there and
    hands nothing over: the summary keeps reading what the book's own chapter computed.
    """
    from IPython.display import Markdown

    run_ids = list(dict.fromkeys(run_ids))
    directory = output_directory(study)
    in_book = directory.resolve() == Path(study.executed).parent.resolve()
    if in_book:
        save(study, store, claims, workloads, run_ids, headlines)
    path, runs, rows = write_records_csv(study, store, run_ids, directory)
    note = "" if in_book else " This execution lies outside the book, so the book's summary does not read it."
    return Markdown(f"The run records behind this chapter ({runs} runs, {rows} rows: one per run and epoch, with each run's "
                    f"configuration, status and metrics): {{download}}`{path.name} <{path.name}>`.{note}\n")

"""The hand-over from the chapters to the summary and the appendices: workload tables computed by hand, strict
checks before anything is written, atomic and idempotent files, the CSV of run records, and the summary's and
the reproducibility appendix's tables built from them."""

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from optbench import chapter_results, provenance, summary
from optbench.config import RunConfig
from optbench.runs import run
from optbench.store import ResultsStore
from optbench.studies import Study
from optbench.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED, VERDICTS

NAN = math.nan
TINY = dict(model="mlp", model_options={"hidden_sizes": [8]}, image_size=8, max_train_examples=64, batch_size=32, num_epochs=2)


@dataclasses.dataclass
class _Settings:
    num_epochs: int = 2


STUDY = Study(name="study9_handover", prefix="s9", title="Study 9 — A hand-over", reports=("000", "004"),
              question="Does the hand-over work?", settings=_Settings, planned_runs=lambda settings: [], figures=(),
              tables=("tbl-s9-claims",), claims=("C1", "C2", "C3"))


def _epochs(label, run_id, seed, errors, status="finished"):
    return [{"label": label, "run_id": run_id, "seed": seed, "epoch": epoch, "status": status, "test_error": error,
             "elapsed_seconds": 10.0 * epoch + seed, "grad_evals": 100 * epoch} for epoch, error in enumerate(errors, start=1)]


#: a labelled per-epoch frame: SGD's seed 1 diverged in epoch 2
FRAME = pd.DataFrame(
    _epochs("Adam", "adam-0", 0, [0.5, 0.3, 0.2]) + _epochs("Adam", "adam-1", 1, [0.6, 0.4, 0.25])
    + _epochs("RMSprop", "rmsprop-0", 0, [0.7, 0.5, 0.35]) + _epochs("RMSprop", "rmsprop-1", 1, [0.7, 0.45, 0.3])
    + _epochs("SGD+momentum", "sgd-0", 0, [0.8, 0.6, 0.5]) + _epochs("SGD+momentum", "sgd-1", 1, [0.9, NAN], status="diverged"))


def test_the_default_target_is_the_median_optimizers_final_error():
    # per optimizer, the median over seeds: Adam 0.225, RMSprop 0.325, SGD ∞ (a diverged seed); the middle one
    assert chapter_results.target_test_error(FRAME) == pytest.approx(0.325)
    # an even count takes the lower middle one; a failure counts as the worst; no finite middle leaves no target
    assert chapter_results.target_test_error(FRAME[FRAME["label"] != "SGD+momentum"]) == pytest.approx(0.225)
    assert chapter_results.target_test_error(FRAME[FRAME["label"] != "Adam"]) == pytest.approx(0.325)
    assert math.isnan(chapter_results.target_test_error(FRAME[FRAME["label"] == "SGD+momentum"]))


def test_workload_runs_find_the_first_epoch_at_the_target():
    table = chapter_results.workload_runs(FRAME, "MLP on digits").set_index("run_id")
    assert list(table.columns) == [column for column in chapter_results.WORKLOAD_COLUMNS if column != "run_id"]
    assert table["target_test_error"].tolist() == pytest.approx([0.325] * 6) and (table["workload"] == "MLP on digits").all()
    assert table["final_test_error"].to_dict() == pytest.approx(
        {"adam-0": 0.2, "adam-1": 0.25, "rmsprop-0": 0.35, "rmsprop-1": 0.3, "sgd-0": 0.5, "sgd-1": NAN}, nan_ok=True)
    # adam-0 reaches 0.325 in epoch 2 (0.3), adam-1 and rmsprop-1 in epoch 3; the others never
    assert table["epochs_to_target"].to_dict() == pytest.approx(
        {"adam-0": 2, "adam-1": 3, "rmsprop-0": NAN, "rmsprop-1": 3, "sgd-0": NAN, "sgd-1": NAN}, nan_ok=True)
    assert table.loc["adam-1", "seconds_to_target"] == 31.0 and table.loc["adam-0", "grad_evals_to_target"] == 200
    assert table.loc["sgd-1", "status"] == "diverged"
    explicit = chapter_results.workload_runs(FRAME, "MLP on digits", target=0.6).set_index("run_id")
    assert explicit.loc["sgd-0", "epochs_to_target"] == 2 and explicit.loc["adam-0", "epochs_to_target"] == 1


def test_workload_runs_refuse_bad_input():
    with pytest.raises(ValueError, match="invalid workload name ''"):
        chapter_results.workload_runs(FRAME, "")
    with pytest.raises(ValueError, match="lacks column.*grad_evals"):
        chapter_results.workload_runs(FRAME.drop(columns="grad_evals"), "w")
    with pytest.raises(ValueError, match="invalid target test error 2.0"):
        chapter_results.workload_runs(FRAME, "w", target=2.0)


def test_measure_tables_take_the_median_over_seeds_with_failures_infinite():
    workloads = chapter_results.workload_runs(FRAME, "MLP on digits").assign(chapter="Study 9")
    final = chapter_results.measure_table(workloads, "final_test_error")
    assert list(final.index) == ["MLP on digits (Study 9)"] and list(final.columns) == ["Adam", "RMSprop", "SGD+momentum"]
    assert final.iloc[0].tolist() == pytest.approx([0.225, 0.325, math.inf])
    seconds = chapter_results.measure_table(workloads, "seconds_to_target")
    # Adam: 20 and 31 s; RMSprop: never (seed 0) and 31 s → ∞
    assert seconds.iloc[0].tolist() == pytest.approx([25.5, math.inf, math.inf])
    with pytest.raises(ValueError, match="invalid measure 'seed'"):
        chapter_results.measure_table(workloads, "seed")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with four tiny real runs: Adam and SGD, two seeds each."""
    store = ResultsStore(tmp_path_factory.mktemp("results") / "smoke")
    for optimizer in ("adam", "sgd"):
        for seed in (0, 1):
            run(RunConfig(optimizer=optimizer, seed=seed, **TINY), store, progress=False)
    return store


def _frame(store):
    frame = store.dataframe()
    return frame.assign(label=frame["optimizer"].map({"adam": "Adam", "sgd": "SGD+momentum"}))


def _claims(verdicts=(SUPPORTED, CONTRADICTED, NOT_TESTABLE)):
    return pd.DataFrame({"claim": ["C1", "C2", "C3"], "report": ["000", "000", "004"], "claim (reported)": ["a", "b", "c"],
                         "rule": ["r"] * 3, "measured": ["m"] * 3, "verdict": list(verdicts)}).set_index("claim")


def _hand_over(store, **changes):
    frame = _frame(store)
    arguments = {"claims": _claims(), "workloads": chapter_results.workload_runs(frame, "MLP on digits"),
                 "run_ids": frame["run_id"], "headlines": {"best optimizer": "Adam", "runs": 4}, **changes}
    return chapter_results.save(STUDY, store, **arguments)


def test_a_hand_over_round_trips_through_strict_json(store):
    path = _hand_over(store)
    assert path == store.root / "chapters" / "study9_handover.json"
    content = json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))
    assert content["schema"] == chapter_results.SCHEMA_VERSION
    result = chapter_results.load("study9_handover", store)
    assert result.title == STUDY.title and result.reports == ("000", "004")
    assert list(result.claims["claim"]) == ["C1", "C2", "C3"] and list(result.claims.columns) == list(chapter_results.CLAIM_COLUMNS)
    assert sorted(result.run_ids) == sorted(_frame(store)["run_id"].unique())
    # stored in a canonical order, so the same runs handed over in another order rewrite nothing
    expected = chapter_results.workload_runs(_frame(store), "MLP on digits").sort_values(
        ["workload", "optimizer", "seed", "run_id"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(result.workloads, expected, check_dtype=False)
    assert result.headlines == {"best optimizer": "Adam", "runs": "4"}
    assert result.looks["Adam"].color == "#0072B2" and result.looks["SGD+momentum"].marker == "o"


def test_saving_again_unchanged_leaves_the_file_alone(store):
    path = _hand_over(store)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    _hand_over(store)
    assert path.stat().st_mtime_ns == before - 10**9
    _hand_over(store, headlines={"best optimizer": "SGD+momentum"})
    assert path.stat().st_mtime_ns != before - 10**9
    assert chapter_results.load("study9_handover", store).headlines == {"best optimizer": "SGD+momentum"}


@pytest.mark.parametrize("changes, message", [
    ({"claims": _claims().drop(index="C3")}, r"holds claims \['C1', 'C2'\], the study registers \['C1', 'C2', 'C3'\]"),
    ({"claims": _claims(verdicts=(SUPPORTED, "probably", INCONCLUSIVE))}, r"verdict\(s\) \['probably'\] are not among"),
    ({"claims": _claims().drop(columns="rule")}, "lacks column.*rule"),
    ({"run_ids": ["adam-000000000000"]}, "adam-000000000000 have no record"),
    ({"headlines": {"best accuracy": 0.93}}, "numbers formatted"),
    ({"workloads": pd.DataFrame(columns=list(chapter_results.WORKLOAD_COLUMNS))}, "workload table is empty"),
])
def test_a_bad_hand_over_is_refused_before_anything_is_written(tmp_path, store, changes, message):
    copy = ResultsStore(tmp_path / "smoke")
    for record in store.records():
        copy.save(record)
    with pytest.raises(ValueError, match=message):
        _hand_over(copy, **changes)
    assert not (copy.root / "chapters").exists()


def test_workload_runs_must_be_among_the_chapters_runs(tmp_path, store):
    frame = _frame(store)
    with pytest.raises(ValueError, match="not among the chapter's run_ids"):
        _hand_over(store, run_ids=frame[frame["optimizer"] == "adam"]["run_id"])


def test_a_chapter_without_a_hand_over_is_named(tmp_path):
    with pytest.raises(chapter_results.ChapterResultsMissing, match="chapter 'study1_optimizers'.*hand_over"):
        chapter_results.load_all(ResultsStore(tmp_path), ["study1_optimizers"])


def test_hand_over_writes_the_records_csv_and_offers_it_for_download(tmp_path, store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = _frame(store)
    markdown = chapter_results.hand_over(STUDY, store, claims=_claims(), workloads=chapter_results.workload_runs(frame, "w"),
                                         run_ids=list(frame["run_id"]))
    csv = tmp_path / "book" / "studies" / "study9_handover_runs.csv"
    assert "{download}`study9_handover_runs.csv <study9_handover_runs.csv>`" in markdown.data
    assert "4 runs, 8 rows" in markdown.data
    written = pd.read_csv(csv)
    assert len(written) == sum(len(record["epochs"]) for record in store.records()) == 8
    assert sorted(written["run_id"].unique()) == sorted(frame["run_id"].unique())
    expected = store.dataframe(list(frame["run_id"].unique())).sort_values(["run_id", "epoch"])
    written = written.sort_values(["run_id", "epoch"])
    assert written["test_accuracy"].tolist() == pytest.approx(expected["test_accuracy"].tolist())
    assert written["grad_evals"].tolist() == expected["grad_evals"].tolist()


def _result(name, title, reports, verdicts, workloads=None):
    claims = pd.DataFrame({"claim": [f"C{index}" for index in range(1, len(verdicts) + 1)], "report": list(reports),
                           "claim (reported)": "text", "rule": "rule", "measured": "measured", "verdict": list(verdicts)})
    return chapter_results.ChapterResults(name=name, title=title, reports=tuple(dict.fromkeys(reports)), claims=claims,
                                          workloads=workloads if workloads is not None else pd.DataFrame(columns=list(chapter_results.WORKLOAD_COLUMNS)),
                                          run_ids=(), headlines={"finding": "value"}, looks={})


def test_the_summary_counts_each_reports_verdicts_over_the_chapters():
    results = {
        "study1_a": _result("study1_a", "Study 1 — A", ["000", "000", "004"], [SUPPORTED, CONTRADICTED, SUPPORTED]),
        "study2_b": _result("study2_b", "Study 2 — B", ["001", "000"], [INCONCLUSIVE, NOT_TESTABLE]),
    }
    table = summary.verdicts_by_report(results).set_index("report")
    assert list(table.columns) == [*VERDICTS, "claims"]
    assert table.loc["report 000"].tolist() == [1, 1, 0, 1, 3]
    assert table.loc["report 001"].tolist() == [0, 0, 1, 0, 1]
    assert table.loc["report 004"].tolist() == [1, 0, 0, 0, 1]
    assert table.loc["all reports"].tolist() == [2, 1, 1, 1, 5]
    overview = summary.claims_overview(results)
    assert overview["chapter"].tolist() == ["{ref}`Study 1 <study1>`"] * 3 + ["{ref}`Study 2 <study2>`"] * 2
    assert summary.headlines_table(results)["finding"].tolist() == ["finding", "finding"]


def test_the_reproducibility_tables_read_every_run_of_every_chapter(store):
    _hand_over(store)
    results = chapter_results.load_all(store, ["study9_handover"])
    records = provenance.chapter_records(results, store)
    compute = provenance.compute_table(results, records).set_index("chapter")
    every = list(store.records())
    seconds = sum(record["epochs"][-1]["elapsed_seconds"] for record in every)
    assert compute.loc["the book (each run once)", "runs"] == 4 and compute.loc["the book (each run once)", "epochs"] == 8
    assert compute.loc["the book (each run once)", "training seconds"] == f"{seconds:.1f}"
    assert compute.loc["the book (each run once)", "gradient evaluations"] == f"{sum(r['epochs'][-1]['grad_evals'] for r in every):,}"
    runs = provenance.runs_table(records["study9_handover"])
    assert sorted(runs["run"]) == sorted(f"`{record['id']}`" for record in every)
    first = every[0]
    row = runs.set_index("run").loc[f"`{first['id']}`"]
    assert row["status"] == "finished" and f"torch {first['provenance']['torch_version']}" in row["provenance"]
    assert first["provenance"]["date"][:10] in row["provenance"] and "commit" in row["provenance"]
    assert row["network"] == "mlp (hidden_sizes [8])" and row["data"] == "digits, 8×8, 64 training examples"
    assert row["training"] == f"2 epochs, batch 32, seed {first['config']['seed']}"
    assert f"lr {first['config']['hyperparameters']['lr']:g}" in row["hyperparameters"].split(", ")
    missing = {"study9_handover": dataclasses.replace(results["study9_handover"], run_ids=("sgd-000000000000",))}
    with pytest.raises(ValueError, match="sgd-000000000000 that have no intact record"):
        provenance.chapter_records(missing, store)
    commands = provenance.commands_table("smoke", {"study9_handover": STUDY}, {"summary": None})
    assert commands["command"].tolist() == ["`optbench execute --profile smoke --notebook study9_handover`",
                                            "`optbench execute --profile smoke --notebook summary`"]
    assert commands["parameters"].iloc[0] == "`num_epochs`"

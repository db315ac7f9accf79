"""``optbench plan``, ``status`` and ``clean --stale``: judging record files without touching them, counting a
chapter's runs, estimating the time left from measured seconds, and removing only stale records.

Records here are written through the store (sealed and checked as training would write them) with chosen
seconds per epoch, so the estimates can be checked against plain arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from pathlib import Path

import pytest
import yaml

from optbench import book, plan
from optbench.records import stored_config_id
from optbench.cli import main as cli_main
from optbench.config import RunConfig
from optbench.records import stored_config_id
from optbench.records import epoch_metrics
from optbench.store import ResultsStore, record_checksum, write_json_atomically
from optbench.studies import optimizer_comparison as study1

REPOSITORY = Path(__file__).resolve().parents[1]
TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=64, batch_size=32, num_epochs=2)


def make_record(config: RunConfig, seconds_per_epoch: list[float], status: str = "finished") -> dict:
    """A record of ``config`` whose epochs took ``seconds_per_epoch`` (one entry per epoch of the run)."""
    epochs, elapsed = [], 0.0
    for number, seconds in enumerate(seconds_per_epoch, start=1):
        elapsed += seconds
        row = dict.fromkeys(epoch_metrics(config.to_dict()), 0.5)
        row.update(epoch=number, grad_evals=10 * number, seconds=seconds, elapsed_seconds=elapsed)
        epochs.append(row)
    return {"id": config.run_id, "config": config.to_dict(), "status": status,
            "diverged_epoch": len(epochs) if status == "diverged" else None, "epochs": epochs, "provenance": {"device": "cpu"}}


def stale_copy(store: ResultsStore, record: dict) -> Path:
    """``record`` as an earlier code would have written it: without its ``weight_decay`` (a default that code did
    not have), under the id and checksum that configuration had then. Returns the file's path."""
    copy = {key: value for key, value in store.load(record["id"]).items() if key != "checksum"}
    copy["config"] = {**copy["config"], "hyperparameters": {key: value for key, value in copy["config"]["hyperparameters"].items()
                                                            if key != "weight_decay"}}
    copy["id"] = stored_config_id(copy["config"])
    copy["checksum"] = record_checksum(copy)
    path = store.path_for(copy["id"])
    write_json_atomically(path, copy)
    return path


def listing(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "results" / "tiny")


def test_every_record_file_is_judged_without_moving_locking_or_warning(store):
    finished = RunConfig(optimizer="sgd", **TINY)
    diverged = RunConfig(optimizer="adam", **TINY)
    store.save(make_record(finished, [1.0, 1.0]))
    store.save(make_record(diverged, [1.0], status="diverged"))
    stale = stale_copy(store, store.load(finished.run_id))
    stale_id = stale.name[: -len(".json")]
    edited = store.path_for("sgd-111111111111")
    edited.write_text(stale.read_text().replace('"status": "finished"', '"status": "diverged"'))  # checksum broken
    store.path_for("sgd-222222222222").write_text(store.path_for(finished.run_id).read_text()[:100])  # truncated
    os.mkfifo(store.path_for("sgd-333333333333"))  # opened, it would block the listing
    store.path_for("sgd-444444444444").symlink_to(store.path_for(finished.run_id))
    before = listing(store.root)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        states = plan.store_states(store)

    assert {run_id: entry.state for run_id, entry in states.items()} == {
        finished.run_id: "finished", diverged.run_id: "diverged", stale_id: "stale",
        "sgd-111111111111": "corrupt", "sgd-222222222222": "corrupt", "sgd-333333333333": "corrupt", "sgd-444444444444": "corrupt"}
    assert states[stale_id].current_id == finished.run_id
    assert "weight_decay" in states[stale_id].reason
    assert "checksum" in states["sgd-111111111111"].reason and "FIFO" in states["sgd-333333333333"].reason
    assert listing(store.root) == before


def test_a_record_whose_configuration_the_code_no_longer_accepts_is_stale(store):
    config = RunConfig(optimizer="sgd", **TINY)
    record = make_record(config, [1.0, 1.0])
    record["config"]["hyperparameters"]["dampening"] = 0.0  # a setting an earlier code had and this one refuses
    record["id"] = stored_config_id(record["config"])  # the id that code gave it
    record["checksum"] = record_checksum({**record, "schema": 2})
    write_json_atomically(store.path_for(record["id"]), {**record, "schema": 2})
    entry = plan.store_states(store)[record["id"]]
    assert entry.state == "stale" and entry.current_id is None and "'dampening'" in entry.reason


def test_time_left_is_the_median_seconds_per_epoch_of_comparable_runs_times_the_epochs(store):
    sgd, adam = RunConfig(optimizer="sgd", **TINY), RunConfig(optimizer="adam", **TINY)
    store.save(make_record(sgd, [1.0, 3.0]))
    store.save(make_record(adam, [10.0, 10.0]))
    costs = plan.CostIndex(entry for entry in plan.store_states(store).values())
    # the same optimizer where one is stored: median(1, 3) = 2 s per epoch
    assert costs.estimate(RunConfig(optimizer="sgd", seed=5, **{**TINY, "num_epochs": 4})) == pytest.approx(2.0 * 4)
    # another optimizer on the same network and data: the median over all comparable epochs (1, 3, 10, 10)
    assert costs.estimate(RunConfig(optimizer="nadam", **{**TINY, "num_epochs": 3})) == pytest.approx(6.5 * 3)
    # a wider network, or another batch size: nothing comparable
    assert costs.estimate(RunConfig(optimizer="sgd", **{**TINY, "model_options": {"hidden_sizes": [64]}})) is None
    assert costs.estimate(RunConfig(optimizer="sgd", **{**TINY, "batch_size": 16})) is None


def smoke_parameters() -> dict:
    return book.load_profile("smoke", REPOSITORY, check_data=False)


def test_a_chapter_counts_its_planned_runs_by_state_and_estimates_the_rest(store):
    parameters = smoke_parameters()
    smoke = yaml.safe_load((REPOSITORY / "profiles" / "smoke.yaml").read_text())["notebooks"]["study1_optimizers"]
    settings = study1.Settings(**smoke)
    groups = {"A": [c for configs in study1.protocol_a(settings).values() for c in configs],
              "selection": [c for grid in study1.selection_grid(settings).values() for configs in grid.values() for c in configs],
              "fc": [c for configs in study1.fully_connected(settings).values() for c in configs]}
    needed = len(study1.OPTIMIZERS) * len(smoke["seeds"]) * (1 + len(smoke["lr_grid"])) + len(study1.FC_OPTIMIZERS) * len(smoke["seeds"])
    assert sum(map(len, groups.values())) == needed == 80
    # one stored run per group, with its own seconds per epoch; one more diverged, one corrupt, one stale
    seconds = {"A": 2.0, "selection": 1.5, "fc": 0.25}
    stored = {name: configs[0] for name, configs in groups.items()}
    for name, config in stored.items():
        store.save(make_record(config, [seconds[name]] * config.num_epochs))
    diverged = groups["A"][1]
    store.save(make_record(diverged, [seconds["A"]], status="diverged"))
    corrupt = groups["A"][2]
    store.path_for(corrupt.run_id).write_text("{")
    stale_copy(store, store.load(stored["fc"].run_id))
    unplanned = RunConfig(optimizer="sgd", **TINY)
    store.save(make_record(unplanned, [9.0, 9.0]))

    [chapter] = plan.chapter_states(parameters, ["study1_optimizers", "methods"], store)

    assert chapter.counts == {"finished": 3, "diverged": 1, "missing": needed - 5, "corrupt": 1, "stale": 1}
    assert (chapter.stored, chapter.to_train) == (4, needed - 4)
    assert chapter.seconds_spent == pytest.approx(sum(seconds[name] * config.num_epochs for name, config in stored.items()) + seconds["A"])
    # every run to train has a comparable stored one: its group's seconds per epoch (the diverged run's epoch joins group A's)
    left = sum(seconds[name] * config.num_epochs for name, configs in groups.items() for config in configs
               if config not in (*stored.values(), diverged))
    assert chapter.unknown_left == 0 and chapter.seconds_left == pytest.approx(left)
    assert plan.plan_line(chapter) == (f"study1_optimizers: {needed} runs needed, 4 stored, {needed - 4} to train, "
                                       f"about {plan.format_seconds(left)} left")
    lines = plan.status_table("tiny", parameters, store.root.parent)
    assert cells(lines[1]) == ["chapter", "finished", "diverged", "missing", "corrupt", "stale", "compute"]
    rows = {cells(line)[0]: cells(line) for line in lines[2:]}
    assert rows["study1_optimizers"] == ["study1_optimizers", "3", "1", str(needed - 5), "1", "1", plan.format_seconds(chapter.seconds_spent)]
    assert rows["not planned by any chapter"] == ["not planned by any chapter", "1", "0", "-", "0", "0", plan.format_seconds(18.0)]


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli_main(list(argv))
    return code, stdout.getvalue(), stderr.getvalue()


def test_plan_and_status_of_a_cold_store(tmp_path):
    code, stdout, _ = run_cli("plan", "--profile", "smoke", "--root", str(REPOSITORY))
    assert code == 0
    assert "study1_optimizers: 80 runs needed, 0 stored, 80 to train, time left unknown (no comparable run stored)" in stdout
    assert "methods: no runs" in stdout and "intro: no runs" in stdout
    code, stdout, _ = run_cli("status", "--profile", "smoke", "--root", str(REPOSITORY))
    assert code == 0 and cells(stdout.splitlines()[2]) == ["study1_optimizers", "0", "0", "80", "0", "0", "0 s"]
    assert not (tmp_path / "results").exists()  # looking writes nothing


def test_clean_lists_stale_records_and_removes_them_only_when_asked(store, monkeypatch):
    config = RunConfig(optimizer="sgd", **TINY)
    store.save(make_record(config, [1.0, 1.0]))
    stale = stale_copy(store, store.load(config.run_id))
    store.path_for("sgd-111111111111").write_text("{")  # corrupt, not stale: left alone
    other_profile = ResultsStore(store.root.parent / "other")
    other_profile.save(make_record(config, [1.0, 1.0]))
    other_stale = stale_copy(other_profile, other_profile.load(config.run_id))
    monkeypatch.setenv("OPTBENCH_RESULTS_DIR", str(store.root.parent))

    code, stdout, _ = run_cli("clean", "--stale", "--profile", "tiny")
    assert code == 0 and f"would remove {stale}" in stdout and "nothing was removed" in stdout and "add --delete" in stdout
    assert stale.exists() and str(other_stale) not in stdout

    code, stdout, _ = run_cli("clean", "--stale", "--delete")
    assert code == 0 and f"removed {stale}" in stdout and f"removed {other_stale}" in stdout
    assert not stale.exists() and not other_stale.exists()
    assert store.path_for(config.run_id).exists() and store.path_for("sgd-111111111111").exists()
    assert run_cli("clean", "--stale")[1].startswith("no stale records")


def test_a_stale_record_rewritten_meanwhile_is_kept(store):
    config = RunConfig(optimizer="sgd", **TINY)
    store.save(make_record(config, [1.0, 1.0]))
    stale = stale_copy(store, store.load(config.run_id))
    [entry] = plan.stale_records(store)
    stale.write_text(stale.read_text().replace("0.5", "0.25"))  # another process wrote the file since
    assert not plan.remove_record(store, entry) and stale.exists()

"""Sweeps under faults, with real processes: killed with SIGKILL mid-run, two sweeps writing one store at
once, and a configuration that diverges."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from optbench.records import check_record, finite_or_none, parse_record
from optbench.store import ResultsStore
from optbench.studies import common
from optbench.sweeps import expand_grid, run_sweep
from optbench.training import train

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32)
TIMED = ("seconds", "elapsed_seconds")

#: ``python sweep.py STORE CONFIGS [READY GO]``: sweeps CONFIGS (JSON) into STORE and prints each record's
#: checksum; with READY and GO it prepares everything, touches READY and starts only once GO exists
SWEEP = """
import json, sys, time
from pathlib import Path
from optbench.config import RunConfig
from optbench.store import ResultsStore
from optbench.sweeps import run_sweep
from optbench.training import preflight

configs = [RunConfig.from_dict(values) for values in json.loads(sys.argv[2])]
if len(sys.argv) > 3:
    preflight(configs)  # load the data now, so that both sweeps start training together
    Path(sys.argv[3]).touch()
    deadline = time.monotonic() + 120
    while not Path(sys.argv[4]).exists() and time.monotonic() < deadline:
        time.sleep(0.002)
records = run_sweep(configs, ResultsStore(sys.argv[1]), progress=False)
print(json.dumps({record["id"]: record["checksum"] for record in records}))
"""


def sweep_command(tmp_path, root, configs, *start_line):
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    return [sys.executable, str(script), str(root), json.dumps([config.to_dict() for config in configs]), *map(str, start_line)]


def subprocess_env(**variables) -> dict:
    return {**os.environ, "OPTBENCH_NUM_THREADS": "1", **variables}


def valid_record(path) -> dict:
    """The record in ``path``, after checking that it parses as strict JSON and passes the schema and checksum."""
    record = parse_record(path.read_bytes())
    check_record(record, path.name[: -len(".json")])
    return record


def untimed(record: dict) -> list[dict]:
    return finite_or_none([{key: value for key, value in row.items() if key not in TIMED} for row in record["epochs"]])


def leftovers(root) -> list[str]:
    """Temporary files of atomic writes, and quarantined records, anywhere in the store."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.name.endswith(".tmp") or ".corrupt-" in path.name)


def test_a_sweep_killed_in_the_middle_of_a_run_resumes_with_the_same_command(tmp_path, monkeypatch):
    root = tmp_path / "store"
    store = ResultsStore(root)
    # long enough runs (40 epochs, a checkpoint after each) that the kill lands inside the second one
    configs = expand_grid(dict(optimizer="sgd", num_epochs=40, **TINY), lr=[0.05, 0.1, 0.2])
    first, second, third = (config.run_id for config in configs)
    command = sweep_command(tmp_path, root, configs)
    # one run at a time, so that the kill lands between known points (test_executors kills the other backends)
    env = subprocess_env(OPTBENCH_EXECUTOR="serial")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    checked = 0
    try:
        while True:
            # at every moment, every record file in the store is whole and valid
            for path in root.glob("*.json"):
                valid_record(path)
                checked += 1
            if store.path_for(first).exists() and store.checkpoint_path(second).exists():
                process.send_signal(signal.SIGKILL)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the sweep ended before it could be killed: {process.communicate()}")
            time.sleep(0.002)
    finally:
        if process.poll() is None and process.returncode is None:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and checked > 0
    first_bytes = store.path_for(first).read_bytes()
    valid_record(store.path_for(first))
    assert not store.path_for(second).exists() and not store.path_for(third).exists()
    with store.lock(second, blocking=False) as held:
        assert held  # the killed process's lock died with it
    checkpointed_epochs = len(torch.load(store.checkpoint_path(second), weights_only=True)["epochs"])
    assert 1 <= checkpointed_epochs < 40

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    checksums = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert store.path_for(first).read_bytes() == first_bytes  # the finished record was kept, not redone
    records = {run_id: valid_record(store.path_for(run_id)) for run_id in (first, second, third)}
    assert checksums == {run_id: record["checksum"] for run_id, record in records.items()}
    assert records[second]["provenance"]["resumed_from_epoch"] == checkpointed_epochs
    assert all(record["status"] == "finished" and len(record["epochs"]) == 40 for record in records.values())
    assert list(store.checkpoint_path(second).parent.iterdir()) == [] and leftovers(root) == []
    # the interrupted run, resumed in another process, has exactly the metrics of an uninterrupted run
    monkeypatch.setenv("OPTBENCH_NUM_THREADS", "1")
    assert untimed(records[second]) == untimed(train(configs[1], progress=False))


def test_two_sweeps_over_overlapping_grids_leave_one_valid_record_per_configuration(tmp_path):
    root = tmp_path / "store"
    store = ResultsStore(root)
    base = dict(optimizer="sgd", num_epochs=15, **TINY)
    # both start with the shared configurations, so that they meet on them at once
    grid_a = expand_grid(base, lr=[0.02, 0.05, 0.01])
    grid_b = expand_grid(base, lr=[0.02, 0.05, 0.1])
    processes = []
    for name, grid in (("a", grid_a), ("b", grid_b)):
        command = sweep_command(tmp_path, root, grid, tmp_path / f"ready-{name}", tmp_path / "go")
        processes.append(subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 180
    while not all((tmp_path / f"ready-{name}").exists() for name in "ab"):
        assert time.monotonic() < deadline and all(process.poll() is None for process in processes), "a sweep failed to start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(json.loads(stdout.strip().splitlines()[-1]))
    expected = {config.run_id for config in grid_a + grid_b}
    assert len(expected) == 4
    assert sorted(path.name for path in root.glob("*.json")) == sorted(f"{run_id}.json" for run_id in expected)
    stored = {run_id: valid_record(store.path_for(run_id)) for run_id in expected}
    # each sweep got the one record that is in the store: no configuration was trained twice (a second
    # training would have sealed a record with other timings, and one of the two would differ from the file)
    for output, grid in zip(outputs, (grid_a, grid_b)):
        assert output == {config.run_id: stored[config.run_id]["checksum"] for config in grid}
    assert leftovers(root) == [] and list((root / "checkpoints").iterdir()) == []


def _reject_non_finite(name):
    raise AssertionError(f"{name} in a record: records must be strict JSON")


def test_a_diverging_configuration_is_recorded_as_diverged_and_the_sweep_goes_on(tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = expand_grid(dict(optimizer="sgd", num_epochs=5, **TINY), lr=[0.1, 1e6, 0.05])
    records = run_sweep(configs, store, progress=False)
    assert [record["status"] for record in records] == ["finished", "diverged", "finished"]
    diverged = records[1]
    assert diverged["diverged_epoch"] == len(diverged["epochs"]) < 5
    assert all(len(record["epochs"]) == 5 for record in (records[0], records[2]))
    # the stored file is strict JSON: the non-finite losses of the diverged epoch are null
    text = store.path_for(configs[1].run_id).read_text()
    stored = json.loads(text, parse_constant=_reject_non_finite)
    last = stored["epochs"][-1]
    assert last["train_loss"] is None and last["test_loss"] is None and last["test_accuracy"] is None
    assert all(row["train_loss"] is not None for row in stored["epochs"][:-1])
    # back in a DataFrame they are NaN; the book's summaries count the run as diverged
    frame = store.dataframe([config.run_id for config in configs])
    rows = frame[frame["run_id"] == configs[1].run_id]
    assert rows["train_loss"].dtype == float and math.isnan(rows["train_loss"].iloc[-1])
    assert (rows["status"] == "diverged").all() and (rows["diverged_epoch"] == diverged["diverged_epoch"]).all()
    groups = {"SGD": configs}
    summary = common.per_run_summary(common.label_frame(frame, groups))
    table = common.results_table(summary, list(groups))
    assert table.loc["SGD", "diverged"] == 1 and table.loc["SGD", "collapsed"] == 0
    assert sorted(summary["status"]) == ["diverged", "finished", "finished"]

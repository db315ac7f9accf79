"""Checkpoints: a run killed (SIGKILL, a real process) resumes from its last checkpoint to exactly the metrics
of an uninterrupted run; checkpoints load weights-only and a bad checkpoint only costs a fresh start."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import warnings

import pytest
import torch

from optbench import optim
from optbench.checkpoints import CheckpointWarning
from optbench.config import RunConfig
from optbench.runs import run
from optbench.records import finite_or_none
from optbench.store import ResultsStore
from optbench.training import train

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32)
TIMED = ("seconds", "elapsed_seconds")

#: ``python killed_runs.py CONFIGS CHECKPOINTS``: loads torch and the data once, then forks one child process
#: per configuration, which trains it with a checkpoint every 2 epochs and SIGKILLs itself at the end of
#: epoch 3 (after the checkpoint of epoch 2, with epoch 3's work not checkpointed); prints how each child ended
KILLED_RUNS = """
import json, os, signal, sys, traceback
from pathlib import Path
from optbench.config import RunConfig
from optbench.training import configure_threads, prepare_data, train

configs = [RunConfig.from_dict(values) for values in json.loads(sys.argv[1])]
checkpoints = json.loads(sys.argv[2])
configure_threads()
prepare_data(configs[0], "cpu")  # imports and data once, before forking

def on_epoch_end(row):
    if row["epoch"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)

endings = []
for config, checkpoint in zip(configs, checkpoints):
    child = os.fork()
    if child == 0:  # reaches an exit only if the kill did not happen
        try:
            train(config, device="cpu", progress=False, checkpoint_path=Path(checkpoint), checkpoint_every=2, on_epoch_end=on_epoch_end)
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    _, status = os.waitpid(child, 0)
    endings.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
print(json.dumps(endings))
"""


class Interrupted(Exception):
    """Raised from ``on_epoch_end`` to stop a run in this process after a given epoch."""


def stop_after(epoch: int):
    def on_epoch_end(row):
        if row["epoch"] == epoch:
            raise Interrupted

    return on_epoch_end


def untimed(record: dict) -> list[dict]:
    """The epoch rows without the measured seconds (which no two runs share); NaN as None, as stored."""
    return finite_or_none([{key: value for key, value in row.items() if key not in TIMED} for row in record["epochs"]])


def subprocess_env() -> dict:
    return {**os.environ, "OPTBENCH_NUM_THREADS": "1"}


def has_learning_rate(name: str) -> bool:
    optimizer = optim.make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))])
    return all("lr" in group for group in optimizer.param_groups)


@pytest.mark.parametrize("name", optim.available())
def test_every_registered_optimizer_resumes_exactly_from_its_checkpoint(name, tmp_path):
    # a multistep schedule whose milestone lies after the checkpoint: the scheduler state must carry over
    schedule = dict(scheduler="multistep", scheduler_options={"milestones": [2]}) if has_learning_rate(name) else {}
    config = RunConfig(optimizer=name, num_epochs=3, **schedule, **TINY)
    checkpoint = tmp_path / "checkpoints" / f"{config.run_id}.pt"
    uninterrupted = train(config, progress=False)
    with pytest.raises(Interrupted):
        train(config, progress=False, checkpoint_path=checkpoint, on_epoch_end=stop_after(2))
    content = torch.load(checkpoint, weights_only=True)
    assert [row["epoch"] for row in content["epochs"]] == [1, 2]
    resumed = train(config, progress=False, checkpoint_path=checkpoint)
    assert resumed["provenance"]["resumed_from_epoch"] == 2
    assert untimed(resumed) == untimed(uninterrupted)
    assert resumed["status"] == uninterrupted["status"]


def test_runs_killed_with_sigkill_resume_to_the_metrics_of_uninterrupted_runs(tmp_path, monkeypatch):
    configs = {
        "sgd_multistep": RunConfig(optimizer="sgd", num_epochs=5, hyperparameters={"lr": 0.1, "momentum": 0.9},
                                   scheduler="multistep", scheduler_options={"milestones": [2, 4]}, **TINY),
        "lookahead_adam": RunConfig(optimizer="lookahead", num_epochs=5, hyperparameters={"inner": "adam", "k": 3}, **TINY),
        "svrg": RunConfig(optimizer="svrg", num_epochs=5, hyperparameters={"lr": 0.05, "momentum": 0.5}, **TINY),
    }
    script = tmp_path / "killed_runs.py"
    script.write_text(KILLED_RUNS)
    checkpoints = {label: tmp_path / label / "run.pt" for label in configs}
    command = [sys.executable, str(script), json.dumps([config.to_dict() for config in configs.values()]),
               json.dumps([str(path) for path in checkpoints.values()])]
    result = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [-signal.SIGKILL] * len(configs)
    monkeypatch.setenv("OPTBENCH_NUM_THREADS", "1")
    resumed_records = {}
    for label, config in configs.items():
        checkpoint = checkpoints[label]
        # the kill left the checkpoint of epoch 2 whole, and no half-written file beside it
        assert sorted(path.name for path in checkpoint.parent.iterdir()) == ["run.pt"]
        content = torch.load(checkpoint, weights_only=True)
        assert [row["epoch"] for row in content["epochs"]] == [1, 2], label
        resumed = resumed_records[label] = train(config, progress=False, checkpoint_path=checkpoint)
        uninterrupted = train(config, progress=False)
        assert resumed["provenance"]["resumed_from_epoch"] == 2
        assert untimed(resumed) == untimed(uninterrupted), label
    # the resumed multistep run's learning rates follow the milestones across the resume point
    sgd_lrs = [row["lr"] for row in resumed_records["sgd_multistep"]["epochs"]]
    assert sgd_lrs == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


class CreatesAFile:
    """Unpickling this runs ``Path.touch``: what a hostile pickle could do instead."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_a_checkpoint_is_loaded_weights_only_and_pickled_code_never_runs(tmp_path):
    config = RunConfig(optimizer="adam", num_epochs=3, **TINY)
    checkpoint = tmp_path / "run.pt"
    marker = tmp_path / "code-ran"
    torch.save({"format": 1, "run_id": config.run_id, "payload": CreatesAFile(marker)}, checkpoint)
    with pytest.warns(CheckpointWarning, match="run.pt.*starts from scratch"):
        record = train(config, progress=False, checkpoint_path=checkpoint)
    assert not marker.exists()
    assert record["provenance"]["resumed_from_epoch"] is None
    assert untimed(record) == untimed(train(config, progress=False))


@pytest.mark.parametrize("damage", ["truncated", "empty", "another run's", "not a checkpoint"])
def test_a_damaged_or_foreign_checkpoint_is_reported_and_the_run_starts_from_scratch(damage, tmp_path):
    config = RunConfig(optimizer="sgd", num_epochs=4, hyperparameters={"lr": 0.05}, **TINY)
    other = RunConfig(optimizer="sgd", num_epochs=4, hyperparameters={"lr": 0.2}, **TINY)
    checkpoint = tmp_path / "run.pt"
    source = other if damage == "another run's" else config
    with pytest.raises(Interrupted):
        train(source, progress=False, checkpoint_path=checkpoint, on_epoch_end=stop_after(2))
    content = checkpoint.read_bytes()
    if damage == "truncated":
        checkpoint.write_bytes(content[: len(content) // 2])
    elif damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "not a checkpoint":
        torch.save({"model": torch.zeros(3)}, checkpoint)
    with pytest.warns(CheckpointWarning, match="ignoring checkpoint"):
        record = train(config, progress=False, checkpoint_path=checkpoint)
    assert record["provenance"]["resumed_from_epoch"] is None
    assert untimed(record) == untimed(train(config, progress=False))


def test_run_resumes_from_the_stores_checkpoint_and_deletes_it_with_the_record_saved(tmp_path):
    store = ResultsStore(tmp_path / "store")
    config = RunConfig(optimizer="lookahead", num_epochs=4, **TINY)
    checkpoint = store.checkpoint_path(config.run_id)
    assert checkpoint == store.root / "checkpoints" / f"{config.run_id}.pt"
    with pytest.raises(Interrupted):
        train(config, progress=False, checkpoint_path=checkpoint, on_epoch_end=stop_after(3))
    # a temporary file as a process killed while writing a checkpoint leaves it
    leftover = checkpoint.with_name(f".{checkpoint.name}.killed.tmp")
    leftover.write_bytes(b"half a checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = run(config, store, progress=False)
    assert record["provenance"]["resumed_from_epoch"] == 3
    assert untimed(record) == untimed(train(config, progress=False))
    assert list(checkpoint.parent.iterdir()) == []
    # force starts from scratch even where a checkpoint exists
    with pytest.raises(Interrupted):
        train(config, progress=False, checkpoint_path=checkpoint, on_epoch_end=stop_after(2))
    forced = run(config, store, force=True, progress=False)
    assert forced["provenance"]["resumed_from_epoch"] is None and untimed(forced) == untimed(record)
    assert not checkpoint.exists()


def test_checkpoints_are_written_every_few_epochs_and_not_after_the_last(tmp_path):
    config = RunConfig(optimizer="sgd", num_epochs=5, **TINY)
    checkpoint = tmp_path / "run.pt"
    seen = []

    def on_epoch_end(row):
        seen.append((row["epoch"], len(torch.load(checkpoint, weights_only=True)["epochs"]) if checkpoint.exists() else 0))

    train(config, progress=False, checkpoint_path=checkpoint, checkpoint_every=2, on_epoch_end=on_epoch_end)
    assert seen == [(1, 0), (2, 2), (3, 2), (4, 4), (5, 4)]

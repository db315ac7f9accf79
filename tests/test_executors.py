"""The sweep backends with real processes: the pool and Ray (a cluster on loopback, and a local instance
started for the sweep) give the serial backend's records, bit for bit; a worker killed mid-run is retried
from its checkpoint; a run whose worker keeps dying fails after bounded retries and leaves no record; a
sweep killed on one backend finishes on another with the same records; a killed driver leaves no worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from optbench import executors
from optbench.checkpoints import CheckpointWarning
from optbench.config import RunConfig
from optbench.executors import ExecutorSettings, Failed, RunFailedError, RunTask, WorkerDiedWarning
from optbench.executors.pool import PoolSession, stop_idle_workers
from optbench.records import check_record, parse_record
from optbench.store import ResultsStore
from optbench.sweeps import expand_grid, run_sweep

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32)
GRID = expand_grid(dict(optimizer="sgd", num_epochs=2, **TINY), lr=[0.05, 0.2], seed=[0, 1])
#: long enough (a checkpoint after each epoch) for a kill to land inside the run
LONG = RunConfig(optimizer="adam", num_epochs=40, **TINY)
TIMED = ("seconds", "elapsed_seconds")


def metrics(record: dict) -> tuple:
    """What must be identical whatever the backend: id, configuration, status and every untimed metric."""
    rows = [{key: value for key, value in row.items() if key not in TIMED} for row in record["epochs"]]
    return record["id"], record["config"], record["status"], record["diverged_epoch"], rows


@pytest.fixture(scope="module")
def serial_records(tmp_path_factory) -> dict:
    store = ResultsStore(tmp_path_factory.mktemp("serial"))
    records = run_sweep(GRID + [LONG], store, progress=False, executor="serial")
    assert {record["provenance"]["executor"] for record in records} == {"serial"}
    return {record["id"]: record for record in records}


def assert_same_records(records: list[dict], serial_records: dict, executor: str) -> None:
    for record in records:
        assert metrics(record) == metrics(serial_records[record["id"]])
        assert record["provenance"]["executor"] == executor
        assert record["provenance"]["num_threads"] == serial_records[record["id"]]["provenance"]["num_threads"]


def children_running(marker: str, ancestor: int) -> list[int]:
    """Processes below ``ancestor`` whose command line contains ``marker``."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "stat").read_text()
                parents[int(entry.name)] = int(status.rsplit(")", 1)[1].split()[1])
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def below(pid: int) -> bool:
        while pid in parents and pid > 1:
            pid = parents[pid]
            if pid == ancestor:
                return True
        return False

    return [pid for pid, command in commands.items() if marker in command and below(pid)]


class Killer(threading.Thread):
    """Kills, with SIGKILL, the worker training a run each time the run writes a new checkpoint (at most ``times``)."""

    def __init__(self, checkpoint: Path, marker: str, ancestor: int, times: int = 1):
        super().__init__(daemon=True)
        self.checkpoint, self.marker, self.ancestor, self.times = checkpoint, marker, ancestor, times
        self.killed: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        seen = None
        while not self.stop.is_set() and len(self.killed) < self.times:
            try:
                stamp = self.checkpoint.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = None
            if stamp is not None and stamp != seen:
                for pid in children_running(self.marker, self.ancestor):
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    seen = stamp
            time.sleep(0.003)


def test_the_pool_gives_the_serial_records(serial_records, tmp_path):
    records = run_sweep(GRID, ResultsStore(tmp_path / "pool"), progress=False, executor="pool")
    assert_same_records(records, serial_records, "pool")


def test_the_default_moves_to_a_pool_only_when_the_runs_are_long_enough(serial_records, tmp_path):
    stop_idle_workers()
    two_workers = executors.available_cores() // executors.threads_per_run() >= 2
    # tiny runs: starting workers would never pay off, so everything trains in this process
    records = run_sweep(GRID, ResultsStore(tmp_path / "tiny"), progress=False)
    assert_same_records(records, serial_records, "serial")
    # runs that last long enough: after the first (timed) run, a pool trains the rest
    records = run_sweep(GRID, ResultsStore(tmp_path / "long"), progress=False, executor=ExecutorSettings(pool_after_seconds=0))
    assert [record["provenance"]["executor"] for record in records] == ["serial"] + ["pool" if two_workers else "serial"] * 3
    for record in records:
        assert metrics(record) == metrics(serial_records[record["id"]])
    # its workers stay warm for the next sweep of this process, which then uses them at once
    records = run_sweep(GRID, ResultsStore(tmp_path / "warm"), progress=False)
    assert_same_records(records, serial_records, "pool" if two_workers else "serial")


def test_warnings_of_a_worker_reach_the_driver(serial_records, tmp_path):
    store = ResultsStore(tmp_path / "pool")
    config = GRID[0]
    store.checkpoint_path(config.run_id).parent.mkdir(parents=True)
    store.checkpoint_path(config.run_id).write_bytes(b"not a checkpoint")
    with pytest.warns(CheckpointWarning, match=f"ignoring checkpoint .*{config.run_id}.pt.*starts from scratch"):
        records = run_sweep(GRID, store, progress=False, executor="pool")
    assert_same_records(records, serial_records, "pool")


def test_a_profile_names_the_backend_and_the_environment_overrides_it(tmp_path, monkeypatch):
    from optbench import book

    repository = Path(__file__).resolve().parents[1]
    for item in ("notebooks", "profiles"):
        shutil.copytree(repository / item, tmp_path / item)
    (tmp_path / "profiles" / "cluster.yaml").write_text("executor: pool\nnotebooks:\n  study1_optimizers: {}\n")
    assert "study1_optimizers" in book.load_profile("cluster", tmp_path, check_data=False)
    applied = {}

    def record_environment(*arguments, **keywords):  # what the kernel of the first notebook would inherit
        applied["executor"] = os.environ.get("OPTBENCH_EXECUTOR")
        raise KeyboardInterrupt

    monkeypatch.setattr("optbench.execution.execute_notebook", record_environment)
    for environment, expected in ((None, "pool"), ("serial", "serial")):
        if environment is None:
            monkeypatch.delenv("OPTBENCH_EXECUTOR", raising=False)
        else:
            monkeypatch.setenv("OPTBENCH_EXECUTOR", environment)
        before = dict(os.environ)
        with pytest.raises(KeyboardInterrupt):
            book.execute_notebooks("cluster", tmp_path, only=["study1_optimizers"], log=lambda line: None)
        assert applied["executor"] == expected
        assert dict(os.environ) == before  # what the kernels were given does not outlive the call


def test_an_error_in_a_worker_reaches_the_driver(tmp_path):
    session = PoolSession(ExecutorSettings("pool", workers=1), 1, 1, torch.device("cpu"))
    try:
        # a worker whose code gives the configuration another id than the driver's refuses it
        session.submit(RunTask("sgd-000000000000", GRID[0].to_dict(), "cpu", None, None, 1))
        task, outcome = session.wait()
    finally:
        session.close()
    assert isinstance(outcome, Failed) and isinstance(outcome.error, RuntimeError)
    assert f"gives run sgd-000000000000 the id {GRID[0].run_id}" in str(outcome.error)


def test_a_pool_worker_killed_mid_run_is_retried_from_its_checkpoint(serial_records, tmp_path):
    stop_idle_workers()  # the one worker of this sweep is then the only one
    store = ResultsStore(tmp_path / "pool")
    killer = Killer(store.checkpoint_path(LONG.run_id), "optbench.executors.pool", os.getpid())
    killer.start()
    with pytest.warns(WorkerDiedWarning, match=f"run {LONG.run_id}: worker process .* killed by signal SIGKILL; trying "
                                               "it again \\(attempt 2 of 3\\)"):
        (record,) = run_sweep([LONG], store, progress=False, executor=ExecutorSettings("pool", workers=1))
    killer.stop.set()
    killer.join()
    assert len(killer.killed) == 1
    assert record["provenance"]["resumed_from_epoch"] >= 1
    assert_same_records([record], serial_records, "pool")
    assert list(store.checkpoint_path(LONG.run_id).parent.iterdir()) == []


def test_a_run_whose_worker_keeps_dying_fails_after_the_retries_and_leaves_no_record(tmp_path):
    stop_idle_workers()
    store = ResultsStore(tmp_path / "pool")
    killer = Killer(store.checkpoint_path(LONG.run_id), "optbench.executors.pool", os.getpid(), times=2)
    killer.start()
    with pytest.warns(WorkerDiedWarning, match="attempt 2 of 2"), \
            pytest.raises(RunFailedError, match=f"run {LONG.run_id} failed 2 time\\(s\\): .*SIGKILL; no record was written"):
        run_sweep([LONG], store, progress=False, executor=ExecutorSettings("pool", workers=1, max_retries=1))
    killer.stop.set()
    killer.join()
    assert len(killer.killed) == 2
    assert not store.path_for(LONG.run_id).exists()
    assert [path.name for path in store.root.rglob("*") if path.name.endswith(".tmp")] == []
    # the checkpoint is kept: the next sweep resumes the run
    assert store.checkpoint_path(LONG.run_id).exists()


SWEEP = """
import json, sys
from optbench.config import RunConfig
from optbench.store import ResultsStore
from optbench.sweeps import run_sweep

configs = [RunConfig.from_dict(values) for values in json.loads(sys.argv[2])]
run_sweep(configs, ResultsStore(sys.argv[1]), progress=False)
"""


def start_driver(tmp_path: Path, root: Path, configs: list[RunConfig], executor: str, **variables) -> subprocess.Popen:
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    env = {**os.environ, "OPTBENCH_EXECUTOR": executor, "OPTBENCH_NUM_THREADS": str(executors.threads_per_run()), **variables}
    return subprocess.Popen([sys.executable, str(script), str(root), json.dumps([c.to_dict() for c in configs])],
                            env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the sweep ended before the moment came: {process.communicate()}")
        time.sleep(0.003)


def test_a_killed_driver_leaves_no_worker_behind(tmp_path):
    store = ResultsStore(tmp_path / "store")
    driver = start_driver(tmp_path, store.root, [LONG], "pool")
    wait_for(lambda: store.checkpoint_path(LONG.run_id).exists(), driver)
    workers = children_running("optbench.executors.pool", driver.pid)
    assert len(workers) == 1
    driver.kill()  # the driver alone, not its process group: the worker must notice by itself
    driver.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
              for pid in workers):
        assert time.monotonic() < deadline, "the worker outlived its driver"
        time.sleep(0.05)


# ---- Ray -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: Ray reads its authentication mode once per process (at import), and since Ray 2.59 a cluster turns token
#: authentication on by itself where ~/.ray/auth_token exists: the cluster, the local instances and this
#: process are all given this process's mode explicitly (unset: disabled), so that they agree whatever the
#: machine holds, and nothing is written to ~/.ray
RAY_AUTH = {"RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}


@pytest.fixture
def ray_auth(monkeypatch):
    for name, value in RAY_AUTH.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A Ray cluster of one node on the loopback interface, started as a user would (``ray start --head``)."""
    port = free_port()
    log = tmp_path_factory.mktemp("ray") / "head.log"
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"]
    with open(log, "w") as stream:
        head = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **RAY_AUTH})
    try:
        deadline = time.monotonic() + 90
        while "will now block forever" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield f"127.0.0.1:{port}", head.pid
    finally:
        head.terminate()  # ray start --block stops the node's processes when terminated
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_ray_on_a_cluster_by_address_gives_the_serial_records_and_retries_a_killed_worker(
        serial_records, ray_cluster, ray_auth, tmp_path, monkeypatch):
    address, head = ray_cluster
    monkeypatch.setenv("OPTBENCH_EXECUTOR", "ray")
    monkeypatch.setenv("OPTBENCH_RAY_ADDRESS", address)
    store = ResultsStore(tmp_path / "ray")
    # the worker of the long run is killed once it has checkpointed; its retry resumes there
    killer = Killer(store.checkpoint_path(LONG.run_id), f"ray::optbench:{LONG.run_id}", head)
    killer.start()
    with pytest.warns(WorkerDiedWarning, match=f"run {LONG.run_id}: its Ray worker died .*attempt 2 of 3"):
        records = run_sweep([LONG, *GRID], store, progress=False)
    killer.stop.set()
    killer.join()
    assert len(killer.killed) == 1
    assert_same_records(records, serial_records, "ray")
    assert records[0]["provenance"]["resumed_from_epoch"] >= 1
    for record in records:  # written by the driver, with the store's rules
        check_record(parse_record(store.path_for(record["id"]).read_bytes()), record["id"])
    assert list(store.checkpoint_path(LONG.run_id).parent.iterdir()) == []


def test_a_sweep_killed_on_the_pool_finishes_on_a_local_ray_instance_with_the_same_records(serial_records, ray_auth, tmp_path):
    store = ResultsStore(tmp_path / "store")
    configs = [*GRID[:2], LONG, *GRID[2:]]
    driver = start_driver(tmp_path, store.root, configs, "pool", OPTBENCH_WORKERS="1")
    # the moment: a record written, and the long run part-way through
    wait_for(lambda: any(store.root.glob("*.json")) and store.checkpoint_path(LONG.run_id).exists(), driver)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its workers at once, like a killed terminal
    driver.communicate(timeout=60)
    finished = {path.name: path.read_bytes() for path in store.root.glob("*.json")}
    checkpointed = len(torch.load(store.checkpoint_path(LONG.run_id), weights_only=True)["epochs"])
    assert finished and LONG.run_id + ".json" not in finished and 1 <= checkpointed < LONG.num_epochs

    records = run_sweep(configs, store, progress=False, executor="ray")  # no address: a local instance
    assert {name: store.root.joinpath(name).read_bytes() for name in finished} == finished  # not retrained
    for record in records:
        assert metrics(record) == metrics(serial_records[record["id"]])
        expected = "pool" if record["id"] + ".json" in finished else "ray"
        assert record["provenance"]["executor"] == expected
    long_record = next(record for record in records if record["id"] == LONG.run_id)
    assert long_record["provenance"]["resumed_from_epoch"] == checkpointed
    assert sorted(path.name for path in store.root.glob("*.json")) == sorted(f"{c.run_id}.json" for c in configs)
    assert list(store.checkpoint_path(LONG.run_id).parent.iterdir()) == []

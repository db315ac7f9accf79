"""A full disk, for real: the store on a tiny tmpfs mounted in a private mount namespace (``unshare``), filled
so that each kind of write hits it. Whichever write it is (a checkpoint in this process or in a pool worker,
a record, the check before training), the sweep stops with one "no space left on device" error naming the
path, and nothing half-written is left in the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from optbench.config import RunConfig

TINY = dict(model="mlp", image_size=8, max_train_examples=128, batch_size=32)
#: about 1.2 MB of checkpoint (weights and momentum of a 64-2048-10 network): more than the disk holds
BIG = RunConfig(optimizer="sgd", num_epochs=3, model_options={"hidden_sizes": [2048]}, **TINY)
SMALL = RunConfig(optimizer="sgd", num_epochs=1, model_options={"hidden_sizes": [16]}, **TINY)

#: ``python full_disk.py MOUNT SIZE INODES FILL EXECUTOR CONFIG``, run as root of a new mount namespace: mounts
#: a tmpfs of SIZE bytes and INODES inodes at MOUNT, fills it if FILL, sweeps CONFIG into MOUNT/store and
#: prints what happened as JSON
FULL_DISK = """
import json, os, subprocess, sys
from pathlib import Path
mount, size, inodes, fill, executor, config = sys.argv[1:]
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", mount], check=True)
from optbench.config import RunConfig
from optbench.store import ResultsStore
from optbench.sweeps import run_sweep

store = ResultsStore(Path(mount) / "store")
if fill == "yes":  # everything but the store's own directories
    store.root.joinpath("locks").mkdir(parents=True)
    with open(Path(mount) / "filler", "wb", buffering=0) as stream:
        try:
            while True:
                stream.write(b"x" * 4096)
        except OSError:
            pass
try:
    run_sweep([RunConfig.from_dict(json.loads(config))], store, progress=False, executor=executor)
    outcome = {"error": None}
except Exception as error:
    outcome = {"error": str(error), "type": type(error).__name__}
outcome["files"] = sorted(str(path.relative_to(store.root)) for path in store.root.rglob("*")) if store.root.exists() else []
print(json.dumps(outcome))
"""


def run_on_a_full_disk(tmp_path, size: str, inodes: int, fill: bool, executor: str, config: RunConfig) -> dict:
    if shutil.which("unshare") is None:
        pytest.fail("these tests need util-linux's unshare (a private mount namespace for a small tmpfs)")
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["unshare", "--mount", "--map-root-user", sys.executable, str(script), str(mount), size, str(inodes),
               "yes" if fill else "no", executor, json.dumps(config.to_dict())]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OPTBENCH_NUM_THREADS": "1"})
    assert result.returncode == 0, f"the full-disk sweep could not run here: {result.stderr[-3000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_one_clear_error(outcome: dict, path: str) -> None:
    assert outcome["type"] == "NoSpaceLeftError", outcome
    message = outcome["error"]
    assert message.startswith("no space left on device: cannot write ") and path in message, message
    assert "unexpected pos" not in message and "Traceback" not in message
    # nothing half-written: no temporary files, no record
    assert not [name for name in outcome["files"] if name.endswith(".tmp") or name.endswith(".json")], outcome["files"]


@pytest.mark.parametrize("executor", ["serial", "pool"])
def test_a_checkpoint_that_does_not_fit_is_reported_with_its_path(executor, tmp_path):
    outcome = run_on_a_full_disk(tmp_path, "256k", 100, False, executor, BIG)
    assert_one_clear_error(outcome, f"checkpoints/{BIG.run_id}.pt")


def test_a_record_that_does_not_fit_is_reported_with_its_path(tmp_path):
    outcome = run_on_a_full_disk(tmp_path, "256k", 100, True, "serial", SMALL)
    assert_one_clear_error(outcome, f"{SMALL.run_id}.json")


def test_a_disk_out_of_inodes_is_reported_before_training(tmp_path):
    # the mount point takes the only inode: not even the store's directory can be created
    outcome = run_on_a_full_disk(tmp_path, "256k", 1, False, "serial", SMALL)
    assert_one_clear_error(outcome, "disk/store;")
    assert outcome["files"] == []

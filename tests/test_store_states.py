"""The store's view of its files: records listed by state (finished, diverged, stale, corrupt); stale records
(made by older code) reported with what changed and recomputed; files that are not regular files (FIFOs,
sockets, directories, symlinks) reported and moved aside without ever being opened or followed."""

from __future__ import annotations

import copy
import faulthandler
import json
import os
import socket
import warnings

import pytest

from optbench.checkpoints import CheckpointWarning
from optbench.config import RunConfig
from optbench.records import STATES, record_checksum, stored_config_id
from optbench.runs import run
from optbench.store import CorruptRecordWarning, ResultsStore, StaleRecordWarning
from optbench.sweeps import run_sweep
from optbench.training import train

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32)
CONFIG = RunConfig(optimizer="sgd", num_epochs=2, hyperparameters={"lr": 0.05}, **TINY)
TIMED = ("seconds", "elapsed_seconds")


@pytest.fixture(autouse=True)
def never_hang():
    """A read that blocks (a FIFO opened for reading) would hang the suite: end it with a traceback instead."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> dict:
    store = ResultsStore(tmp_path_factory.mktemp("original"))
    return run(CONFIG, store, progress=False)


def untimed(record: dict) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in TIMED} for row in record["epochs"]]


def as_older_code_wrote_it(record: dict, edit_config) -> dict:
    """``record`` as an older optbench would have written it: its configuration edited by ``edit_config``,
    and the id and checksum that configuration had then."""
    old = copy.deepcopy(record)
    edit_config(old["config"])
    old["id"] = stored_config_id(old["config"])
    old["checksum"] = record_checksum(old)
    return old


def write_record(store: ResultsStore, record: dict) -> None:
    store.root.mkdir(parents=True, exist_ok=True)
    store.path_for(record["id"]).write_text(json.dumps(record))


def test_a_record_of_older_code_is_stale_says_what_changed_and_is_recomputed(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    # the older code had no "nesterov" hyperparameter: its records lack it, and their ids hash that
    old = as_older_code_wrote_it(original, lambda config: config["hyperparameters"].pop("nesterov"))
    assert old["id"] != CONFIG.run_id
    write_record(store, old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listing moves nothing and warns about nothing
        (entry,) = store.entries()
    assert entry.state == "stale" and entry.run_id == old["id"] and entry.current_id == CONFIG.run_id
    assert "hyperparameters.nesterov: absent in the record, False now" in entry.reason
    assert entry.record == old and not entry.intact
    # readers leave it out (not corrupt: nothing is moved aside), and report it once, not at every read
    with pytest.warns(StaleRecordWarning, match="stale record.*nesterov.*left out of the results"):
        assert list(store.records()) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.dataframe().empty
    assert store.moved_aside() == [] and store.path_for(old["id"]).exists()
    # the sweep that asks for the configuration under the current code reports it and recomputes it
    with pytest.warns(StaleRecordWarning, match=f"{old['id']}.json.*{CONFIG.run_id}.*recomputed under its new id"):
        (record,) = run_sweep([CONFIG], store, progress=False)
    assert record["id"] == CONFIG.run_id and untimed(record) == untimed(original)
    assert {entry.state: entry.run_id for entry in store.entries()} == {"finished": CONFIG.run_id, "stale": old["id"]}
    # what `optbench clean --stale` does
    (stale,) = store.entries(["stale"])
    assert store.remove(stale) and not store.path_for(old["id"]).exists()
    assert [entry.state for entry in store.entries()] == ["finished"]


def test_a_record_whose_setting_no_longer_exists_is_stale_without_a_new_id(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    old = as_older_code_wrote_it(original, lambda config: config.update(warmup_epochs=0))
    write_record(store, old)
    (entry,) = store.entries()
    assert entry.state == "stale" and entry.current_id is None
    assert "no longer valid" in entry.reason and "'warmup_epochs'" in entry.reason


def test_an_edited_record_is_corrupt_not_stale(original, tmp_path):
    """An edit keeps the old id, which then is not the hash of the stored configuration: that is damage."""
    store = ResultsStore(tmp_path / "store")
    edited = copy.deepcopy(original)
    edited["config"]["hyperparameters"].pop("nesterov")
    edited["checksum"] = record_checksum(edited)
    write_record(store, edited)
    (entry,) = store.entries()
    assert entry.state == "corrupt" and "does not match its configuration" in entry.reason


def test_records_are_listed_by_state_and_the_listing_changes_nothing(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    diverged_config = RunConfig(optimizer="sgd", num_epochs=5, hyperparameters={"lr": 1e6}, **TINY)
    run_sweep([CONFIG, diverged_config], store, progress=False, executor="serial")
    stale = as_older_code_wrote_it(original, lambda config: config["hyperparameters"].pop("nesterov"))
    write_record(store, stale)
    truncated = RunConfig(optimizer="sgd", num_epochs=2, seed=5, **TINY).run_id
    store.path_for(truncated).write_text(json.dumps(original)[:100])
    fifo = RunConfig(optimizer="sgd", num_epochs=2, seed=6, **TINY).run_id
    os.mkfifo(store.path_for(fifo))
    store.checkpoint_path(truncated).parent.mkdir(exist_ok=True)
    store.checkpoint_path(truncated).write_bytes(b"a checkpoint")
    before = sorted(os.listdir(store.root))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entries = store.entries()
    assert {entry.run_id: entry.state for entry in entries} == {
        CONFIG.run_id: "finished", diverged_config.run_id: "diverged", stale["id"]: "stale", truncated: "corrupt", fifo: "corrupt"
    }
    assert sorted(os.listdir(store.root)) == before
    by_state = {state: [entry.run_id for entry in store.entries([state])] for state in STATES}
    assert by_state == {"finished": [CONFIG.run_id], "diverged": [diverged_config.run_id], "stale": [stale["id"]],
                        "corrupt": sorted([truncated, fifo])}
    (fifo_entry,) = [entry for entry in entries if entry.run_id == fifo]
    assert fifo_entry.not_regular == "a FIFO (named pipe)" and fifo_entry.record is None
    assert store.in_progress() == [truncated]
    with pytest.raises(ValueError, match="'broken'.*allowed: finished, diverged, stale, corrupt"):
        store.entries(["broken"])
    # a reader moves the corrupt files aside, which the listing then shows as such
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(store.records())
    assert sorted(item.category.__name__ for item in caught) == ["CorruptRecordWarning"] * 2 + ["StaleRecordWarning"]
    assert sorted(path.name.split(".json")[0] for path in store.moved_aside()) == sorted([truncated, fifo])


def test_remove_deletes_only_the_file_that_was_inspected(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    stale = as_older_code_wrote_it(original, lambda config: config["hyperparameters"].pop("nesterov"))
    write_record(store, stale)
    (entry,) = store.entries(["stale"])
    write_record(store, stale | {"provenance": {"note": "rewritten"}})  # another writer replaced the file
    assert not store.remove(entry) and store.path_for(stale["id"]).exists()


def make_socket(path):
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    return server


NOT_REGULAR = {
    "FIFO": ("a FIFO \\(named pipe\\)", lambda path: os.mkfifo(path)),
    "socket": ("a socket", make_socket),
    "directory": ("a directory", lambda path: path.mkdir()),
}


@pytest.mark.parametrize("kind", NOT_REGULAR)
def test_a_non_regular_file_named_like_a_record_is_never_opened_but_moved_aside_and_recomputed(kind, original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    store.root.mkdir(parents=True)
    path = store.path_for(CONFIG.run_id)
    words, make = NOT_REGULAR[kind]
    handle = make(path)
    # opening a FIFO for reading would block this test forever (see never_hang)
    with pytest.warns(CorruptRecordWarning, match=f"{path} is {words}, not a record file; it was not opened, moved to "
                                                  f"{path.name}.corrupt-.*, and the run will be recomputed"):
        (record,) = run_sweep([CONFIG], store, progress=False)
    assert untimed(record) == untimed(original) and path.is_file()
    (aside,) = store.moved_aside()
    assert not aside.is_file() and (aside.is_dir() or aside.is_fifo() or aside.is_socket())
    if handle is not None:
        handle.close()


def test_a_symlink_named_like_a_record_is_not_followed_and_the_warning_says_what_happens(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    store.root.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(original))  # a valid record: still not trusted through a link
    path = store.path_for(CONFIG.run_id)
    path.symlink_to(elsewhere)
    # a reader only leaves the run out
    with pytest.warns(CorruptRecordWarning, match=f"{path} is a symbolic link \\(to '{elsewhere}'\\), not a record file; "
                                                  "it was not followed, moved to .*, and left out of the results") as caught:
        assert list(store.records()) == []
    assert "will be recomputed" not in str(caught[0].message)
    # a run that finds one recomputes it, and says so
    path.symlink_to("/dev/zero")  # an endless "file": following it would never end
    with pytest.warns(CorruptRecordWarning, match="symbolic link \\(to '/dev/zero'\\).*not followed.*the run will be recomputed"):
        record = run(CONFIG, store, progress=False)
    assert untimed(record) == untimed(original)
    assert path.is_file() and not path.is_symlink() and json.loads(elsewhere.read_text()) == original
    assert len(store.moved_aside()) == 2 and all(aside.is_symlink() for aside in store.moved_aside())


@pytest.mark.parametrize("kind", ["FIFO", "symlink"])
def test_a_checkpoint_that_is_not_a_regular_file_is_ignored_without_being_opened(kind, tmp_path):
    config = RunConfig(optimizer="sgd", num_epochs=2, **TINY)
    checkpoint = tmp_path / "run.pt"
    if kind == "FIFO":
        os.mkfifo(checkpoint)
    else:
        checkpoint.symlink_to("/dev/zero")
    with pytest.warns(CheckpointWarning, match="is a (FIFO|symbolic link).*not a regular file.*starts from scratch"):
        record = train(config, progress=False, checkpoint_path=checkpoint)
    assert record["provenance"]["resumed_from_epoch"] is None
    assert untimed(record) == untimed(train(config, progress=False))


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_never_created(tmp_path):
    store = ResultsStore(tmp_path / "store")
    store.lock_path(CONFIG.run_id).parent.mkdir(parents=True)
    target = tmp_path / "elsewhere" / "created-through-the-link"
    target.parent.mkdir()
    store.lock_path(CONFIG.run_id).symlink_to(target)
    with pytest.raises(OSError, match="the lock file is a symbolic link, not a regular file; remove it"):
        run_sweep([CONFIG], store, progress=False, executor="serial")
    assert not target.exists() and not store.path_for(CONFIG.run_id).exists()


def test_a_record_in_the_first_format_is_stale_and_recomputed_in_the_current_one(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    old = copy.deepcopy(original)
    old["schema"] = 1
    old["checksum"] = record_checksum(old)
    write_record(store, old)
    (entry,) = store.entries()
    assert entry.state == "stale" and "record format 1" in entry.reason and entry.current_id == CONFIG.run_id
    with pytest.warns(StaleRecordWarning):
        (record,) = run_sweep([CONFIG], store, progress=False)
    assert record["schema"] == 2 and store.entries()[0].state == "finished"

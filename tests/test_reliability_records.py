"""Corrupted records (real files: truncated, edited, garbage, pickles, ...) are reported by name, moved aside and
recomputed; readers never crash on them; records are strict JSON and nothing in the package unpickles."""

from __future__ import annotations

import json
import pathlib
import pickle
import re
import warnings

import pytest

from optbench.config import RunConfig
from optbench.runs import run
from optbench.records import check_record, parse_record, record_checksum
from optbench.store import CorruptRecordWarning, ResultsStore
from optbench.summary import compute_summary

TINY = dict(model="mlp", model_options={"hidden_sizes": [16]}, image_size=8, max_train_examples=128, batch_size=32)
CONFIG = RunConfig(optimizer="sgd", num_epochs=2, hyperparameters={"lr": 0.05}, **TINY)
SOURCE = pathlib.Path(__file__).resolve().parents[1] / "src" / "optbench"


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> bytes:
    """The bytes of a real record of CONFIG, as the store wrote them."""
    store = ResultsStore(tmp_path_factory.mktemp("original"))
    run(CONFIG, store, progress=False)
    return store.path_for(CONFIG.run_id).read_bytes()


def resealed(content: bytes, edit) -> bytes:
    """The record edited by ``edit(record)`` and given a matching checksum: only the schema check can catch it."""
    record = json.loads(content)
    edit(record)
    record["checksum"] = record_checksum(record)
    return json.dumps(record).encode()


def edited(content: bytes, edit) -> bytes:
    record = json.loads(content)
    edit(record)
    return json.dumps(record).encode()


def set_path(record, keys, value):
    target = record
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value


CORRUPTIONS = {
    "truncated": lambda content: content[: len(content) // 2],
    "empty": lambda content: b"",
    "non-JSON garbage": lambda content: bytes(range(256)) * 4,
    "a pickle renamed .json": lambda content: pickle.dumps(json.loads(content)),
    "a JSON list": lambda content: b"[1, 2, 3]",
    "an edited loss": lambda content: edited(content, lambda r: set_path(r, ["epochs", 0, "train_loss"], 0.01)),
    "an edited status": lambda content: edited(content, lambda r: set_path(r, ["status"], "diverged")),
    "NaN in a metric": lambda content: content.replace(b'"train_loss": ', b'"train_loss": NaN, "was": ', 1),
    "a newer schema": lambda content: resealed(content, lambda r: set_path(r, ["schema"], 3)),
    "a wrong type": lambda content: resealed(content, lambda r: set_path(r, ["epochs", 0, "grad_evals"], "many")),
    "a missing field": lambda content: resealed(content, lambda r: r.pop("provenance")),
    "an unknown optimizer": lambda content: resealed(content, lambda r: set_path(r, ["config", "optimizer"], "sgdx")),
    "another run's record": lambda content: resealed(content, lambda r: set_path(r, ["config", "seed"], 7)),
    "a finished run short of epochs": lambda content: resealed(content, lambda r: r["epochs"].pop()),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_record_is_reported_by_name_moved_aside_and_recomputed(corruption, original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    path = store.path_for(CONFIG.run_id)
    path.parent.mkdir(parents=True)
    damaged = CORRUPTIONS[corruption](original)
    assert damaged != original
    path.write_bytes(damaged)
    # the book's readers: a summary of the store and its DataFrame, neither crashes
    with pytest.warns(CorruptRecordWarning, match=re.escape(path.name)) as caught:
        summary = compute_summary(store)
    assert summary["runs"] == 0
    # a reader only leaves the run out, and says so
    assert "left out of the results" in str(caught[0].message) and "will be recomputed" not in str(caught[0].message)
    asides = list(store.root.glob(f"{path.name}.corrupt-*"))
    assert not path.exists() and len(asides) == 1 and asides[0].read_bytes() == damaged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.dataframe().empty and store.dataframe([CONFIG.run_id]).empty
    # a run that finds the damaged file again recomputes it, and says so
    path.write_bytes(damaged)
    with pytest.warns(CorruptRecordWarning, match="the run will be recomputed"):
        record = run(CONFIG, store, progress=False)
    check_record(parse_record(path.read_bytes()), CONFIG.run_id)
    same = json.loads(original)
    assert [row["train_loss"] for row in record["epochs"]] == [row["train_loss"] for row in same["epochs"]]
    assert asides[0].exists() and len(list(store.root.glob(f"{path.name}.corrupt-*"))) == 2  # kept for the user


def test_the_original_record_is_valid(original):
    check_record(parse_record(original), CONFIG.run_id)


class CreatesAFile:
    """Unpickling this runs ``Path.touch``: what a hostile pickle could do instead."""

    def __init__(self, target: pathlib.Path):
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_a_pickle_in_the_store_is_never_unpickled(tmp_path):
    store = ResultsStore(tmp_path / "store")
    marker = tmp_path / "code-ran"
    path = store.path_for(CONFIG.run_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.warns(CorruptRecordWarning, match="corrupt record"):
        assert store.load(CONFIG.run_id) is None
    assert not marker.exists()


def test_stray_files_leave_the_readers_working(original, tmp_path):
    store = ResultsStore(tmp_path / "store")
    store.root.mkdir()
    store.path_for(CONFIG.run_id).write_bytes(original)
    (store.root / "notes about runs.json").write_text("{}")  # not a record's file name
    # what a writer killed mid-write leaves: never read as a record, removed by the next save
    leftover = store.root / f".{CONFIG.run_id}.json.killed.tmp"
    leftover.write_bytes(original[:100])
    (store.root / "readme.txt").write_text("hello")
    with pytest.warns(CorruptRecordWarning, match="notes about runs.json"):
        records = list(store.records())
    assert [record["id"] for record in records] == [CONFIG.run_id]
    assert len(store.dataframe([CONFIG.run_id])) == 2
    run(CONFIG, store, force=True, progress=False)
    assert not leftover.exists()


def _reject_constant(name):
    raise AssertionError(f"{name} is not strict JSON")


def test_records_are_strict_json_and_the_store_refuses_non_finite_numbers(original, tmp_path):
    record = json.loads(original, parse_constant=_reject_constant)
    assert isinstance(record, dict) and record["status"] == "finished"
    # a record sealed with NaN metrics is stored with null in their place, and reads back as NaN
    store = ResultsStore(tmp_path / "store")
    nan_record = {key: value for key, value in record.items() if key not in ("checksum", "schema")}
    nan_record["epochs"] = [dict(row) for row in record["epochs"]]
    nan_record["status"], nan_record["diverged_epoch"] = "diverged", 2
    nan_record["epochs"][-1]["train_loss"] = float("nan")
    nan_record["epochs"][-1]["test_loss"] = float("inf")
    path = store.save(nan_record)
    stored = json.loads(path.read_text(), parse_constant=_reject_constant)
    assert stored["epochs"][-1]["train_loss"] is None and stored["epochs"][-1]["test_loss"] is None
    frame = store.dataframe()
    assert frame["train_loss"].isna().tolist() == [False, True] and frame["test_loss"].isna().tolist() == [False, True]


def test_run_ids_naming_files_outside_the_store_are_refused(tmp_path):
    store = ResultsStore(tmp_path / "store")
    for bad in ("../outside", "a/b", "..", ".hidden", "", "sgd-12.json"):
        with pytest.raises(ValueError, match="invalid run id"):
            store.load(bad)
    assert not (tmp_path / "outside.json").exists() and not store.root.exists()


def test_the_package_never_pickles_and_loads_tensors_weights_only():
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\bfrom pickle\b", r"\bpickle\.", r"\bdill\b", r"\bjoblib\b",
                        r"read_pickle|to_pickle", r"allow_pickle\s*=\s*True"):
            if re.search(pattern, text):
                offenders.append(f"{path.name}: {pattern}")
        for call in re.finditer(r"torch\.load\(", text):
            arguments = text[call.end(): text.find("\n", call.end())]
            if "weights_only=True" not in arguments:
                offenders.append(f"{path.name}: torch.load without weights_only=True")
    assert offenders == []
    assert any("torch.load(" in path.read_text() for path in SOURCE.rglob("*.py"))

"""The results store: one JSON record per finished run, written atomically, loaded into one DataFrame.

A record is data (JSON only, never pickle) with a checksum over its content; a record that fails to
parse, breaks the schema or fails its checksum is reported by name and treated as missing, so the run
is recomputed instead of reaching the book.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import pandas as pd

from .config import RunConfig, canonical_json

SCHEMA_VERSION = 1
STATUSES = ("finished", "diverged")
EPOCH_METRICS = (
    "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_error",
    "seconds", "elapsed_seconds", "grad_evals", "lr",
)
_RECORD_KEYS = {"schema", "id", "config", "status", "diverged_epoch", "epochs", "provenance", "checksum"}


class CorruptRecordWarning(UserWarning):
    """A record in the store could not be trusted and will be recomputed."""


def default_results_dir() -> Path:
    """``$OPTBENCH_RESULTS_DIR``, else ``results/`` in the working directory."""
    return Path(os.environ.get("OPTBENCH_RESULTS_DIR", "results"))


def record_checksum(record: dict) -> str:
    """sha256 of the record's canonical JSON without its checksum field."""
    content = {key: value for key, value in record.items() if key != "checksum"}
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def check_record(record: object) -> None:
    """Raise ``ValueError`` saying what is wrong if ``record`` is not a valid, intact record."""
    if not isinstance(record, dict):
        raise ValueError("the record is not a JSON object")
    missing = _RECORD_KEYS - set(record)
    if missing:
        raise ValueError(f"missing field(s) {', '.join(sorted(missing))}")
    if record["schema"] != SCHEMA_VERSION:
        raise ValueError(f"schema {record['schema']!r}, expected {SCHEMA_VERSION}")
    if record["checksum"] != record_checksum(record):
        raise ValueError("checksum mismatch: the record was truncated or edited")
    if record["status"] not in STATUSES:
        raise ValueError(f"status {record['status']!r} is not one of {', '.join(STATUSES)}")
    config = RunConfig.from_dict(record["config"])
    if config.run_id != record["id"]:
        raise ValueError(f"id {record['id']!r} does not match its configuration ({config.run_id})")
    if not isinstance(record["epochs"], list):
        raise ValueError("epochs is not a list")
    for row in record["epochs"]:
        if not isinstance(row, dict) or set(EPOCH_METRICS) - set(row):
            raise ValueError(f"an epoch row lacks metrics {', '.join(sorted(set(EPOCH_METRICS) - set(row or {})))}")


def write_json_atomically(path: Path, value: object) -> None:
    """Write JSON to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(value, stream, indent=1, sort_keys=True, allow_nan=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ResultsStore:
    """A directory of ``<run id>.json`` records."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_results_dir()

    def path_for(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def load(self, run_id: str) -> dict | None:
        """The intact record of ``run_id``, or None if it is absent or corrupt (with a warning naming it)."""
        path = self.path_for(run_id)
        if not path.exists():
            return None
        try:
            with open(path) as stream:
                record = json.load(stream)
            check_record(record)
        except (ValueError, TypeError, json.JSONDecodeError) as error:
            warnings.warn(f"corrupt record {path}: {error}; it will be recomputed", CorruptRecordWarning, stacklevel=2)
            return None
        return record

    def save(self, record: dict) -> Path:
        """Seal ``record`` with its checksum and write it atomically; return its path."""
        record = {**record, "schema": SCHEMA_VERSION}
        record["checksum"] = record_checksum(record)
        check_record(record)
        path = self.path_for(record["id"])
        write_json_atomically(path, record)
        return path

    def __contains__(self, run_id: str) -> bool:
        return self.load(run_id) is not None

    def records(self) -> Iterator[dict]:
        """Every intact record, in file-name order (corrupt ones are warned about and skipped)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            record = self.load(path.stem)
            if record is not None:
                yield record

    def dataframe(self, run_ids=None) -> pd.DataFrame:
        """Tidy per-epoch metrics of the records (all, or those of ``run_ids``), one row per run and epoch."""
        if run_ids is None:
            records = list(self.records())
        else:
            records = [record for record in (self.load(run_id) for run_id in run_ids) if record is not None]
        return records_to_dataframe(records)


def records_to_dataframe(records: list[dict]) -> pd.DataFrame:
    """One row per (run, epoch): run id, status, flattened configuration and the epoch's metrics."""
    rows = []
    for record in records:
        config = record["config"]
        base = {
            "run_id": record["id"],
            "status": record["status"],
            "diverged_epoch": record["diverged_epoch"],
            **{key: value for key, value in config.items() if not isinstance(value, dict)},
            **{f"model_{key}": value for key, value in config["model_options"].items()},
            "device": record["provenance"].get("device"),
        }
        for key, value in config["hyperparameters"].items():
            base.setdefault(key if key not in base else f"optimizer_{key}", _hashable(value))
        for epoch_row in record["epochs"]:
            rows.append({**base, **epoch_row})
    columns = ["run_id", "status", "optimizer", "seed", *EPOCH_METRICS]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value

"""The results store: one JSON record per finished run, written atomically, loaded into one DataFrame.

A record is data (strict JSON only, never pickle) with a checksum over its content. A record that fails
to parse, breaks the schema or fails its checksum is reported by name, moved aside to
``<run id>.json.corrupt-<time>`` for inspection, and treated as missing, so the run is recomputed
instead of reaching the book. JSON has no NaN: non-finite metrics (a diverged epoch) are stored as
``null`` and come back as NaN in :func:`records_to_dataframe`.

Layout of a store directory::

    <run id>.json                  finished records
    checkpoints/<run id>.pt        the last checkpoint of a run in progress (deleted with its record saved)
    locks/<run id>.lock            per-run locks: one process trains a configuration at a time
    timings/<key>.json             interleaved step timings (:mod:`optbench.timing`)
    measurements/<key>.json        other measurements made along or beside runs (gradient variances, ...)
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Iterator

import pandas as pd

from .config import RunConfig, canonical_json

try:  # POSIX; elsewhere runs are not protected against concurrent writers
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SCHEMA_VERSION = 1
STATUSES = ("finished", "diverged")
EPOCH_METRICS = (
    "epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_error",
    "seconds", "elapsed_seconds", "grad_evals", "lr",
)
#: metrics that count (integers); every other metric is a real number, or null where it was not finite
INTEGER_METRICS = ("epoch", "grad_evals")
_RECORD_KEYS = {"schema", "id", "config", "status", "diverged_epoch", "epochs", "provenance", "checksum"}
#: run ids and profile names are plain file names: no separators, no "..", nothing hidden
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class CorruptRecordWarning(UserWarning):
    """A record in the store could not be trusted; it was moved aside and will be recomputed."""


def default_results_dir() -> Path:
    """``$OPTBENCH_RESULTS_DIR``, else ``results/`` in the working directory."""
    return Path(os.environ.get("OPTBENCH_RESULTS_DIR", "results"))


def check_plain_name(kind: str, name: object, example: str) -> None:
    """Raise ``ValueError`` unless ``name`` is a plain file name (letters, digits, ``_``, ``-``)."""
    if not isinstance(name, str) or not PLAIN_NAME.match(name):
        raise ValueError(
            f"invalid {kind} {name!r}: use letters, digits, '_' and '-' only (like {example!r}); "
            "it names a file inside the results directory and cannot contain '/' or '..'"
        )


def record_checksum(record: dict) -> str:
    """sha256 of the record's canonical JSON without its checksum field."""
    content = {key: value for key, value in record.items() if key != "checksum"}
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_record(record: object, run_id: str | None = None) -> None:
    """Raise ``ValueError`` saying what is wrong if ``record`` is not a valid, intact record (of ``run_id``)."""
    if not isinstance(record, dict):
        raise ValueError(f"the record is a JSON {type(record).__name__}, not an object")
    missing = _RECORD_KEYS - set(record)
    if missing:
        raise ValueError(f"missing field(s) {', '.join(sorted(missing))}")
    unknown = set(record) - _RECORD_KEYS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    if not isinstance(record["schema"], int) or isinstance(record["schema"], bool) or record["schema"] != SCHEMA_VERSION:
        raise ValueError(f"schema {record['schema']!r}, expected {SCHEMA_VERSION}")
    try:
        checksum = record_checksum(record)
    except ValueError:  # json refuses NaN and infinities under allow_nan=False
        raise ValueError("the record holds a non-finite number (NaN or Infinity), which JSON does not allow") from None
    if record["checksum"] != checksum:
        raise ValueError("checksum mismatch: the record was truncated or edited")
    if not isinstance(record["id"], str) or not PLAIN_NAME.match(record["id"]):
        raise ValueError(f"invalid id {record['id']!r}")
    if run_id is not None and record["id"] != run_id:
        raise ValueError(f"the file of run {run_id!r} holds the record of run {record['id']!r}")
    if not isinstance(record["config"], dict):
        raise ValueError("config is not a JSON object")
    config = RunConfig.from_dict(record["config"])
    if config.run_id != record["id"]:
        raise ValueError(f"id {record['id']!r} does not match its configuration ({config.run_id})")
    if not isinstance(record["provenance"], dict):
        raise ValueError("provenance is not a JSON object")
    epochs = record["epochs"]
    if not isinstance(epochs, list):
        raise ValueError("epochs is not a list")
    for number, row in enumerate(epochs, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"epoch row {number} is not a JSON object")
        lacking = set(EPOCH_METRICS) - set(row)
        if lacking:
            raise ValueError(f"epoch row {number} lacks metric(s) {', '.join(sorted(lacking))}")
        for key, value in row.items():
            if key in INTEGER_METRICS:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"epoch row {number}: {key} {value!r} is not a count")
            elif value is not None and not _is_number(value):
                raise ValueError(f"epoch row {number}: {key} {value!r} is neither a number nor null")
        if row["epoch"] != number:
            raise ValueError(f"epoch row {number} says epoch {row['epoch']}")
    status, diverged_epoch = record["status"], record["diverged_epoch"]
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if status == "finished":
        if diverged_epoch is not None:
            raise ValueError(f"a finished run has diverged_epoch {diverged_epoch!r}")
        if len(epochs) != config.num_epochs:
            raise ValueError(f"a finished run has {len(epochs)} epoch rows for num_epochs {config.num_epochs}")
    elif not isinstance(diverged_epoch, int) or isinstance(diverged_epoch, bool) or diverged_epoch != len(epochs) or not epochs:
        raise ValueError(f"diverged_epoch {diverged_epoch!r} is not the last of the {len(epochs)} epoch rows")


def finite_or_none(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (non-finite numbers are stored as null)")


def parse_record(text: str | bytes) -> object:
    """Parse a record file's content as strict JSON (no NaN or Infinity); ``ValueError`` says what is wrong."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not JSON text but binary data (a pickle, say)") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error})") from None


def _fsync_directory(directory: Path) -> None:
    # the rename itself must reach the disk, or a crash could bring back the old name
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def write_atomically(path: Path, write) -> None:
    """Call ``write(stream)`` on a temporary binary file beside ``path``, flush it to disk, rename it over ``path``.

    A reader sees the old file or the whole new one, never a part, even if the writer is killed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_json_atomically(path: Path, value: object) -> None:
    """Write ``value`` as strict JSON (no NaN) with :func:`write_atomically`."""
    text = json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def save_measurement(path: Path, rows: list[dict], schema: int, provenance: dict) -> None:
    """Write a measurement (rows of numbers and text) atomically as strict JSON; non-finite numbers become null."""
    write_json_atomically(path, {"schema": schema, "rows": finite_or_none(rows), "provenance": provenance})


def load_measurement(path: Path, schema: int, columns: list[str]) -> pd.DataFrame | None:
    """The rows of a stored measurement as a frame with ``columns`` (null as NaN), or None when it is absent.

    A measurement that cannot be read, or of another ``schema``, is warned about and treated as absent, so it
    is measured again.
    """
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        stored = parse_record(content)
        if not isinstance(stored, dict) or stored.get("schema") != schema or not isinstance(stored.get("rows"), list):
            raise ValueError(f"not a measurement of schema {schema}")
        for row in stored["rows"]:
            missing = [column for column in columns if column not in row]
            if missing:
                raise ValueError(f"a row lacks column(s) {', '.join(missing)}")
        frame = pd.DataFrame(stored["rows"], columns=columns)
        for column in columns:
            # null is a non-finite number (NaN), never text
            if frame[column].isna().any() and all(_is_number(value) for value in frame[column].dropna()):
                frame[column] = pd.to_numeric(frame[column]).astype(float)
        return frame
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"ignoring stored measurement {path}: {error}; measuring again", CorruptRecordWarning, stacklevel=2)
        return None


def remove_temporary_files(path: Path) -> None:
    """Delete the temporary files a killed :func:`write_atomically` of ``path`` left behind."""
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


#: per thread: the lock files it holds, so that a thread can re-enter a lock it holds
_held_locks = threading.local()


class ResultsStore:
    """A directory of ``<run id>.json`` records (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_results_dir()

    @classmethod
    def for_profile(cls, profile: str, results_dir: str | os.PathLike | None = None) -> "ResultsStore":
        """The store of a profile: ``<results dir>/<profile>``; the name cannot lead outside the results dir."""
        check_plain_name("profile name", profile, "smoke")
        base = Path(results_dir) if results_dir is not None else default_results_dir()
        return cls(base / profile)

    def path_for(self, run_id: str) -> Path:
        check_plain_name("run id", run_id, "adam-0123456789ab")
        return self.root / f"{run_id}.json"

    def checkpoint_path(self, run_id: str) -> Path:
        check_plain_name("run id", run_id, "adam-0123456789ab")
        return self.root / "checkpoints" / f"{run_id}.pt"

    def lock_path(self, run_id: str) -> Path:
        check_plain_name("run id", run_id, "adam-0123456789ab")
        return self.root / "locks" / f"{run_id}.lock"

    @contextlib.contextmanager
    def lock(self, run_id: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock of ``run_id`` (exclusive across processes; re-entrant in a thread); yield whether held.

        With ``blocking`` False, yield False at once if another process or thread holds it. The lock is
        the operating system's (``flock``), so a killed process never leaves a stale lock behind.
        """
        path = self.lock_path(run_id)
        held = getattr(_held_locks, "locks", None)
        if held is None:
            held = _held_locks.locks = set()
        key = os.path.realpath(path)
        if key in held:  # this thread holds it already (run() holds it while save() takes it again)
            yield True
            return
        if fcntl is None:  # pragma: no cover
            yield True
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                acquired = False
            else:
                acquired = True
            if not acquired:
                yield False
                return
            held.add(key)
            try:
                yield True
            finally:
                held.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            os.close(handle)

    def load(self, run_id: str) -> dict | None:
        """The intact record of ``run_id``, or None if it is absent or corrupt.

        A corrupt record is reported with a :class:`CorruptRecordWarning` naming its file and moved aside.
        """
        return self._load_file(self.path_for(run_id), run_id)

    def _load_file(self, path: Path, run_id: str) -> dict | None:
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            self._report_corrupt(path, run_id, None, f"cannot be read ({error})")
            return None
        try:
            record = parse_record(content)
            check_record(record, run_id)
        except Exception as error:  # any defect of the content (parse, schema, types) means "recompute"
            self._report_corrupt(path, run_id, content, str(error) or type(error).__name__)
            return None
        return record

    def _report_corrupt(self, path: Path, run_id: str, content: bytes | None, reason: str) -> None:
        aside = self._move_aside(path, run_id, content)
        where = f"moved to {aside.name}" if aside is not None else "left in place"
        warnings.warn(
            f"corrupt record {path}: {reason}; {where}, and the run will be recomputed",
            CorruptRecordWarning,
            stacklevel=4,
        )

    def _move_aside(self, path: Path, run_id: str, content: bytes | None) -> Path | None:
        """Rename a corrupt record to ``<name>.corrupt-<time>``, unless a writer replaced it meanwhile."""
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            # under the run's lock, so a record a writer has just saved is never the one moved
            with self.lock(run_id, blocking=False) as held:
                if not held or (content is not None and path.read_bytes() != content):
                    return None
                os.replace(path, aside)
        except OSError:  # a read-only store, or another reader moved it first
            return None
        return aside

    def save(self, record: dict) -> Path:
        """Seal ``record`` with its checksum and write it atomically as strict JSON; return its path.

        Non-finite metrics (NaN, ±inf) are stored as null.
        """
        record = finite_or_none({key: value for key, value in record.items() if key != "checksum"})
        record["schema"] = SCHEMA_VERSION
        record["checksum"] = record_checksum(record)
        check_record(record)
        path = self.path_for(record["id"])
        with self.lock(record["id"]):
            remove_temporary_files(path)
            write_json_atomically(path, record)
        return path

    def __contains__(self, run_id: str) -> bool:
        return self.load(run_id) is not None

    def records(self) -> Iterator[dict]:
        """Every intact record, in file-name order (corrupt ones are warned about, moved aside and skipped)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            run_id = path.name[: -len(".json")]
            if not PLAIN_NAME.match(run_id):
                warnings.warn(f"ignoring {path}: not a record's file name (<run id>.json)", CorruptRecordWarning, stacklevel=2)
                continue
            record = self._load_file(path, run_id)
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
    """One row per (run, epoch): run id, status, flattened configuration and the epoch's metrics.

    Metrics stored as null (not finite) are NaN.
    """
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
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    for metric in EPOCH_METRICS:
        if metric not in INTEGER_METRICS:
            frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype(float)
    return frame


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value

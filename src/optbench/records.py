"""The record format: what one finished run's record holds, how it is sealed and how it is judged.

A record is strict JSON (no NaN or Infinity, never pickle): the run's id, its configuration, its status
(``finished`` or ``diverged``), its per-epoch metrics, where it was computed, and a sha256 checksum over
all of that. Non-finite metrics (a diverged epoch) are stored as ``null`` and come back as NaN in
:func:`records_to_dataframe`.

Judging a record's content gives one of four states (:data:`STATES`):

- ``finished`` / ``diverged``: intact, and its configuration still normalises to its id;
- ``stale``: intact and self-consistent (its id is the hash of the configuration it stores), but the
  current code normalises that configuration differently (a new default, a renamed or removed setting),
  so the run it describes now has another id, or no valid configuration at all. The code changed, not
  the file: it is reported with what changed, and recomputed under the new id;
- ``corrupt``: anything else (truncated, edited, a pickle, another schema, a checksum that fails).

This module knows nothing of files; :mod:`optbench.store` reads and writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

import pandas as pd

from .config import LATE_SETTINGS, RunConfig, canonical_json

#: 2: a run evaluated on a held-out part of its training split names those metrics ``validation_*`` (schema 1
#: called every evaluation ``test_*``); a schema-1 record is stale, recomputed in the current format
SCHEMA_VERSION = 2
STATUSES = ("finished", "diverged")
#: what judging a record can give; see the module docstring
STATES = ("finished", "diverged", "stale", "corrupt")
#: every epoch row's metrics, and those of the split it was evaluated on (:func:`epoch_metrics`)
COMMON_METRICS = ("epoch", "train_loss", "train_accuracy", "seconds", "elapsed_seconds", "grad_evals", "lr")
EVALUATION_METRICS = {split: (f"{split}_loss", f"{split}_accuracy", f"{split}_error") for split in ("test", "validation")}
#: every metric an epoch row may hold (the columns of :func:`records_to_dataframe`)
EPOCH_METRICS = (*COMMON_METRICS, *EVALUATION_METRICS["test"], *EVALUATION_METRICS["validation"])
#: metrics that count (integers); every other metric is a real number, or null where it was not finite
INTEGER_METRICS = ("epoch", "grad_evals")
RECORD_KEYS = frozenset({"schema", "id", "config", "status", "diverged_epoch", "epochs", "provenance", "checksum"})
#: run ids and profile names are plain file names: no separators, no "..", nothing hidden
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class StaleRecordError(ValueError):
    """An intact record whose configuration the current code normalises to another id (or rejects)."""

    def __init__(self, message: str, current_id: str | None):
        super().__init__(message)
        self.current_id = current_id


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


def stored_config_id(config: dict) -> str:
    """The id a configuration dict had when it was written: the same rule as :attr:`RunConfig.run_id`,
    applied to the stored values as they are (no normalisation by the current code)."""
    digest = hashlib.sha256(canonical_json(config).encode()).hexdigest()
    return f"{config.get('optimizer')}-{digest[:12]}"


def finite_or_none(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def seal_record(record: dict) -> dict:
    """A copy of ``record`` with its schema version and checksum set, non-finite metrics as None, checked."""
    sealed = finite_or_none({key: value for key, value in record.items() if key != "checksum"})
    sealed["schema"] = SCHEMA_VERSION
    sealed["checksum"] = record_checksum(sealed)
    check_record(sealed)
    return sealed


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


def record_to_text(record: dict) -> str:
    """The stored form of a sealed record: strict JSON, sorted keys, one line per field."""
    return json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def evaluation_split(config: dict) -> str:
    """The split a configuration's run is evaluated on: "validation" when it holds out part of its training
    split (a validation fraction or a cross-validation fold), else "test"."""
    held_out = (config.get("validation_fraction") or 0) > 0 or config.get("num_folds") is not None
    return "validation" if held_out else "test"


def epoch_metrics(config: dict, schema: int = SCHEMA_VERSION) -> tuple[str, ...]:
    """The metrics every epoch row of a record of ``config`` holds (schema 1 named every evaluation ``test_*``)."""
    split = "test" if schema == 1 else evaluation_split(config)
    return (*COMMON_METRICS, *EVALUATION_METRICS[split])


def check_record(record: object, run_id: str | None = None) -> None:
    """Raise ``ValueError`` saying what is wrong unless ``record`` is a valid, intact, current record (of ``run_id``).

    An intact record that only fails because the code now normalises its configuration differently raises
    :class:`StaleRecordError` (a ``ValueError``) instead, after every other check passed.
    """
    if not isinstance(record, dict):
        raise ValueError(f"the record is a JSON {type(record).__name__}, not an object")
    missing = RECORD_KEYS - set(record)
    if missing:
        raise ValueError(f"missing field(s) {', '.join(sorted(missing))}")
    unknown = set(record) - RECORD_KEYS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    if not _is_count(record["schema"]) or record["schema"] not in (1, SCHEMA_VERSION):
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
    config = record["config"]
    if not isinstance(config, dict):
        raise ValueError("config is not a JSON object")
    # the id is the hash of the configuration as it was written; if not, the file was edited
    if stored_config_id(config) != record["id"]:
        raise ValueError(f"id {record['id']!r} does not match its configuration (which hashes to {stored_config_id(config)})")
    if not isinstance(record["provenance"], dict):
        raise ValueError("provenance is not a JSON object")
    _check_epochs(record, config)
    stale = stale_reason(config)
    if stale is not None:
        raise StaleRecordError(*stale)
    if record["schema"] != SCHEMA_VERSION:
        raise StaleRecordError(f"written by an older optbench in record format {record['schema']} (now {SCHEMA_VERSION}, which "
                               "names the metrics of a held-out validation split validation_*, not test_*)", record["id"])


def _check_epochs(record: dict, config: dict) -> None:
    num_epochs = config.get("num_epochs")
    expected = set(epoch_metrics(config, record["schema"]))
    epochs = record["epochs"]
    if not isinstance(epochs, list):
        raise ValueError("epochs is not a list")
    for number, row in enumerate(epochs, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"epoch row {number} is not a JSON object")
        lacking, extra = expected - set(row), set(row) - expected
        if lacking:
            raise ValueError(f"epoch row {number} lacks metric(s) {', '.join(sorted(lacking))}")
        if extra:
            raise ValueError(f"epoch row {number} holds metric(s) {', '.join(sorted(extra))} a run on its "
                             f"{evaluation_split(config)} split does not have")
        for key, value in row.items():
            if key in INTEGER_METRICS:
                if not _is_count(value):
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
        if len(epochs) != num_epochs:
            raise ValueError(f"a finished run has {len(epochs)} epoch rows for num_epochs {num_epochs!r}")
    elif not _is_count(diverged_epoch) or diverged_epoch != len(epochs) or not epochs:
        raise ValueError(f"diverged_epoch {diverged_epoch!r} is not the last of the {len(epochs)} epoch rows")


def stale_reason(config: dict) -> tuple[str, str | None] | None:
    """None if ``config`` is what the current code makes of it; else (what changed, the id it has now or None)."""
    try:
        current = RunConfig.from_dict(config)
    except Exception as error:  # a setting renamed or removed, a value the code now rejects
        return f"its configuration is no longer valid under the current code: {error}", None
    if current.run_id == stored_config_id(config):  # equal canonical JSON: nothing changed
        return None
    changes = "; ".join(config_changes(config, current.to_dict())) or "the rule that makes ids changed"
    return f"the code now normalises its configuration to {current.run_id} ({changes})", current.run_id


_ABSENT = object()


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Readable differences between two configuration dicts, e.g. ``hyperparameters.eps: 1e-08 -> 1e-06``."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        name = f"{prefix}{key}"
        if isinstance(before, dict) and isinstance(after, dict):
            changes.extend(config_changes(before, after, f"{name}."))
        elif before is _ABSENT:
            changes.append(f"{name}: absent in the record, {after!r} now")
        elif after is _ABSENT:
            changes.append(f"{name}: {before!r} in the record, no longer a setting")
        elif before != after or type(before) is not type(after):
            changes.append(f"{name}: {before!r} -> {after!r}")
    return changes


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What a record's content is: its state (one of :data:`STATES`), why, and the record where intact."""

    state: str
    #: for ``stale`` what changed, for ``corrupt`` what is wrong; None for a current record
    reason: str | None = None
    #: the parsed record: for ``finished``, ``diverged`` and ``stale``; None for ``corrupt``
    record: dict | None = None
    #: for ``stale``: the id its configuration has under the current code (None if no longer valid)
    current_id: str | None = None


def judge_record(content: bytes, run_id: str) -> Judgement:
    """Judge the bytes of the file of ``run_id`` (never raises for bad content)."""
    try:
        record = parse_record(content)
        check_record(record, run_id)
    except StaleRecordError as stale:
        return Judgement("stale", str(stale), record, stale.current_id)
    except Exception as error:  # any defect of the content (parse, schema, types) means corrupt
        return Judgement("corrupt", str(error) or type(error).__name__)
    return Judgement(record["status"], None, record)


def records_to_dataframe(records: list[dict]) -> pd.DataFrame:
    """One row per (run, epoch): run id, status, flattened configuration and the epoch's metrics.

    Metrics stored as null (not finite) are NaN; a run's evaluation metrics are in the columns of its split
    (``test_*`` or ``validation_*``), NaN in the other's.
    """
    rows = []
    for record in records:
        # late settings a record leaves out have their defaults, so mixed stores give full columns
        config = {**LATE_SETTINGS, **record["config"]}
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
        if metric not in frame:  # no run of this split among the records
            frame[metric] = float("nan")
        elif metric not in INTEGER_METRICS:
            frame[metric] = pd.to_numeric(frame[metric], errors="coerce").astype(float)
    return frame


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value

"""The results store: a directory of run records, where every sweep's runs meet.

What a record holds and how it is judged lives in :mod:`optbench.records`; how a file is written and read
safely lives in :mod:`optbench.files`. Every write is atomic, so a reader sees the old file or the whole
new one, even if the writer is killed; a full disk raises :class:`~optbench.files.NoSpaceLeftError` naming
the file and leaves nothing half-written. One process trains a configuration at a time (per-run locks).
A read-only results directory is reported before training (:meth:`ResultsStore.check_writable`).

Reading never trusts a file: only regular files are opened (a symlink is never followed, a FIFO or
device never opened), and a file whose content is corrupt is reported by name and moved aside to
``<run id>.json.corrupt-<time>`` for inspection; its run counts as missing, so a sweep recomputes it.
A stale record (intact, but its configuration normalises to another id since a code change) is reported
with what changed and left in place until removed (:meth:`ResultsStore.remove`); the sweep that asks
for its configuration recomputes it under the new id.

Layout of a store directory::

    <run id>.json                  records
    <run id>.json.corrupt-<time>   corrupt records and non-record files, moved aside
    checkpoints/<run id>.pt        the last checkpoint of a run in progress (deleted with its record saved)
    locks/<run id>.lock            per-run locks
    timings/<key>.json             interleaved step timings (:mod:`optbench.timing`)
    measurements/<key>.json        other measurements made along or beside runs (gradient variances, ...)

Listing by state (for ``optbench status`` and ``optbench clean``)::

    store = ResultsStore.for_profile("default")
    for entry in store.entries(states=["stale"]):   # nothing is moved or warned about
        print(entry.run_id, entry.reason)
        store.remove(entry)                          # only if the file is still what was inspected
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from .files import (  # noqa: F401  (re-exported: the file operations the store offered before files.py)
    READ_ONLY_ERRORS,
    HeldLock,
    NoSpaceLeftError,
    acquire_lock,
    existing_ancestor,
    file_identity,
    file_kind,
    full_disk_reported,
    read_regular_file,
    remove_temporary_files,
    write_atomically,
)
from .records import (  # noqa: F401  (re-exported: the record format's names, for readers of the store)
    EPOCH_METRICS,
    INTEGER_METRICS,
    PLAIN_NAME,
    SCHEMA_VERSION,
    STATES,
    STATUSES,
    check_plain_name,
    check_record,
    finite_or_none,
    judge_record,
    parse_record,
    record_checksum,
    record_to_text,
    records_to_dataframe,
    seal_record,
)

RESULTS_DIR_VARIABLE = "OPTBENCH_RESULTS_DIR"


class CorruptRecordWarning(UserWarning):
    """A file named like a record could not be trusted; it was moved aside (or left in place) and skipped."""


class StaleRecordWarning(UserWarning):
    """An intact record whose configuration the current code gives another id; it is skipped."""


class ResultsDirectoryError(ValueError):
    """The results directory cannot be used: not a directory, read-only, or ``$OPTBENCH_RESULTS_DIR`` empty."""


def write_json_atomically(path: Path, value: object) -> None:
    """Write ``value`` as strict JSON (no NaN) with :func:`write_atomically`."""
    text = record_to_text(value)
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def default_results_dir() -> Path:
    """``$OPTBENCH_RESULTS_DIR``, else ``results/`` in the working directory (set but empty is an error)."""
    value = os.environ.get(RESULTS_DIR_VARIABLE)
    if value is None:
        return Path("results")
    if not value.strip():
        raise ResultsDirectoryError(
            f"{RESULTS_DIR_VARIABLE} is set but empty ({value!r}): give the directory for the results, or unset "
            "it to use 'results' in the working directory"
        )
    return Path(value)


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
            if frame[column].isna().any() and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in frame[column].dropna()):
                frame[column] = pd.to_numeric(frame[column]).astype(float)
        return frame
    except (ValueError, KeyError, TypeError) as error:
        warnings.warn(f"ignoring stored measurement {path}: {error}; measuring again", CorruptRecordWarning, stacklevel=2)
        return None


def check_environment() -> None:
    """Check ``$OPTBENCH_RESULTS_DIR`` (set: not empty, not a file); raise :class:`ResultsDirectoryError`."""
    _check_directory(default_results_dir(), RESULTS_DIR_VARIABLE in os.environ)


def _check_directory(root: Path, from_environment: bool) -> None:
    """Raise unless ``root`` is a directory or could be created as one (no file in the way)."""
    ancestor = existing_ancestor(root)
    if ancestor.is_dir():
        return
    try:
        kind = file_kind(os.stat(ancestor).st_mode)
    except OSError:  # a dangling symlink
        kind = file_kind(os.lstat(ancestor).st_mode)
    what = f"{RESULTS_DIR_VARIABLE} {str(root)!r}" if from_environment else f"the results directory {str(root)!r}"
    problem = f"is {kind}" if ancestor == Path(os.path.abspath(root)) else f"lies under {ancestor}, which is {kind}"
    raise ResultsDirectoryError(
        f"{what} {problem}, not a directory: give a directory for the results (it is created if missing)"
    )


@dataclasses.dataclass(frozen=True)
class RecordEntry:
    """A file named like a record, and what it holds (see :data:`optbench.records.STATES`)."""

    run_id: str
    path: Path
    #: ``finished``, ``diverged``, ``stale`` or ``corrupt``
    state: str
    #: for ``stale`` what changed, for ``corrupt`` what is wrong (including "a symbolic link ..."); else None
    reason: str | None
    #: the parsed record for ``finished``, ``diverged`` and ``stale``; None for ``corrupt``
    record: dict | None
    #: for ``stale``: the id its configuration has under the current code (None if no longer valid)
    current_id: str | None = None
    #: for ``corrupt``: None if the content is bad, else what the file is instead ("a FIFO (named pipe)", ...)
    not_regular: str | None = None
    identity: tuple | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def intact(self) -> bool:
        """A current record: finished or diverged."""
        return self.state in ("finished", "diverged")


#: stale files already reported in this process (path, identity, recomputed): once each, not at every read
_reported_stale: set[tuple[str, tuple, bool]] = set()


class ResultsStore:
    """A directory of ``<run id>.json`` records (see the module docstring for its layout)."""

    def __init__(self, root: str | os.PathLike | None = None):
        from_environment = root is None
        self.root = Path(root) if root is not None else default_results_dir()
        _check_directory(self.root, from_environment and RESULTS_DIR_VARIABLE in os.environ)

    @classmethod
    def for_profile(cls, profile: str, results_dir: str | os.PathLike | None = None) -> "ResultsStore":
        """The store of a profile: ``<results dir>/<profile>``; the name cannot lead outside the results dir."""
        check_plain_name("profile name", profile, "smoke")
        from_environment = results_dir is None
        base = Path(results_dir) if results_dir is not None else default_results_dir()
        _check_directory(base, from_environment and RESULTS_DIR_VARIABLE in os.environ)
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

    # ---- writing ---------------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise :class:`ResultsDirectoryError` now if records could not be written (read-only, not a directory).

        Creates and deletes one empty file in the store (or in the nearest existing directory above it).
        """
        _check_directory(self.root, False)
        ancestor = existing_ancestor(self.root)
        with full_disk_reported(self.root):
            try:
                handle, probe = tempfile.mkstemp(dir=ancestor, prefix=".write-test-", suffix=".tmp")
            except OSError as error:
                if error.errno not in READ_ONLY_ERRORS:
                    raise
                where = "" if ancestor == Path(os.path.abspath(self.root)) else f" (it would be created in {ancestor})"
                raise ResultsDirectoryError(
                    f"the results directory {self.root} is read-only{where}: {error.strerror}; make it writable, "
                    f"or set {RESULTS_DIR_VARIABLE} to a writable directory"
                ) from None
        os.close(handle)
        os.unlink(probe)

    def save(self, record: dict) -> Path:
        """Seal ``record`` with its checksum and write it atomically as strict JSON; return its path.

        Non-finite metrics (NaN, ±inf) are stored as null.
        """
        record = seal_record(record)
        path = self.path_for(record["id"])
        with self.lock(record["id"]):
            remove_temporary_files(path)
            write_json_atomically(path, record)
        return path

    def acquire_lock(self, run_id: str, blocking: bool = True) -> HeldLock | None:
        """The lock of ``run_id`` (exclusive across processes, re-entrant in a thread), or None if ``blocking``
        is False and another process or thread holds it. Release it with :meth:`HeldLock.release`.

        The lock is the operating system's (``flock``), so a killed process never leaves a stale lock behind.
        """
        return acquire_lock(self.lock_path(run_id), blocking)

    @contextlib.contextmanager
    def lock(self, run_id: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the lock of ``run_id`` (see :meth:`acquire_lock`) for a ``with`` block; yield whether it is held."""
        held = self.acquire_lock(run_id, blocking)
        if held is None:
            yield False
            return
        try:
            yield True
        finally:
            held.release()

    # ---- reading and judging ---------------------------------------------------------------------------

    def inspect(self, run_id: str) -> RecordEntry | None:
        """What the file of ``run_id`` holds, or None if there is none. Moves nothing, warns about nothing."""
        return self._inspect_path(self.path_for(run_id), run_id)

    def _inspect_path(self, path: Path, run_id: str) -> RecordEntry | None:
        try:
            content, not_regular, identity = read_regular_file(path)
        except OSError as error:
            return RecordEntry(run_id, path, "corrupt", f"cannot be read ({error.strerror or error})", None)
        if identity is None:
            return None
        if not_regular is not None:
            return RecordEntry(run_id, path, "corrupt", f"{not_regular}, not a record file", None,
                               not_regular=not_regular, identity=identity)
        judged = judge_record(content, run_id)
        return RecordEntry(run_id, path, judged.state, judged.reason, judged.record, judged.current_id, identity=identity)

    def entries(self, states: Iterable[str] | None = None) -> list[RecordEntry]:
        """Every file named like a record (``<run id>.json``), judged, in name order; only ``states`` if given.

        Read-only: nothing is moved and nothing is warned about (for listings such as ``optbench status``).
        """
        wanted = set(STATES if states is None else states)
        unknown = sorted(wanted - set(STATES))
        if unknown:
            raise ValueError(f"unknown record state(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(STATES)}")
        found = []
        for path in self._record_paths():
            entry = self._inspect_path(path, path.name[: -len(".json")])
            if entry is not None and entry.state in wanted:
                found.append(entry)
        return found

    def _record_paths(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(path for path in self.root.glob("*.json") if PLAIN_NAME.match(path.name[: -len(".json")]))

    def moved_aside(self) -> list[Path]:
        """Files moved aside as corrupt (``<run id>.json.corrupt-<time>``), kept for inspection."""
        return sorted(self.root.glob("*.json.corrupt-*")) if self.root.is_dir() else []

    def in_progress(self) -> list[str]:
        """Run ids with a checkpoint: runs interrupted (or being trained now) that resume from it."""
        directory = self.root / "checkpoints"
        return sorted(path.stem for path in directory.glob("*.pt")) if directory.is_dir() else []

    def remove(self, entry: RecordEntry) -> bool:
        """Delete the file of ``entry`` if it is still the file that was inspected; return whether deleted.

        Under the run's lock, so a record a writer has just saved is never the one deleted.
        """
        with self.lock(entry.run_id, blocking=False) as held:
            if not held or not self._unchanged(entry):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                return True
        return False

    def _unchanged(self, entry: RecordEntry) -> bool:
        try:
            return entry.identity is not None and file_identity(os.lstat(entry.path)) == entry.identity
        except OSError:
            return False

    def set_aside(self, entry: RecordEntry, recomputed: bool) -> Path | None:
        """Report a corrupt (or stale) entry with a warning; move a corrupt one aside. Return where it went.

        ``recomputed`` says whether the caller is about to train the run again, which the warning then says;
        a reader that only skips the run says so instead.
        """
        if entry.state == "stale":
            key = (str(entry.path), entry.identity, recomputed)
            if key not in _reported_stale:
                _reported_stale.add(key)
                then = "it is recomputed under its new id" if recomputed else "it is left out of the results"
                warnings.warn(
                    f"stale record {entry.path}: {entry.reason}; {then} (the file is kept until removed)",
                    StaleRecordWarning, stacklevel=3,
                )
            return None
        aside = self._move_aside(entry)
        where = f"moved to {aside.name}" if aside is not None else "left in place (it could not be moved)"
        then = ("and the run will be recomputed" if recomputed
                else "and left out of the results (the next sweep that asks for this run recomputes it)")
        if entry.not_regular is not None:
            what = f"{entry.path} is {entry.not_regular}, not a record file; it was not "
            what += "followed" if entry.not_regular.startswith("a symbolic link") else "opened"
            message = f"{what}, {where}, {then}"
        else:
            message = f"corrupt record {entry.path}: {entry.reason}; {where}, {then}"
        warnings.warn(message, CorruptRecordWarning, stacklevel=3)
        return aside

    def _move_aside(self, entry: RecordEntry) -> Path | None:
        """Rename a corrupt file to ``<name>.corrupt-<time>``, unless a writer replaced it meanwhile."""
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        aside = entry.path.with_name(f"{entry.path.name}.corrupt-{stamp}")
        try:
            # under the run's lock, so a record a writer has just saved is never the one moved
            with self.lock(entry.run_id, blocking=False) as held:
                if not held or (entry.identity is not None and not self._unchanged(entry)):
                    return None
                os.replace(entry.path, aside)  # renames a link or FIFO itself, never what it points to
        except OSError:  # a read-only store, or another reader moved it first
            return None
        return aside

    def load(self, run_id: str, recompute: bool = False) -> dict | None:
        """The intact record of ``run_id``, or None if it is absent, stale or corrupt.

        A corrupt file is reported with a :class:`CorruptRecordWarning` naming it and moved aside; a stale
        record with a :class:`StaleRecordWarning`. ``recompute`` tells the warning that the caller trains
        the run when this returns None.
        """
        entry = self.inspect(run_id)
        if entry is None:
            return None
        if entry.intact:
            return entry.record
        self.set_aside(entry, recompute)
        return None

    def __contains__(self, run_id: str) -> bool:
        return self.load(run_id) is not None

    def records(self) -> Iterator[dict]:
        """Every intact record, in file-name order (corrupt ones are warned about, moved aside and skipped;
        stale ones warned about and skipped)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            run_id = path.name[: -len(".json")]
            if not PLAIN_NAME.match(run_id):
                warnings.warn(f"ignoring {path}: not a record's file name (<run id>.json)", CorruptRecordWarning, stacklevel=2)
                continue
            entry = self._inspect_path(path, run_id)
            if entry is None:
                continue
            if entry.intact:
                yield entry.record
            else:
                self.set_aside(entry, recomputed=False)

    def dataframe(self, run_ids=None) -> pd.DataFrame:
        """Tidy per-epoch metrics of the records (all, or those of ``run_ids``), one row per run and epoch."""
        if run_ids is None:
            records = list(self.records())
        else:
            records = [record for record in (self.load(run_id) for run_id in run_ids) if record is not None]
        return records_to_dataframe(records)

"""Safe file operations for the store: atomic writes, reads that never block or follow a link, run locks,
and full-disk errors that name the file.

- :func:`write_atomically` writes a temporary file beside the target, flushes it to disk and renames it
  over the target: a reader sees the old file or the whole new one, even if the writer is killed.
- :func:`read_regular_file` reads only regular files: it never follows a symlink and never opens a FIFO,
  device or socket (opening one could block forever or act on hardware), and says what the file is instead.
- :func:`acquire_lock` takes an exclusive ``flock`` (it dies with its process, so no lock outlives a crash),
  re-entrant within a thread.
- A full disk (or quota), whichever write meets it, raises :class:`NoSpaceLeftError` naming the path, even
  where a library wraps the error (torch's checkpoint writer reports "unexpected pos"), and leaves no
  temporary file behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

try:  # POSIX; elsewhere runs are not protected against concurrent writers
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

#: errors that mean the disk (or the user's quota on it) is full
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
#: errors that mean a directory cannot be written to
READ_ONLY_ERRORS = {errno.EROFS, errno.EACCES, errno.EPERM}


class NoSpaceLeftError(OSError):
    """A write to the store failed because its disk (or quota) is full; nothing half-written was left."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(errno.ENOSPC, "no space left on device", str(path))

    def __str__(self) -> str:
        return (
            f"no space left on device: cannot write {self.filename}; free space on that disk or set "
            f"OPTBENCH_RESULTS_DIR to a directory on another one, then run again (finished records are kept, "
            "nothing half-written was left)"
        )

    def __reduce__(self):  # workers send it to the driver
        return (type(self), (self.filename,))


def _disk_full(error: BaseException) -> bool:
    """Whether ``error`` or an error it was raised from is a full disk (torch's writer wraps it, for one)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_FULL:
            return True
        error = error.__cause__ or error.__context__
    return False


@contextlib.contextmanager
def full_disk_reported(path: Path) -> Iterator[None]:
    """Turn a full-disk error raised in the block (however wrapped) into :class:`NoSpaceLeftError` naming ``path``."""
    try:
        yield
    except NoSpaceLeftError:
        raise
    except Exception as error:
        if _disk_full(error):
            raise NoSpaceLeftError(path) from error
        raise


def file_kind(mode: int) -> str:
    """What a file of mode ``mode`` (from ``os.stat``) is, in words: "a FIFO (named pipe)", "a socket", ..."""
    for test, kind in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a file")):
        if test(mode):
            return kind
    return "not a regular file"


def existing_ancestor(path: Path) -> Path:
    """``path`` itself if it exists, else its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


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

    A reader sees the old file or the whole new one, never a part, even if the writer is killed. A full
    disk raises :class:`NoSpaceLeftError` naming ``path``, with the temporary file removed.
    """
    path = Path(path)
    with full_disk_reported(path):
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


def remove_temporary_files(path: Path) -> None:
    """Delete the temporary files a killed :func:`write_atomically` of ``path`` left behind."""
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def file_identity(status: os.stat_result) -> tuple:
    """What tells one file from its replacement (an atomic write makes a new inode)."""
    return (status.st_dev, status.st_ino, status.st_mode, status.st_size, status.st_mtime_ns)


def read_regular_file(path: Path) -> tuple[bytes | None, str | None, tuple | None]:
    """(content, None, identity) of a regular file; (None, what it is instead, identity) for anything else.

    Never follows a symlink and never opens a FIFO, device or socket (opening one could block forever or
    act on hardware). ``(None, None, None)`` if there is no such file.
    """
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return None, None, None
    if stat.S_ISLNK(status.st_mode):
        return None, f"a symbolic link (to {os.readlink(path)!r})", file_identity(status)
    if not stat.S_ISREG(status.st_mode):
        return None, file_kind(status.st_mode), file_identity(status)
    # the file may be swapped between lstat and open: refuse links and never block, then check what opened
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        opened = os.fstat(handle)
        if not stat.S_ISREG(opened.st_mode):
            return None, file_kind(opened.st_mode), file_identity(opened)
        with os.fdopen(handle, "rb", closefd=False) as stream:
            return stream.read(), None, file_identity(opened)
    finally:
        os.close(handle)


#: per thread: the lock files it holds, so that a thread can re-enter a lock it holds
_held_locks = threading.local()


class HeldLock:
    """A lock held until :meth:`release` (see :func:`acquire_lock`)."""

    def __init__(self, key: str, handle: int | None):
        self._key, self._handle = key, handle

    def release(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        _thread_locks().discard(self._key)
        try:
            fcntl.flock(handle, fcntl.LOCK_UN)
        finally:
            os.close(handle)


def _thread_locks() -> set:
    held = getattr(_held_locks, "locks", None)
    if held is None:
        held = _held_locks.locks = set()
    return held


def acquire_lock(path: Path, blocking: bool = True) -> HeldLock | None:
    """The exclusive lock of the file ``path`` (created if missing), or None if ``blocking`` is False and
    another process or thread holds it. Re-entrant within a thread: a thread that holds it gets it again."""
    key = os.path.realpath(path)
    if key in _thread_locks() or fcntl is None:  # re-entered (run() holds it while save() takes it again)
        return HeldLock(key, None)
    with full_disk_reported(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never through a link, never blocking on a FIFO
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            handle = os.open(path, flags, 0o644)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            raise OSError(errno.ELOOP, f"the lock file is {file_kind(os.lstat(path).st_mode)}, not a regular file; "
                                       "remove it", str(path)) from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        kind = file_kind(os.fstat(handle).st_mode)
        os.close(handle)
        raise OSError(errno.EINVAL, f"the lock file is {kind}, not a regular file; remove it", str(path))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(handle)
        return None
    except BaseException:
        os.close(handle)
        raise
    _thread_locks().add(key)
    return HeldLock(key, handle)

"""Progress bars that show on the terminal of a headless build and stay out of the executed notebooks.

``optbench execute`` sets ``$OPTBENCH_PROGRESS_FILE`` for the notebook kernels: bars are written to that
file, which the executing process copies to its terminal as it grows. Without it (a notebook opened in
Jupyter, a script), bars go where tqdm puts them by default.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

PROGRESS_FILE_VARIABLE = "OPTBENCH_PROGRESS_FILE"
_streams: dict[str, object] = {}


def progress_bar(*args, **kwargs) -> tqdm:
    """``tqdm(*args, **kwargs)``, written to ``$OPTBENCH_PROGRESS_FILE`` when it is set."""
    path = os.environ.get(PROGRESS_FILE_VARIABLE)
    if path:
        if path not in _streams:
            # kept open for the life of the kernel: every bar of the build appends to it
            _streams[path] = open(path, "a", buffering=1, encoding="utf-8")
        kwargs.setdefault("file", _streams[path])
        kwargs.setdefault("ncols", 100)
    return tqdm(*args, **kwargs)


class ProgressRelay:
    """Copy what kernels write to a progress file onto this process's stderr while it runs (a context manager)."""

    def __init__(self, path: Path, stream=None, interval: float = 0.5):
        self.path, self.stream, self.interval = Path(path), stream or sys.stderr, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)

    def __enter__(self) -> "ProgressRelay":
        self.path.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _relay(self) -> None:
        relayed = False
        with open(self.path, "r", encoding="utf-8", errors="replace") as source:
            while True:
                chunk = source.read()
                if chunk:
                    self.stream.write(chunk)
                    self.stream.flush()
                    relayed = True
                elif self._stop.is_set():
                    break
                else:
                    time.sleep(self.interval)
        if relayed:  # the last bar ends with a carriage return, not a newline
            self.stream.write("\n")

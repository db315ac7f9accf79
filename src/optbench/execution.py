"""Execute one notebook headless with papermill, as a terminal user needs it.

- The kernel's own output (ipykernel's log lines, C libraries' warnings) goes to a log file, not to the
  terminal; progress bars reach the terminal through :mod:`optbench.progress`.
- An exception in a cell becomes one :class:`ChapterFailed` message naming the chapter, the cell (its
  section and first line) and the cause; the full traceback goes to the log file, whose path it gives.
- Ctrl-C (SIGINT) or SIGTERM kills the kernel's process group at once and raises :class:`Interrupted`:
  finished runs are in the store and an interrupted run resumes from its checkpoint, so rerunning resumes.
- The kernel dies with the executing process even when that is killed outright (SIGKILL of its process
  group): on Linux the kernel asks the system to kill it when its parent dies (``PR_SET_PDEATHSIG``);
  elsewhere ipykernel's parent poller ends it within about a second.
- The executed notebook reaches its target only complete (written atomically); partial notebooks stay in a
  temporary directory, never in the book tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from .store import write_atomically

#: ``prctl`` option: the signal a process receives when its parent dies (Linux)
_PR_SET_PDEATHSIG = 1
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ChapterFailed(RuntimeError):
    """A notebook could not be executed: an exception in a cell, a kernel that died or did not start."""


class Interrupted(RuntimeError):
    """The execution was stopped by a signal (Ctrl-C or SIGTERM); ``signal_number`` says which."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


def new_log_path(root: Path) -> Path:
    """A fresh log file for one ``optbench execute``: ``<root>/_build/logs/execute-<time>-<pid>.log`` (not yet created)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / "_build" / "logs" / f"execute-{stamp}-{os.getpid()}.log"


def _die_with_parent():
    """A ``preexec_fn`` making the child receive SIGKILL when this process dies (Linux), or None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork: the child only calls it
    parent = os.getpid()

    def bind_to_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return bind_to_parent


class _KernelGuard:
    """While executing: on SIGINT or SIGTERM kill the kernel (nbclient then stops with a dead kernel) and remember the
    signal; a signal with no kernel running, or a second one, raises KeyboardInterrupt as usual."""

    def __init__(self):
        self.pid: int | None = None
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_KernelGuard":
        if threading.current_thread() is threading.main_thread():  # only there can Python handle signals
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self.kill_kernel()

    def _handle(self, number: int, frame) -> None:
        first = self.signal_number is None
        self.signal_number = self.signal_number or number
        if first and self.kill_kernel():
            return
        raise KeyboardInterrupt

    def kill_kernel(self) -> bool:
        """Kill the kernel's process group (the kernel and whatever it started); return whether there was one."""
        if self.pid is None:
            return False
        pid, self.pid = self.pid, None
        try:
            # the kernel leads its own session and process group (jupyter_client starts it so)
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def _kernel_manager(output, guard: _KernelGuard) -> type:
    """A kernel manager class whose kernels write to ``output``, die with this process and are known to ``guard``."""

    class BuildKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kw.update(stdout=output, stderr=output, preexec_fn=_die_with_parent())
            await super()._async_launch_kernel(kernel_cmd, **kw)
            guard.pid = self.provisioner.pid

        async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            guard.pid = None  # shut down by nbclient: nothing left to kill
            await super()._async_shutdown_kernel(now=now, restart=restart)

    return BuildKernelManager


@contextlib.contextmanager
def _parent_logging_to(stream):
    """Send this process's log records and warnings (papermill's, jupyter_client's) to ``stream`` meanwhile."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)


def execute_notebook(name: str, source: Path, target: Path, parameters: dict[str, Any], cwd: Path, log_path: Path) -> None:
    """Execute the MyST notebook ``source`` with ``parameters`` (all of them: the executed notebook shows the final
    values) in ``cwd`` and write it to ``target``; raise :class:`ChapterFailed` or :class:`Interrupted`."""
    import jupytext
    import papermill

    log_path.parent.mkdir(parents=True, exist_ok=True)
    # a partial notebook an earlier optbench left in the book tree
    target.with_suffix(".partial.ipynb").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as directory, open(log_path, "a", buffering=1) as log:
        log.write(f"\n==== {datetime.datetime.now().isoformat(timespec='seconds')} executing {name}: {source} -> {target}\n")
        unexecuted = Path(directory) / f"{name}.ipynb"
        executed = Path(directory) / f"{name}.executed.ipynb"
        with _KernelGuard() as guard, _parent_logging_to(log):
            try:
                jupytext.write(jupytext.read(source), unexecuted)
                papermill.execute_notebook(
                    str(unexecuted), str(executed), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                    progress_bar=False, log_output=False, kernel_manager_class=_kernel_manager(log, guard),
                )
            except BaseException as error:  # KeyboardInterrupt included: it becomes Interrupted
                problem = _explain(error, name, executed, unexecuted, log, log_path, guard.signal_number)
            else:
                problem = None
        if problem is not None:
            raise problem from None
        hide_injected_parameters(executed)
        write_atomically(target, lambda stream: stream.write(executed.read_bytes()))


def _explain(error: BaseException, name: str, executed: Path, unexecuted: Path, log, log_path: Path,
             signal_number: int | None) -> Exception:
    """The one-message exception for the terminal; the details go to the log."""
    import traceback

    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    notebook = _read_notebook(executed) or _read_notebook(unexecuted)
    if executed.exists():  # the notebook as far as it ran, beside the log, for a closer look
        kept = log_path.with_name(f"{log_path.stem}-{name}.ipynb")
        shutil.copyfile(executed, kept)
        log.write(f"the notebook as far as it ran: {kept}\n")
    if signal_number is not None or isinstance(error, KeyboardInterrupt):
        number = signal_number or signal.SIGINT
        running = _running_cell(notebook)
        where = f" in {describe_cell(notebook, running)}" if running is not None else ""
        log.write(f"interrupted by {signal.Signals(number).name} while executing {name}{where}\n")
        return Interrupted(f"interrupted ({signal.Signals(number).name}) while executing {name}{where}; the kernel was "
                           "stopped. Finished runs are stored and an interrupted run resumes from its last checkpoint: "
                           "rerun the same command to resume.", number)
    if isinstance(error, PapermillExecutionError):
        log.write(_ANSI_ESCAPE.sub("", "\n".join(error.traceback)) + "\n")
        cell = describe_cell(notebook, error.cell_index) if notebook is not None else f"cell {error.cell_index}"
        return ChapterFailed(f"chapter {name} failed in {cell}: {error.ename}: {error.evalue} "
                             f"(full traceback in {log_path})")
    log.write("".join(traceback.format_exception(error)))
    if isinstance(error, DeadKernelError):
        running = _running_cell(notebook)
        where = f" while executing {describe_cell(notebook, running)}" if running is not None else ""
        return ChapterFailed(f"the kernel of chapter {name} died{where} (out of memory, or killed); "
                             f"its last output is in {log_path}")
    return ChapterFailed(f"could not execute chapter {name}: {type(error).__name__}: {error} (details in {log_path})")


def _read_notebook(path: Path):
    """The notebook at ``path`` without papermill's error banner (so that cell indices are papermill's), or None."""
    import nbformat

    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception:  # absent or half-written: the caller falls back
        return None
    notebook.cells = [cell for cell in notebook.cells if "papermill-error-cell-tag" not in cell.get("metadata", {}).get("tags", [])]
    return notebook


def _running_cell(notebook) -> int | None:
    """The index of the last cell that started (papermill records each cell's start time), or None."""
    started = [index for index, cell in enumerate(notebook.cells if notebook is not None else [])
               if cell.cell_type == "code" and cell.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def describe_cell(notebook, index: int) -> str:
    """A cell as a reader finds it: its number among the code cells, its section and its first line of code."""
    cells = notebook.cells
    cell = cells[index]
    tags = cell.get("metadata", {}).get("tags", [])
    if "injected-parameters" in tags or "parameters" in tags:
        return "the parameters cell"
    # numbered as in the notebook's source, which lacks papermill's injected cell
    number = sum(item.cell_type == "code" and "injected-parameters" not in item.get("metadata", {}).get("tags", [])
                 for item in cells[: index + 1])
    section = None
    for previous in reversed(cells[:index]):
        if previous.cell_type == "markdown":
            headings = [line for line in previous.source.splitlines() if line.startswith("#")]
            if headings:
                section = headings[-1]
                break
    first = next((line.strip() for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    first = first if len(first) <= 70 else first[:67] + "..."
    if section is None or not section.startswith("##"):
        place = "the chapter's setup, before its first section"
    else:
        place = f"section \"{section.lstrip('#').strip()}\""
    return f"code cell {number} ({place}: `{first}`)"


def hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the HTML does not show it."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(notebook, path)

"""What a terminal user sees when an executed notebook fails or is stopped: one message, the details in a log,
no kernel left running and no partial notebook in the book tree.

Each test executes a copy of the ``methods`` page with one cell added right after its parameters (a cell that
fails, or one that waits), through the installed ``optbench`` command.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
OPTBENCH = str(Path(sys.executable).parent / "optbench")
#: what a kernel or ZMQ prints when its output reaches the terminal
KERNEL_NOISE = ("[IPKernelApp]", "KeyboardInterrupt", "Traceback", "zmq", "ZMQ", "Task was destroyed", "Exception ignored")


def root_with_cell(tmp_path: Path, code: str) -> Path:
    """A repository root whose methods page runs ``code`` in a section "A section that fails" after its parameters."""
    root = tmp_path / "root"
    for item in ("notebooks", "profiles"):
        shutil.copytree(REPOSITORY / item, root / item)
    page = root / "notebooks" / "methods.md"
    parameters = 'profile = "default"\n```\n'
    text = page.read_text()
    assert parameters in text
    page.write_text(text.replace(parameters, parameters + f"\n## A section that fails\n\n```{{code-cell}} ipython3\n{code}\n```\n", 1))
    return root


def start(root: Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    return subprocess.Popen([OPTBENCH, "execute", "--profile", "smoke", "--notebook", "methods", "--root", str(root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_kernel(root: Path, process: subprocess.Popen) -> tuple[int, int]:
    """(pid, signal at its parent's death) that the waiting cell wrote, once it runs."""
    marker = root / "kernel.pid"
    deadline = time.monotonic() + 300
    while not (marker.exists() and marker.read_text()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the cell never ran"
        time.sleep(0.2)
    pid, death_signal = marker.read_text().split()
    return int(pid), int(death_signal)


def is_dead(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def book_tree(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in (root / "book").rglob("*")) if (root / "book").exists() else []


#: writes the kernel's pid and the signal it receives at its parent's death (Linux's PR_GET_PDEATHSIG, 0 for none), then waits
WAITING_CELL = """import ctypes, os, sys, time
death_signal = ctypes.c_int(0)
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(2, ctypes.byref(death_signal))
open("kernel.pid", "w").write(f"{os.getpid()} {death_signal.value}")
for second in range(300):
    time.sleep(1)"""


def test_an_error_in_a_cell_is_one_message_naming_chapter_cell_and_cause_with_the_traceback_in_a_log(tmp_path):
    root = root_with_cell(tmp_path, 'settings = {"lr": 0.1}\nsettings["momentum"]')
    process = start(root)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    message = lines[0]
    assert message.startswith("optbench: error: chapter methods failed in code cell 2")
    assert 'section "A section that fails": `settings = {"lr": 0.1}`' in message and "KeyError: 'momentum'" in message
    log = Path(re.search(r"full traceback in (\S+\.log)\)", message).group(1))
    text = log.read_text()
    assert "KeyError" in text and '----> 2 settings["momentum"]' in text
    for noise in KERNEL_NOISE:
        assert noise not in stdout + stderr, noise
    # the kernel's own chatter went to the log, the terminal got the plan line and the one message
    assert "methods: no runs" in stdout
    assert book_tree(root) == [] and not (root / "results").exists()


def test_ctrl_c_stops_the_kernel_with_one_line_saying_what_was_interrupted(tmp_path):
    root = root_with_cell(tmp_path, WAITING_CELL)
    process = start(root)
    kernel, _ = wait_for_kernel(root, process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGINT
    assert stderr.strip().splitlines() == [stderr.strip()], stderr
    assert "interrupted (SIGINT) while executing methods in code cell 2" in stderr
    assert "rerun the same command to resume" in stderr
    for noise in KERNEL_NOISE:
        assert noise not in stdout + stderr, noise
    deadline = time.monotonic() + 5
    while not is_dead(kernel):
        assert time.monotonic() < deadline, "the kernel outlived the interrupted execution"
        time.sleep(0.05)
    assert not [path for path in book_tree(root) if path.endswith(".partial.ipynb")] and book_tree(root) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's death with its parent is Linux's PR_SET_PDEATHSIG")
def test_sigkill_of_the_process_group_also_ends_the_kernel(tmp_path):
    root = root_with_cell(tmp_path, WAITING_CELL)
    process = start(root, start_new_session=True)
    kernel, death_signal = wait_for_kernel(root, process)
    assert os.getpgid(kernel) != process.pid  # the kernel has its own group, so the group's SIGKILL misses it...
    assert death_signal == signal.SIGKILL  # ...but it asked to be killed with its parent, at once
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    # ipykernel's own parent poller alone would take up to a second; the margin is for a loaded machine
    deadline = time.monotonic() + 0.5
    while not is_dead(kernel):
        assert time.monotonic() < deadline, "the kernel outlived the killed execution"
        time.sleep(0.01)
    assert book_tree(root) == []

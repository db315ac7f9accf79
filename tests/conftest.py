import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: lines the session prints at its end: where the smoke book was built, how long it took, where screenshots are
SESSION_NOTES: list[str] = []


def pytest_addoption(parser):
    parser.addoption("--cuda", action="store_true",
                     help="run the CUDA suite (tests/cuda, skipped from every other run); it fails without a CUDA device")


def pytest_ignore_collect(collection_path, config):
    # the CUDA suite runs only when asked for (`make test-cuda`), so a CPU run has no skipped checks
    cuda_suite = Path(__file__).parent / "cuda"
    if not config.getoption("--cuda") and cuda_suite in (collection_path, *collection_path.parents):
        return True
    return None


def pytest_configure(config):
    if config.getoption("--cuda") and not torch.cuda.is_available():
        raise pytest.UsageError("--cuda: this machine has no CUDA device (torch.cuda.is_available() is False); "
                                "run the CUDA suite on a machine with one")


@pytest.fixture(autouse=True)
def _one_thread_and_isolated_results(monkeypatch, tmp_path):
    """Tests never write into the user's results/ and run single-threaded (tiny tensors, shared CI cores)."""
    monkeypatch.setenv("OPTBENCH_RESULTS_DIR", str(tmp_path / "results"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _fresh_compiler_caches():
    """Each test compiles its fused kernels afresh: past torch's recompile limit (8 variants of a kernel, which
    a test session's many shapes and settings reach) dynamo silently runs the kernel uncompiled, and a
    fused test would then check eager code."""
    torch._dynamo.reset()
    yield


@pytest.fixture(scope="session")
def built_book(tmp_path_factory):
    """A copy of the book sources, executed with the smoke profile and built once per test session (the book
    tests and the browser test share it); returns (root, log)."""
    root = tmp_path_factory.mktemp("book")
    for item in ("notebooks", "profiles", "book", "_config.yml", "_toc.yml"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, root / item, ignore=shutil.ignore_patterns("*.ipynb", "*.csv"))
        else:
            shutil.copy(source, root / item)
    env = {**os.environ, "OPTBENCH_RESULTS_DIR": str(root / "results"), "OPTBENCH_NUM_THREADS": "1"}
    started = time.perf_counter()
    execute = subprocess.run([str(BIN / "optbench"), "execute", "--profile", "smoke", "--root", str(root)],
                             env=env, capture_output=True, text=True, timeout=1200)
    assert execute.returncode == 0, execute.stdout[-3000:] + execute.stderr[-5000:]
    executed = time.perf_counter()
    build = subprocess.run([str(BIN / "jupyter-book"), "build", str(root), "--warningiserror", "--nitpick"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-3000:]
    pages = len(list((root / "_build" / "html").rglob("*.html"))) - len(list((root / "_build" / "html" / "_static").rglob("*.html")))
    SESSION_NOTES.append(f"smoke book: executed in {executed - started:.0f} s, built in {time.perf_counter() - executed:.0f} s, "
                         f"{pages} HTML pages, at {root / '_build' / 'html'}")
    return root, execute.stdout + execute.stderr


@pytest.fixture(scope="session")
def session_notes() -> list[str]:
    """Lines to print at the end of the session (the browser test names its screenshot folder here)."""
    return SESSION_NOTES


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("--cuda"):
        reason = "this machine has no CUDA device" if not torch.cuda.is_available() else "not asked for"
        terminalreporter.write_line(f"the CUDA suite (tests/cuda) was not collected ({reason}): "
                                    "`make test-cuda` runs it on a machine with a CUDA device")
    for note in SESSION_NOTES:
        terminalreporter.write_line(note)

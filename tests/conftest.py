import pytest
import torch


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

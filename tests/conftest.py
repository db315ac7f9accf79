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

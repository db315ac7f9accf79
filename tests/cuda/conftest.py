import pytest


def pytest_configure(config):
    # named on the command line, this folder is collected even without --cuda: refuse rather than fail on the CPU
    if not config.getoption("--cuda"):
        raise pytest.UsageError("tests/cuda is the CUDA suite: run it with --cuda (make test-cuda) on a machine with a CUDA device")

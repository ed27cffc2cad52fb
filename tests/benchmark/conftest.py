"""Fixtures of the benchmark tests."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: on a busy machine tiny convolutions spread over several threads mostly wait for each
    other. The other tests get their thread count back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

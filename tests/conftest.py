import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Sampling steps this small run several times faster on one thread than on contended threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

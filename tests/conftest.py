import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: starting threads costs more than it saves, above all on a busy machine. Use it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

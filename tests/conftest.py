"""Shared fixtures: every test gets a temporary ZOO_DATA and a fixed seed."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path_factory.mktemp("zoo-data")))
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models run no faster on two, far slower on a shared CPU, and
    results must not depend on the host's count. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Fixtures shared by the text-generation test files."""
from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Run on one intra-op thread: the tests' tiny models gain nothing from two, and on a shared
    machine two threads waiting on each other made them several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

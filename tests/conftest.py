"""Shared fixtures: every test gets a temporary ZOO_DATA and a fixed seed."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ZOO_DATA", str(tmp_path_factory.mktemp("zoo-data")))
    torch.manual_seed(0)

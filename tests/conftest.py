"""Shared test fixtures."""
import sys

import pytest
import torch

from synergy_bench import registry
from synergy_bench.registry import load_plugins


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and immune to other processes' load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def clean_registry():
    """Undo every registration and plug-in load of the test."""
    load_plugins()
    tables = {kind: dict(t) for kind, t in registry._TABLES.items()}
    state = dict(registry._plugins), list(registry._user_refs), registry._loaded
    modules = set(sys.modules)
    yield
    for kind, table in registry._TABLES.items():
        table.clear()
        table.update(tables[kind])
    registry._plugins.clear()
    registry._plugins.update(state[0])
    registry._user_refs[:] = state[1]
    registry._loaded = state[2]
    for name in set(sys.modules) - modules:
        if name.startswith(("synergy_bench_plugin_", "ext_plugin")):
            del sys.modules[name]

"""Every registered generator runs end to end with two methods on a tiny configuration."""
import dataclasses

import numpy as np
import pytest

from synergy_bench.registry import GENERATORS, load_plugins
from synergy_bench.runner import execute
from synergy_bench.spec import expand, resolve

load_plugins()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_runs_with_two_methods(name):
    fields = {f.name for f in dataclasses.fields(GENERATORS[name].Params)}
    assert {"n_train", "n_test"} <= fields, "generators size their splits with n_train and n_test"
    spec = resolve({"name": "tiny", "generator": {"name": name, "n_train": 128, "n_test": 64},
                    "methods": ["cross", "comm"], "controls": [], "seeds": 1,
                    "train": {"epochs": 1, "batch_size": 64}, "probe": {"Cs": [1.0]}})
    gen = GENERATORS[name](GENERATORS[name].Params(n_train=128, n_test=64), 0)
    truth = gen.ground_truth()
    assert set(truth) == set(gen.tasks)
    for run in expand(spec):
        rows = execute(run)
        acc = [r["value"] for r in rows if r["metric"] == "balanced_accuracy"]
        assert len(acc) == len(gen.tasks) and all(0 <= a <= 1 for a in acc)
        assert all(np.isfinite(r["value"]) for r in rows)

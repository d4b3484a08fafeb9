"""Every registered generator runs end to end through the engine on a tiny configuration: every
task and metric once, the generator's exact truth and chance on every row, bits within the
information the task holds."""
import dataclasses
import math

import numpy as np
import pytest

from synergy_bench.registry import GENERATORS, load_plugins
from synergy_bench.runner import build_generator, execute
from synergy_bench.spec import expand, resolve

load_plugins()

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_runs_with_a_method_and_a_control(name):
    fields = {f.name for f in dataclasses.fields(GENERATORS[name].Params)}
    assert {"n_train", "n_test"} <= fields, "generators size their splits with n_train and n_test"
    spec = resolve({"name": "tiny", "generator": {"name": name, "n_train": 256, "n_test": 128},
                    "methods": ["comm"], "controls": ["raw"], "seeds": 1,
                    "train": {"epochs": 1, "batch_size": 64}, "probe": {"Cs": [1.0]}})
    for run in expand(spec):
        gen = build_generator(run)
        truth, rows = gen.ground_truth(), execute(run)
        assert set(truth) == set(gen.tasks) == set(run.tasks)
        metrics = {"balanced_accuracy", "bits"}
        sample = gen.sample("test", np.random.default_rng(0))
        if gen.modality_codes(sample["z"]) is not None:
            metrics |= {"pred_redundancy", "pred_unique1", "pred_unique2", "pred_synergy"}
        assert sorted((r["task"], r["metric"]) for r in rows) == sorted((t, m) for t in gen.tasks for m in metrics)
        for r in rows:
            t = truth[r["task"]]
            assert r["chance"] == 1.0 / gen.n_classes(r["task"]) and r["method"] == run.method
            if t is not None:
                assert (r["truth_bits"], r["truth_synergy"]) == (t.total, t.synergy)
                if r["metric"] == "bits":  # certified bits never exceed the plug-in label entropy <= log2 k
                    assert r["value"] <= math.log2(gen.n_classes(r["task"])) + 1e-9

"""The Ray executor: same numbers as the local one, clear errors, resources per run."""
from __future__ import annotations

import dataclasses
import sys

import pandas as pd
import pytest

from synergy_bench.cli import main
from synergy_bench.registry import UserError
from synergy_bench.runner import _ray_resources
from synergy_bench.spec import expand, resolve

TINY = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]",
        "--set", "methods=[cross]", "--set", "controls=[random]", "--set", "seeds=[0, 1]",
        "--device", "cpu", "--quiet"]


def test_ray_grid_equals_local_grid(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    assert main(["run", "--out", str(tmp_path / "local"), "--workers", "1", *TINY]) == 0
    assert main(["run", "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2", *TINY]) == 0
    assert not ray.is_initialized()  # the local instance it started is shut down
    a, b = (pd.read_csv(tmp_path / w / "results.csv").sort_values(["run_id", "task", "metric"])
            for w in ("local", "ray"))
    assert len(a) == 4 * 2 * 6 and list(a.run_id) == list(b.run_id)
    assert (a.value.to_numpy() == b.value.to_numpy()).all()
    assert (a.final_loss.fillna(-1).to_numpy() == b.final_loss.fillna(-1).to_numpy()).all()
    # rerun: everything is done, nothing is sent to Ray
    capsys.readouterr()
    assert main(["run", "--out", str(tmp_path / "ray"), "--executor", "ray", *TINY]) == 0
    assert "(4 already in" in capsys.readouterr().out and not ray.is_initialized()
    assert len(pd.read_csv(tmp_path / "ray" / "results.csv")) == len(a)


def test_missing_ray_is_a_user_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["run", "--out", str(tmp_path), "--executor", "ray", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--executor ray needs Ray; install it with `pip install -e \".[ray]\"`" in err
    assert not (tmp_path / "results.csv").exists()


def test_address_needs_the_ray_executor(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--address", "10.0.0.1:6379", *TINY]) == 2
    assert "--address 10.0.0.1:6379 applies to --executor ray" in capsys.readouterr().err


def test_resources_per_run():
    run = expand(resolve({"name": "x", "methods": ["cross"], "controls": [], "device": "cpu",
                          "train": {"threads": 2}}))[0]
    sent, need = _ray_resources(run, {"CPU": 4.0})
    assert sent is run and need == {"num_cpus": 2, "num_gpus": 0}
    with pytest.raises(UserError, match="train.threads = 2 but the Ray cluster has 1 CPUs"):
        _ray_resources(run, {"CPU": 1.0})
    auto = dataclasses.replace(run, device="auto")
    assert _ray_resources(auto, {"CPU": 4.0})[1]["num_gpus"] == 0
    sent, need = _ray_resources(auto, {"CPU": 4.0, "GPU": 2.0})
    assert sent.device == "cuda" and need["num_gpus"] == 1 and sent.run_id == run.run_id
    sent, need = _ray_resources(dataclasses.replace(run, device="cuda:1"), {"CPU": 4.0, "GPU": 1.0})
    assert sent.device == "cuda" and need["num_gpus"] == 1  # Ray picks the GPU
    with pytest.raises(UserError, match="needs a GPU but the Ray cluster has none"):
        _ray_resources(dataclasses.replace(run, device="cuda"), {"CPU": 4.0})

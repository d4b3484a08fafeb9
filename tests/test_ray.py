"""The Ray executor: same numbers as the local one, clear errors, resources per run."""
from __future__ import annotations

import dataclasses
import sys

import pandas as pd
import pytest

from synergy_bench.cli import main
from synergy_bench.registry import UserError
from synergy_bench.registry import METHODS
from synergy_bench.runner import _ray_resources, load_worker_plugins, plugin_sources
from synergy_bench.spec import expand, resolve

PLUGIN = ("import synergy_bench as sb\n\n\n@sb.register_method\nclass RayCross(sb.get_method('cross')):\n"
          "    name = 'ray_plugin_cross'\n")

TINY = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]",
        "--set", "methods=[cross]", "--set", "controls=[random]", "--set", "seeds=[0, 1]",
        "--device", "cpu", "--quiet"]


def test_ray_grid_equals_local_grid(tmp_path, capsys, clean_registry):
    """The same numbers on Ray, with a method from a plug-in file that the tasks receive."""
    ray = pytest.importorskip("ray")
    plugin = tmp_path / "ray_plugin.py"
    plugin.write_text(PLUGIN)
    sets = [*TINY, "--plugin", str(plugin), "--set", "methods=[ray_plugin_cross]"]
    assert main(["run", "--out", str(tmp_path / "local"), "--workers", "1", *sets]) == 0
    assert main(["run", "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2", *sets]) == 0
    assert not ray.is_initialized()  # the local instance it started is shut down
    a, b = (pd.read_csv(tmp_path / w / "results.csv").sort_values(["run_id", "task", "metric"])
            for w in ("local", "ray"))
    assert len(a) == 4 * 2 * 6 and list(a.run_id) == list(b.run_id)
    assert set(a.method) == {"ray_plugin_cross", "random"}
    assert (a.value.to_numpy() == b.value.to_numpy()).all()
    assert (a.final_loss.fillna(-1).to_numpy() == b.final_loss.fillna(-1).to_numpy()).all()
    # rerun: everything is done, nothing is sent to Ray
    capsys.readouterr()
    assert main(["run", "--out", str(tmp_path / "ray"), "--executor", "ray", *sets]) == 0
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


def test_worker_plugins_load_from_the_shipped_text_where_the_file_is_absent(tmp_path, clean_registry):
    plugin = tmp_path / "shipped.py"
    plugin.write_text(PLUGIN.replace("ray_plugin_cross", "shipped_plugin_cross"))
    shipped = plugin_sources([str(plugin)])
    plugin.unlink()  # a worker on another machine: no such file there
    load_worker_plugins(shipped)
    assert "shipped_plugin_cross" in METHODS


def test_ray_with_cuda_is_not_refused_on_a_driver_without_a_gpu(tmp_path, monkeypatch, capsys):
    """Ray places GPUs per task: the driver does not check its own devices."""
    import synergy_bench.runner as runner

    seen = []

    def fake_ray(runs, workers, plugins=(), address=None):
        seen.extend(runs)
        return iter(())

    monkeypatch.setattr(runner, "_import_ray", lambda: None)
    monkeypatch.setattr(runner, "run_ray", fake_ray)
    monkeypatch.setattr(runner.torch.cuda, "device_count", lambda: 0)
    args = [a if a != "cpu" else "cuda" for a in TINY]
    assert main(["run", "--out", str(tmp_path), "--executor", "ray", *args]) == 0
    assert len(seen) == 4 and {r.device for r in seen} == {"cuda"}

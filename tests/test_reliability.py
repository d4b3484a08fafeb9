"""Nothing lost, nothing duplicated, same numbers: resume after SIGKILL, locks, failed runs."""
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pandas as pd
import torch

from synergy_bench import results
from synergy_bench.cli import main
from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.registry import METHODS, register_method

TINY = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]", "--quiet"]


def _finished(out):
    df = pd.read_csv(out / "results.csv")
    return df, df.groupby("run_id").size()


def test_sigkill_then_rerun_keeps_every_run_exactly_once(tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "synergy_bench", "run", "--out", str(out), "--workers", "1",
           "--set", "methods=[cross]", "--set", "controls=[raw]", "--set", "seeds=4", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = out / "completed.txt"
    deadline = time.time() + 120
    while time.time() < deadline and not (done.exists() and len(done.read_text().split()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(done.read_text().split())
    assert 3 <= killed_at < 8, "the kill should land mid-grid"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    df, per_run = _finished(out)
    assert len(per_run) == 8 and (per_run == 2 * 6).all()  # 8 runs x (2 tasks x 6 metrics)
    assert sorted(done.read_text().split()) == sorted(per_run.index)


def test_torn_rows_of_unfinished_runs_are_dropped(tmp_path):
    spec = {"name": "x"}
    store = results.ResultsStore(tmp_path, spec)
    store.add("aaaa", [{"run_id": "aaaa", "task": "R", "metric": "bits", "value": 1.0}])
    store.close()
    with open(tmp_path / "results.csv", "a") as f:  # a run killed mid-write
        f.write("bbbb,x,latent,latent,{},cross,cross,{},True,0,0,R,bits,0.5\nbbbb,x,lat")
    store = results.ResultsStore(tmp_path, spec)
    store.close()
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df.run_id) == ["aaaa"] and store.completed == {"aaaa"}


def test_second_writer_is_refused_and_other_spec_needs_force(tmp_path, capsys):
    store = results.ResultsStore(tmp_path, {"name": "quick"})
    try:
        assert main(["run", "--out", str(tmp_path), *TINY]) == 2
        assert "another synergy-bench process is writing" in capsys.readouterr().err
    finally:
        store.close()
    assert main(["run", "--out", str(tmp_path), "--set", "name=other", *TINY]) == 2
    assert "holds results of spec 'quick'" in capsys.readouterr().err


@dataclass
class _BoomParams(EncoderParams):
    pass


class _Boom(Method):
    """A method whose loss is NaN: the run must be recorded as failed, the grid must go on."""

    name = "_boom"
    Params = _BoomParams

    def __init__(self, params, shapes, seed):
        super().__init__(params, shapes, seed)
        self.w = torch.nn.Parameter(torch.ones(()))

    def loss(self, views1, views2, epoch, max_epochs, labels=None):
        return self.w * float("nan")

    def embed(self, xs):
        return xs[0]


def test_failed_run_is_recorded_and_the_grid_goes_on(tmp_path, capsys):
    register_method(_Boom)
    try:
        code = main(["run", "--out", str(tmp_path), "--workers", "1", "--set", "methods=[_boom, cross]",
                     "--set", "controls=[]", "--set", "seeds=1", *TINY])
    finally:
        METHODS.pop("_boom")
    assert code == 1
    assert "1 run(s) failed" in capsys.readouterr().err
    assert "TrainingDiverged" in (tmp_path / "failures.jsonl").read_text()
    assert set(pd.read_csv(tmp_path / "results.csv").method) == {"cross"}


def test_same_numbers_across_worker_counts(tmp_path):
    sets = ["--set", "methods=[cross, comm]", "--set", "controls=[random]", "--set", "seeds=1", *TINY]
    assert main(["run", "--out", str(tmp_path / "w1"), "--workers", "1", *sets]) == 0
    assert main(["run", "--out", str(tmp_path / "w2"), "--workers", "2", *sets]) == 0
    a, b = (pd.read_csv(tmp_path / w / "results.csv").sort_values(["run_id", "task", "metric"])
            for w in ("w1", "w2"))
    assert list(a.run_id) == list(b.run_id)
    assert (a.value.to_numpy() == b.value.to_numpy()).all()

"""Bad or odd command lines, as a new user types them: each is a one-line refusal (exit 2) that
names the value and the fix, with nothing written, or it works and writes each run once.

(The spec-level cases are in test_spec.py, the damaged folders in test_reliability.py, the
signals in test_signals.py.)"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synergy_bench.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
        "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]", "--set", "methods=[cross]", "--set", "controls=[raw]",
        "--workers", "1", "--quiet"]


@pytest.mark.parametrize("argv, message", [
    (["run", ""], "spec '' is empty"),
    (["run", "--set", "probe.Cs=5"], "Cs = 5 is not a list"),
    (["run", "--set", "probe.Cs=[]"], "Cs = [] must be a non-empty list"),
    (["run", "--set", "train=5"], "train = 5 must be a mapping"),
    (["run", "--set", "probe=5"], "probe = 5 must be a mapping"),
    (["run", "--set", "methods=5"], "methods = 5 must be a list"),
    (["run", "--set", "tasks=5"], "tasks = 5 must be a non-empty list"),
    (["run", "--set", "tasks=[]"], "tasks = [] must be a non-empty list"),
    (["run", "--set", "train.lr=.inf"], "train.lr = inf is not a finite number"),
    (["run", "--set", "generator.noise=.inf"], "noise = inf is not a finite number"),
    (["run", "--set", "probe.Cs=[.nan]"], "element nan is not a finite number"),
    (["run", "--set", "probe.holdout=0.999"], "probe.holdout = 0.999 with generator.n_train = 2000"),
    (["run", "--set", "generator.n_train=3"], "generator.n_train = 3 leaves"),
    (["run", "--set", "generator.n_train=1000000000000"], "needs about"),
    (["run", "--set", "profiles.cpu.train.epochs=3"], "defines no profiles"),  # quick has none
    (["run", "--set", "x=[1"], "the value is not valid YAML"),
    (["run", "--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
    (["run", "--workers", "0"], "--workers 0 must be >= 1"),
    (["run", "--device", "cuda:7"], "device 'cuda:7' is not available"),
    (["run", "--device", "tpu"], "device = 'tpu' is not valid"),
    (["run", "--address", "10.0.0.1:6379"], "--address 10.0.0.1:6379 applies to --executor ray"),
    (["run", "--set", "metods=[comm]"], "unknown spec key 'metods'; did you mean 'methods'"),
    (["run", "--set", "methods=[{name: infmasking, mask_ratoi: 0.5}]"], "did you mean 'mask_ratio'"),
    (["run", "--plugin", "nowhere.py"], "plug-in file 'nowhere.py' not found"),
    (["run", "--unknown-flag"], "unrecognized arguments: --unknown-flag"),
    (["generate", "latent", "--seed", "-1", "--out", "{tmp}/d.npz"], "--seed -1 must be an integer in 0"),
    (["generate", "latent", "--set", "n_train=1000000000000", "--out", "{tmp}/d.npz"], "needs about"),
    (["generate", "latent", "--out", "{tmp}/folder.npz"], "is a folder"),
    (["pid", "latent", "--estimator", "batch", "--samples", "4"], "must leave at least 2 of the 4 samples"),
    (["pid", "latent", "--seed", "-3"], "--seed -3 must be"),
    (["pid", "latent", "--set", "noise=.inf"], "generator[latent].noise = inf is not a finite number"),
    (["generate", "latent", "--set", "noise=.nan", "--out", "{tmp}/d.npz"], "noise = nan is not a finite"),
    (["pid", "--table", "{tmp}/empty.npy"], "is not a numpy array file"),
    (["pid", "--table", "{tmp}/complex.npy"], "holds complex128 values"),
    (["pid", "--table", "{tmp}/missing.npy"], "no such file"),
    (["pid", "latent", "--set", "n_modalities=3", "--estimator", "cluster"], "the estimators take two modalities"),
    (["report", "{tmp}/nothing"], "no results.csv"),
    (["report", "{tmp}", "--format", "html"], "argument --format: invalid choice: 'html'"),
    (["compare", "{tmp}/a"], "give two folders (compare DIR_A DIR_B) or one folder and two methods"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "folder.npz").mkdir()
    np.save(tmp_path / "complex.npy", np.ones((2, 2, 2), dtype=complex))
    out = tmp_path / "out"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "run":
        argv += ["--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists() and not (tmp_path / "d.npz").exists()


def test_duplicate_seeds_write_every_run_once(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), *TINY, "--set", "seeds=[0, 0]"]) == 0
    assert "note: seeds: 1 duplicate grid point(s) merged" in capsys.readouterr().err
    done = (out / "completed.txt").read_text().split("\n")[:-1]
    df = pd.read_csv(out / "results.csv")
    assert len(done) == 2 == df.run_id.nunique() and len(df) == 2 * 2 * 6


def test_a_prediction_pid_too_large_for_memory_is_refused_before_training(tmp_path, capsys):
    """k = 64: 64^3 codes per modality. Refused once the test codes are drawn, before training."""
    assert main(["run", "--out", str(tmp_path / "k64"), *TINY, "--set", "generator.k=64",
                 "--set", "generator.n_train=700", "--set", "generator.n_test=2000", "--set", "seeds=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the exact PID of the probe's predictions" in err and "GiB" in err
    assert "set probe.prediction_pid: false" in err
    assert not (tmp_path / "k64" / "completed.txt").read_text()


def test_slow_exact_solves_say_so_first(tmp_path, capsys):
    assert main(["pid", "latent", "--set", "k=3", "--set", "n_modalities=3"]) == 0
    assert "solving the exact PID of 5 task(s) of latent" in capsys.readouterr().err
    table = np.zeros((260, 260, 8))
    rng = np.random.default_rng(0)
    np.add.at(table, (rng.integers(0, 260, 300), rng.integers(0, 260, 300), rng.integers(0, 8, 300)), 1.0)
    np.save(tmp_path / "big.npy", table)
    assert main(["pid", "--table", str(tmp_path / "big.npy"), "--json"]) == 0
    assert "Newton systems of size 2080, this can take minutes" in capsys.readouterr().err


def test_a_utf16_spec_and_a_spec_in_another_folder_run(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: u16\ngenerator: {name: latent, n_train: 128, n_test: 64}\nmethods: [cross]\n",
                    encoding="utf-16")
    assert main(["run", str(path), "--dry-run"]) == 0
    assert "# 3 runs" in capsys.readouterr().out
    assert not Path("results/u16").exists()

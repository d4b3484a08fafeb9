"""End to end through the CLI, in-process, on a tiny grid."""
import json
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from synergy_bench.cli import main
from synergy_bench.results import COLUMNS

TINY = ["--set", "generator.n_train=256", "--set", "generator.n_test=128", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "seeds=1", "--set", "probe.Cs=[1.0]",
        "--workers", "1", "--quiet"]


def test_run_report_and_resume(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["run", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "truth (bits)" in text and "infmasking" in text
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    assert set(df.method) == {"raw", "random", "cross", "cross_self", "factorcl", "comm", "infmasking"}
    assert set(df.metric) == {"balanced_accuracy", "bits", "pred_redundancy", "pred_unique1",
                              "pred_unique2", "pred_synergy"}
    assert len(df) == 7 * 4 * 6
    assert df[df.metric == "balanced_accuracy"].value.between(0, 1).all()
    assert np.allclose(df.truth_bits, 1.0)
    assert (out / "figures" / "rus.png").stat().st_size > 0 and (out / "figures" / "rus.pdf").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["device"] == "cpu" and meta["version"] == df.version.iloc[0]
    assert meta["torch"] == torch.__version__  # the command as given, quoted for a shell
    assert meta["command"] == shlex.join(["synergy-bench", "run", "--out", str(out), *TINY])
    if (Path(__file__).parents[1] / ".git").exists():  # a checkout: the code's commit is named
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parents[1]).stdout.strip()
        assert meta["commit"].removesuffix("+dirty") == head
    # rerun: everything is done, nothing duplicated
    assert main(["run", "--out", str(out), *TINY]) == 0
    assert "(7 already in" in capsys.readouterr().out
    assert len(pd.read_csv(out / "results.csv")) == len(df)
    # report rebuilds from the csv alone
    (out / "figures" / "rus.png").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "figures" / "rus.png").exists()


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--set", "generator.k=1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "generator[latent].k = 1 is out of range" in err
    assert main(["run", "nonexistent_spec"]) == 2
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["pid", "nope"]) == 2
    assert "unknown generator 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["run", "--device", "cuda:7"], "device 'cuda:7' is not available"),
    (["run", "--device", "tpu"], "device 'tpu' is not valid"),
    (["run", "--executor", "slurm"], "executor 'slurm' is unknown; choose one of local"),
    (["run", "--workers", "0"], "--workers 0 must be >= 1"),
    (["run", "--set", "train.lr=fast"], "train.lr = 'fast' is not a float"),
    (["run", "--set", "generator.k=1"], "generator[latent].k = 1 is out of range (allowed: >= 2 and <= 64"),
    (["run", "--set", "seeds=-1"], "seeds = -1 must be a count >= 1"),
    (["run", "--set", "tasks=[Y]"], "task 'Y' is not a task of generator 'latent'"),
    (["run", "--set", "methods=[{name: infmasking, mask_ratio: -0.1}]"], "mask_ratio = -0.1 is out of range"),
    (["run", "--set", "methods=[{name: infmasking, num_masks: 0}]"], "num_masks = 0 is out of range"),
    (["run", "--set", "methods=[{name: infmasking, mask_ratoi: 0.5}]"], "did you mean 'mask_ratio'"),
    (["run", "--set", "metods=[comm]"], "unknown spec key 'metods'; did you mean 'methods'"),
])
def test_bad_input_one_line_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (out / "results.csv").exists()


def test_report_on_damaged_results(tmp_path, capsys):
    (tmp_path / "results.csv").write_bytes(b"run_id,task\n\x00\xff\xfe,\"unclosed\n")
    assert main(["report", str(tmp_path)]) == 2
    assert "results.csv" in capsys.readouterr().err


def test_pid_json_and_generate(tmp_path, capsys):
    assert main(["pid", "latent", "--set", "k=4", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["S"]["synergy"] == pytest.approx(2.0, abs=1e-6)
    assert table["R"]["redundancy"] == pytest.approx(2.0, abs=1e-6)
    path = tmp_path / "d.npz"
    assert main(["generate", "latent", "--set", "n_train=50", "--set", "n_test=20", "--out", str(path)]) == 0
    data = np.load(path)
    assert data["train/x1"].shape == (50, 32) and data["test/y_S"].shape == (20,)
    assert json.loads(str(data["meta"]))["ground_truth"]["U1"]["unique1"] == pytest.approx(1.0, abs=1e-6)


def test_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("latent", "cross", "cross_self", "factorcl", "comm", "infmasking", "raw", "random", "quick"):
        assert name in text

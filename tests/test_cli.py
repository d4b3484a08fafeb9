"""End to end through the CLI, in-process, on a tiny grid."""
import json

import numpy as np
import pandas as pd
import pytest

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

"""End to end through the CLI, in-process, on a tiny grid: run, resume, report, compare, help."""
import io
import json
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from synergy_bench.cli import main, parser
from synergy_bench.results import COLUMNS
from synergy_bench.tables import Stat

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "generator.n_train=256", "--set", "generator.n_test=256", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "seeds=2", "--set", "probe.Cs=[1.0]",
        "--set", "methods=[cross]", "--set", "controls=[raw]", "--set", "tasks=[R, U1, S]",
        "--workers", "1", "--quiet"]


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "quick"
    code = main(["run", "--out", str(out), *TINY])
    return out, code


def test_run_writes_every_row_once_with_provenance(tiny, capsys):
    out, code = tiny
    assert code == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    assert sorted(set(df.method_label)) == ["cross", "raw"] and set(df.measure) == {"probe"}
    assert set(df.metric) == {"balanced_accuracy", "bits", "pred_redundancy", "pred_unique1",
                              "pred_unique2", "pred_synergy"}
    assert len(df) == 2 * 2 * 3 * 6  # seeds x methods x tasks x metrics
    assert df.groupby(["run_id", "task", "metric"]).size().eq(1).all()
    done = dict(line.split() for line in (out / "completed.txt").read_text().splitlines())
    assert {k: int(v) for k, v in done.items()} == df.groupby("run_id").size().to_dict()
    assert df[df.method == "raw"].trained.eq(False).all() and df[df.method == "cross"].trained.all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["command"] == shlex.join(["synergy-bench", "run", "--out", str(out), *TINY])
    assert {"python", "numpy", "scipy", "scikit-learn", "torch", "cpu", "device"} <= set(meta)
    assert len(meta["history"]) == 1 and meta["history"][0]["command"] == meta["command"]
    if (ROOT / ".git").exists():  # a checkout: the code's commit is named, in meta.json and every row
        assert meta["commit"] == _head() and isinstance(meta["dirty"], bool)
        assert set(df["commit"]) == {_head() + ("+dirty" if meta["dirty"] else "")}


def test_raw_inputs_hold_r_and_u_linearly_but_not_the_xor(tiny):
    """A property of the data, read through the whole engine: the raw control's linear probe reads
    R and U1 (each a factor of one modality) almost perfectly, and the XOR task S at chance."""
    df = pd.read_csv(tiny[0] / "results.csv")
    acc = df[(df.method == "raw") & (df.metric == "balanced_accuracy")].groupby("task").value.mean()
    assert acc["R"] > 0.95 and acc["U1"] > 0.95 and abs(acc["S"] - 0.5) < 0.1
    bits = df[(df.method == "raw") & (df.metric == "bits")].set_index(["task", "seed"]).value
    assert (bits <= 1.0 + 0.05).all() and bits["R"].min() > 0.8


def test_rerun_resumes_and_appends_history(tiny, capsys):
    out, _ = tiny
    before = (out / "results.csv").read_text()
    assert main(["run", "--out", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    assert "4 runs (4 already in" in captured.out and "outside this grid" not in captured.err
    assert (out / "results.csv").read_text() == before
    meta = json.loads((out / "meta.json").read_text())
    assert len(meta["history"]) == 2


def test_report_prints_mean_and_standard_error_and_leaves_figures(tiny, capsys):
    out, _ = tiny
    figure = out / "figures" / "rus.png"
    stamp = figure.stat().st_mtime_ns
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean ± standard error over 2 seeds" in text
    df = pd.read_csv(out / "results.csv")
    raw_r = df[(df.method == "raw") & (df.task == "R") & (df.metric == "balanced_accuracy")].value
    line = next(ln for ln in text.splitlines() if ln.split()[:1] == ["raw"])
    assert Stat.of(raw_r).text() in line
    assert figure.stat().st_mtime_ns == stamp  # a report rewrites no figure unless asked
    figure.unlink()
    assert main(["report", str(out), "--figures"]) == 0 and figure.exists()


def _markdown_cells(text: str) -> dict[tuple[str, str], str]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {(row[0], col): cell for ln in lines[2:]
            for row in [[c.strip() for c in ln.strip("|").split("|")]] for col, cell in zip(head, row)}


def test_report_markdown_round_trips_the_folder(tiny, tmp_path, capsys):
    out, _ = tiny
    md = tmp_path / "t.md"
    assert main(["report", str(out), "--format", "markdown", "--out", str(md)]) == 0
    cells = _markdown_cells(md.read_text())
    df = pd.read_csv(out / "results.csv")
    for (method, task, metric), part in df.groupby(["method_label", "task", "metric"]):
        if metric in ("balanced_accuracy", "bits"):
            col = f"{task} {'acc' if metric == 'balanced_accuracy' else 'bits'}"
            mean, se = (float(x) for x in cells[(method, col)].split(" ± "))
            s = Stat.of(part.value)
            assert mean == pytest.approx(s.mean, abs=5e-4) and se == pytest.approx(s.se, abs=5e-4)
    assert main(["report", str(out), "--format", "csv", "--out", str(tmp_path / "t.csv")]) == 0
    summary = pd.read_csv(tmp_path / "t.csv")
    assert set(summary.columns) >= {"method_label", "task", "metric", "mean", "se", "n"} and (summary.n == 2).all()
    assert main(["report", str(out), "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert r"\begin{tabular}" in latex and r"$" in latex and r"\pm" in latex


def test_compare_pairs_the_shared_seeds(tiny, tmp_path, capsys):
    out, _ = tiny
    other = tmp_path / "other"
    other.mkdir()
    df = pd.read_csv(out / "results.csv")
    shifted = df.assign(value=np.where(df.seed == 0, df.value + 0.1, df.value + 0.3))
    shifted[shifted.seed.isin([0, 1])].to_csv(other / "results.csv", index=False)
    capsys.readouterr()
    assert main(["compare", str(out), str(other), "--metric", "bits", "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(frame.metric) == {"bits"} and (frame.n == 2).all()
    assert np.allclose(frame["diff"], 0.2) and np.allclose(frame.se, 0.1)  # diffs 0.1, 0.3: SE = 0.1
    empty = tmp_path / "empty"
    empty.mkdir()
    df.assign(method_label="zzz").to_csv(empty / "results.csv", index=False)
    assert main(["compare", str(out), str(empty)]) == 2
    assert "share no cell" in capsys.readouterr().err


def test_compare_pairs_two_methods_of_one_folder(tiny, capsys):
    out, _ = tiny
    df = pd.read_csv(out / "results.csv")
    a, b = sorted(set(df.method_label))[:2]
    capsys.readouterr()
    assert main(["compare", str(out), "--methods", a, b, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    cell = frame[(frame.task == frame.task.iloc[0]) & (frame.metric == "bits")].iloc[0]
    pick = df[(df.task == cell.task) & (df.metric == "bits")]
    by_seed = pick.pivot_table(index="seed", columns="method_label", values="value")
    diffs = by_seed[b] - by_seed[a]
    assert set(frame.method_label) == {f"{b} - {a}"} and cell.n == len(diffs)
    assert cell["diff"] == pytest.approx(diffs.mean()) and cell.se == pytest.approx(diffs.std() / np.sqrt(len(diffs)))
    assert main(["compare", str(out), "--methods", a, "nope"]) == 2
    assert "--methods 'nope' is not a method of" in capsys.readouterr().err
    assert main(["compare", str(out)]) == 2
    assert "give two folders" in capsys.readouterr().err


def test_dry_run_prints_the_resolved_spec_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "quick", "--dry-run", "--out", str(out), "--set", "generator.k=[2,4]",
                 "--set", "seeds=[0,0]"]) == 0
    captured = capsys.readouterr()
    spec = yaml.safe_load(captured.out)
    assert [p["k"] for p in spec["generator"]["grid"]] == [2, 4] and spec["seeds"] == [0]
    assert spec["measures"][0]["params"]["holdout"] == 0.2  # every parameter, defaults included
    assert all("temperature" in m["params"] for m in spec["methods"])
    assert captured.out.rstrip().endswith(f"# {2 * 7} runs") and "duplicate" in captured.err
    assert not out.exists()


def test_top_level_help_has_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in ("examples:", "exit status:", "130", "141", "synergy-bench run quick --set"):
        assert needle in text
    assert ":class:" not in text and "``" not in text  # plain text, not reStructuredText


@pytest.mark.parametrize("command, needles", [
    (["run"], ["--executor {local,ray}", "default: local", "dotted keys", "repeat the flag", "grid",
               "results/<spec name>-<profile>", "--dry-run"]),
    (["report"], ["{text,markdown,latex,csv}", "default: text", "--figures", "--html"]),
    (["bench"], ["{loss,train,pid,all}", "default: all"]),
    (["compare"], ["DIR_A", "DIR_B", "standard error"]),
    (["list"], ["measures"]),
    (["check"], ["PLUGIN"]),
])
def test_every_subcommand_describes_its_arguments(capsys, command, needles):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in needles:
        assert needle in text, needle
    sub = parser()._subparsers._group_actions[0].choices[command[0]]
    for action in sub._actions:
        assert action.help, f"{command[0]} {action.dest} has no help"


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path), "--set", "generator.k=1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "generator[latent].k = 1 is out of range" in err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert main(["pid", "nope"]) == 2
    assert "unknown generator 'nope'" in capsys.readouterr().err
    assert main(["bench", "speed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'speed'" in err


def test_pid_json_and_generate(tmp_path, capsys):
    assert main(["pid", "latent", "--set", "k=4", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["S"]["synergy"] == pytest.approx(2.0, abs=1e-6)
    assert table["R"]["redundancy"] == pytest.approx(2.0, abs=1e-6)
    path = tmp_path / "d.npz"
    assert main(["generate", "latent", "--set", "n_train=50", "--set", "n_test=20", "--out", str(path)]) == 0
    data = np.load(path)
    assert data["train/x1"].shape == (50, 64) and data["test/y_S"].shape == (20,)
    assert json.loads(str(data["meta"]))["ground_truth"]["U1"]["unique1"] == pytest.approx(1.0, abs=1e-6)


def test_list_names_every_plugin_once(capsys):
    from synergy_bench.registry import GENERATORS, MEASURES, METHODS, load_plugins

    load_plugins()
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    sections = re.split(r"^(generators|methods|measures|experiment specs):$", text, flags=re.M)
    listed = {title: re.findall(r"^  (\S+)", body, flags=re.M) for title, body in zip(sections[1::2], sections[2::2])}
    assert listed["generators"] == sorted(GENERATORS) and listed["methods"] == sorted(METHODS)
    assert listed["measures"] == sorted(MEASURES) and "quick" in listed["experiment specs"]


def test_dry_run_notes_what_would_not_fit_here(capsys):
    assert main(["run", "--dry-run", "--set", "generator.n_train=1000000000000"]) == 0
    captured = capsys.readouterr()
    assert "n_train: 1000000000000" in captured.out and "run it on a larger machine" in captured.err


def test_report_warns_when_a_folder_mixes_code_versions(tiny, tmp_path, capsys):
    out, _ = tiny
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    df = pd.read_csv(out / "results.csv")
    df.assign(commit=np.where(df.seed == 0, "a" * 40, "b" * 40 + "+dirty")).to_csv(mixed / "results.csv", index=False)
    assert main(["report", str(mixed)]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds runs from 2 code versions (aaaaaaaaaaaa, bbbbbbbbbbbb+dirty)" in err
    assert main(["report", str(out)]) == 0
    assert "code versions" not in capsys.readouterr().err
    df.assign(commit=np.where(df.seed == 0, "a" * 40, "")).to_csv(mixed / "results.csv", index=False)
    assert main(["report", str(mixed)]) == 0  # rows of a layout that named no commit: one more version
    assert "holds runs from 2 code versions (aaaaaaaaaaaa, unknown)" in capsys.readouterr().err


def test_report_of_a_folder_of_folders_and_the_html_hooks(tiny, tmp_path, monkeypatch, capsys):
    import sys
    import types

    import synergy_bench

    out, _ = tiny
    monkeypatch.delattr(synergy_bench, "html_report", raising=False)  # imported by earlier tests
    assert main(["report", str(out.parent)]) == 2
    assert f"holds no results.csv but folders that do ({out.name})" in capsys.readouterr().err
    calls = []
    fake = types.SimpleNamespace(write_report=lambda f: calls.append(("report", f)) or f / "report.html",
                                 write_index=lambda f: calls.append(("index", f)) or f / "index.html")
    monkeypatch.setitem(sys.modules, "synergy_bench.html_report", fake)
    assert main(["report", str(out), "--html"]) == 0 and main(["report", str(out.parent), "--html"]) == 0
    assert calls == [("report", out), ("index", out.parent)]
    monkeypatch.setitem(sys.modules, "synergy_bench.html_report", None)  # not installed
    assert main(["report", str(out), "--html"]) == 2
    assert "--html needs synergy_bench.html_report" in capsys.readouterr().err


def test_check_subcommand_runs_the_contract_checks(tmp_path, capsys):
    assert main(["check", str(tmp_path / "absent.py"), "--device", "cpu"]) == 1
    assert "FAIL  loads: plug-in file" in capsys.readouterr().out


def test_test_set_selection_keeps_the_best_probed_epoch_and_says_so(tmp_path):
    """train.select: best_test probes the test set every eval_every epochs (and after the last),
    keeps the best epoch's weights, and records the protocol in the label and the details; a
    train grid names its varying keys in the method label."""
    spec = {"name": "sel", "generator": {"name": "latent", "n_train": 512, "n_test": 256},
            "methods": ["cross"], "controls": [], "tasks": ["R", "S"], "seeds": [0],
            "measures": [{"name": "probe", "prediction_pid": False}],
            "train": {"epochs": 3, "batch_size": 64, "eval_every": 2, "select": ["last", "best_test"]}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    df = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(df.method_label) == {"cross[train.select=last]", "cross[train.select=best_test]"}
    last = [json.loads(d) for d in df[df.method_label == "cross[train.select=last]"].details]
    assert not any("select" in d for d in last)
    best = {json.dumps({k: v for k, v in json.loads(d).items() if k in ("select", "selected_epoch", "test_scores")})
            for d in df[df.method_label == "cross[train.select=best_test]"].details}
    assert len(best) == 1  # one selection per run
    chosen = json.loads(best.pop())
    epochs, scores = zip(*chosen["test_scores"])
    assert chosen["select"] == "best_test" and epochs == (1, 2)  # every 2nd epoch and the last
    assert chosen["selected_epoch"] == epochs[int(np.argmax(scores))]

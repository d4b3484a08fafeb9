"""Nothing lost, nothing duplicated, same numbers: resume after SIGKILL, damaged folders repaired
or refused (never trusted, never overwritten), locks, failed runs, worker counts."""
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from synergy_bench import results
from synergy_bench.cli import main
from synergy_bench.methods.base import EncoderParams, Method
from synergy_bench.registry import METHODS, UserError, register_method

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--set", "generator.n_train=128", "--set", "generator.n_test=64", "--set", "train.epochs=1",
        "--set", "train.batch_size=64", "--set", "probe.Cs=[1.0]", "--set", "tasks=[R,S]", "--quiet"]
RAW = ["--set", "methods=[]", "--set", "controls=[raw]", "--set", "seeds=3", "--workers", "1", *TINY]
ROWS = 2 * 6  # tasks x metrics of a probe run


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
    while time.time() < deadline and not (done.exists() and len(done.read_text().splitlines()) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = len(done.read_text().splitlines())
    assert 3 <= killed_at < 8, "the kill should land mid-grid"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    df, per_run = _finished(out)
    assert len(per_run) == 8 and (per_run == ROWS).all()
    assert sorted(line.split()[0] for line in done.read_text().splitlines()) == sorted(per_run.index)


@pytest.fixture(scope="module")
def done_folder(tmp_path_factory):
    """A finished folder of 3 quick runs (the raw control), and its rows."""
    out = tmp_path_factory.mktemp("rel") / "done"
    assert main(["run", "--out", str(out), *RAW]) == 0
    return out, pd.read_csv(out / "results.csv")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _damage(out: Path, how: str, victim: str) -> None:
    csv, done = out / "results.csv", out / "completed.txt"
    lines = _lines(csv)
    if how == "torn_last_row":
        csv.write_text("".join(lines[:-1]) + lines[-1][:25])
    elif how == "rows_removed":
        csv.write_text("".join(ln for i, ln in enumerate(lines) if not (ln.startswith(victim) and i % 2)))
    elif how == "header_only":
        csv.write_text(lines[0])
    elif how == "garbage_row":
        csv.write_text("".join(lines[:3]) + "\x00garbage,,\n" + "".join(lines[3:]))
    elif how == "text_value":
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
        table.loc[0, "value"] = "oops"
        table.to_csv(csv, index=False)
    elif how == "extra_field":
        csv.write_text(lines[0] + lines[1].rstrip("\n") + ",extra\n" + "".join(lines[2:]))
    elif how == "permuted_columns":
        pd.read_csv(csv)[list(reversed(results.COLUMNS))].to_csv(csv, index=False)
    elif how == "torn_completed":
        text = done.read_text()
        done.write_text(text[:-10])
    elif how == "missing_csv":
        csv.unlink()


DAMAGE = {  # how -> the runs that must be recomputed (None: the first run's)
    "torn_last_row": "last", "rows_removed": "first", "header_only": "all", "garbage_row": "none",
    "text_value": "first", "extra_field": "first", "permuted_columns": "none", "torn_completed": "last",
    "missing_csv": "all",
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_table_is_repaired_and_its_runs_recomputed(done_folder, tmp_path, capsys, how):
    src, full = done_folder
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    ids = list(dict.fromkeys(full.run_id))
    _damage(out, how, ids[0])
    assert main(["run", "--out", str(out), *RAW]) == 0
    captured = capsys.readouterr()
    redo = {"last": 1, "first": 1, "all": 3, "none": 0}[DAMAGE[how]]
    assert f"3 runs ({3 - redo} already in" in captured.out, captured
    df, per_run = _finished(out)
    assert list(df.columns) == results.COLUMNS
    assert sorted(per_run.index) == sorted(ids) and (per_run == ROWS).all()
    key = ["run_id", "task", "metric"]
    pd.testing.assert_series_equal(df.sort_values(key).value.reset_index(drop=True),
                                   full.sort_values(key).value.reset_index(drop=True))  # recomputed exactly
    assert sorted(ln.split()[0] for ln in _lines(out / "completed.txt")) == sorted(ids)


@pytest.mark.parametrize("name, make", [
    ("results.csv", lambda p: p.write_bytes(b"\xff\xfe\x00binary\x00")),
    ("results.csv", lambda p: p.mkdir()),
    ("results.csv", lambda p: p.write_text("a,b,c\n1,2,3\n")),
    ("completed.txt", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n")),
    ("completed.txt", lambda p: p.mkdir()),
    ("completed.txt", lambda p: p.write_text("not an id at all\n")),
    ("meta.json", lambda p: p.write_text("{not json")),
    ("meta.json", lambda p: p.write_bytes(b"\xff\xfe")),
    ("meta.json", lambda p: p.mkdir()),
    (".lock", lambda p: p.mkdir()),
    ("spec.yaml", lambda p: p.write_text("- just\n- a list\n")),
    ("spec.yaml", lambda p: p.write_bytes(b"\x00\x01")),
    ("figures", lambda p: p.write_text("a file")),
])
def test_an_unreadable_folder_is_refused_and_nothing_is_written(done_folder, tmp_path, capsys, name, make):
    src, _ = done_folder
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    target = out / name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    make(target)
    before = {p: (p.read_bytes() if p.is_file() else None) for p in out.rglob("*")}
    assert main(["run", "--out", str(out), *RAW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err, err
    assert {p: (p.read_bytes() if p.is_file() else None) for p in out.rglob("*")} == before


@pytest.mark.parametrize("name, make, message", [
    ("results.csv", lambda p: p.write_bytes(b"\xff\xfe\x00binary\x00"), "is not UTF-8 text"),
    ("results.csv", lambda p: p.write_text("a,b,c\n1,2,3\n"), "has no synergy-bench header"),
    ("results.csv", lambda p: p.write_text("run_id,method_label,task,metric,value,seed\n"
                                           "0123456789abcdef,m,R,bits,oops,0\n"), "line 2 has value 'oops'"),
    ("results.csv", lambda p: p.write_text("run_id,method_label,task,metric,value,seed\n"
                                           "0123456789abcdef,m,R,bits,1.0,0,9\n"), "line 2 has 7 fields"),
])
def test_report_names_the_damage(tmp_path, capsys, name, make, message):
    make(tmp_path / name)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_report_reads_a_table_with_the_minimal_columns(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("run_id,method_label,task,metric,value,seed\n"
                                          "0123456789abcdef,m,R,bits,1.0,0\n1123456789abcdef,m,R,bits,0.5,1\n")
    assert main(["report", str(tmp_path)]) == 0
    assert "0.750 ± 0.250" in capsys.readouterr().out


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.write_text("x"), "is a file, or lies under one"),
    (lambda p: (p.parent / "f").write_text("x") or None, "lies under a file"),
    (lambda p: p.symlink_to(p.parent / "nowhere"), "symbolic link to nothing"),
    (lambda p: (p.mkdir(), p.chmod(0o500)), "is not writable"),
])
def test_bad_out_folders_are_refused(tmp_path, capsys, setup, message):
    out = tmp_path / "out"
    setup(out)
    target = tmp_path / "f" / "x" if message == "lies under a file" else out
    if os.geteuid() == 0 and message == "is not writable":
        pytest.skip("root writes anywhere")
    assert main(["run", "--out", str(target), *RAW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_300_character_out_name_is_refused(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / ("x" * 300)), *RAW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be made (File name too long)" in err


def test_second_writer_is_refused_and_other_spec_needs_force(tmp_path, capsys):
    store = results.ResultsStore(tmp_path, {"name": "quick"})
    try:
        assert main(["run", "--out", str(tmp_path), *TINY]) == 2
        assert "another synergy-bench process is writing" in capsys.readouterr().err
    finally:
        store.close()
    assert main(["run", "--out", str(tmp_path), "--set", "name=other", *TINY]) == 2
    assert "holds results of spec 'quick'" in capsys.readouterr().err


def test_store_upgrades_older_layouts_on_resume(tmp_path):
    """A table written before measures were plug-ins (no measure columns; completed.txt without
    row counts) resumes: its rows are kept, upgraded to the probe measure."""
    old_columns = [c for c in results.COLUMNS if not c.startswith("measure") and c not in ("commit", "details")]
    rows = [{"run_id": "0123456789abcdef", "experiment": "x", "method": "raw", "method_label": "raw",
             "trained": False, "grid_index": 0, "seed": 0, "task": t, "metric": "bits", "value": 0.5}
            for t in ("R", "S")]
    pd.DataFrame(rows, columns=old_columns).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "completed.txt").write_text("0123456789abcdef\n")
    store = results.ResultsStore(tmp_path, {"name": "x"})
    store.close()
    assert store.completed == {"0123456789abcdef": 2}
    df = results.load(tmp_path)
    assert list(df.columns) == results.COLUMNS and list(df.measure) == ["probe", "probe"]
    assert (tmp_path / "completed.txt").read_text() == "0123456789abcdef 2\n"


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


def test_a_user_error_in_a_worker_stops_the_grid_at_once(tmp_path, capsys):
    """The supervised method's class-count check fails in the first run that trains it: the pool
    stops (no further run starts), the runs finished before stay, the error is one line."""
    t0 = time.perf_counter()
    code = main(["run", "--out", str(tmp_path), "--workers", "2", "--set", "seeds=6", "--set", "controls=[raw]",
                 "--set", "methods=[{name: supervised, max_tasks: 1}]", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "max_tasks = 1" in err
    done = (tmp_path / "completed.txt").read_text().splitlines()
    assert len(done) < 12 and time.perf_counter() - t0 < 60
    assert all(r in {ln.split()[0] for ln in done} for r in pd.read_csv(tmp_path / "results.csv").run_id)


def test_same_numbers_across_worker_counts(tmp_path):
    sets = ["--set", "methods=[cross, comm]", "--set", "controls=[random]", "--set", "seeds=1", *TINY]
    assert main(["run", "--out", str(tmp_path / "w1"), "--workers", "1", *sets]) == 0
    assert main(["run", "--out", str(tmp_path / "w2"), "--workers", "2", *sets]) == 0
    a, b = (pd.read_csv(tmp_path / w / "results.csv").sort_values(["run_id", "task", "metric"])
            for w in ("w1", "w2"))
    assert list(a.run_id) == list(b.run_id)
    assert (a.value.to_numpy() == b.value.to_numpy()).all()


def test_completed_lines_are_run_ids_and_a_torn_last_one_is_dropped(tmp_path):
    p = tmp_path / "completed.txt"
    p.write_text("0123456789abcdef 3\nabc 3 4\n")
    with pytest.raises(UserError, match="line 2 is not 'RUN_ID ROWS'"):
        results.read_completed(p)
    p.write_text("0123456789abcdef 3\n0123456789ab")  # a torn last id: dropped, never glued to the next
    assert results.read_completed(p) == ({"0123456789abcdef": 3}, True)

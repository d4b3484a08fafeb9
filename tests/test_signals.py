"""Ctrl-C and SIGTERM stop a grid promptly, in a real process: no queued run starts, finished
runs are saved, running workers are ended, one line says so, the exit status is 128 + signal,
and a rerun of the same command finishes the grid with every run exactly once."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ARGS = ["--quiet", "--set", "generator.n_train=256", "--set", "generator.n_test=128", "--set", "train.epochs=2",
        "--set", "probe.Cs=[1.0]", "--set", "probe.prediction_pid=false", "--set", "methods=[cross]",
        "--set", "controls=[raw]", "--set", "seeds=5", "--set", "tasks=[R, S]"]
RUNS = 10


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # not a zombie
    except OSError:
        return False


def _interrupt(out: Path, workers: int, sig: int, to_group: bool, twice: bool = False):
    cmd = [sys.executable, "-m", "synergy_bench", "run", "--out", str(out), "--workers", str(workers), *ARGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    done = out / "completed.txt"
    deadline = time.time() + 120
    while time.time() < deadline and not (done.exists() and len(done.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    children = _children(proc.pid)
    t0 = time.time()
    for _ in range(2 if twice else 1):
        os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    return cmd, proc.returncode, time.time() - t0, err.decode(), children


@pytest.mark.parametrize("sig, to_group, resume", [
    (signal.SIGINT, True, True),     # Ctrl-C in the terminal: the whole process group
    (signal.SIGTERM, False, False),  # a scheduler ending the job: the main process only
])
def test_a_signal_stops_the_grid_and_a_rerun_finishes_it(tmp_path, sig, to_group, resume):
    out = tmp_path / "run"
    cmd, code, seconds, err, children = _interrupt(out, 2, sig, to_group)
    saved = len((out / "completed.txt").read_text().splitlines())
    assert code == 128 + sig and seconds < 15
    assert err == f"interrupted: {saved} runs saved; rerun the same command to resume\n"
    assert 2 <= saved < RUNS
    time.sleep(0.5)
    assert not [c for c in children if _running(c)], "a worker outlived the interrupted run"
    df = pd.read_csv(out / "results.csv")
    assert df.run_id.nunique() == saved  # nothing of an unfinished run is kept
    if resume:  # (once is enough: the rerun does not depend on the signal)
        rerun = subprocess.run(cmd, capture_output=True, text=True)
        assert rerun.returncode == 0 and f"{RUNS} runs ({saved} already in" in rerun.stdout
        per_run = pd.read_csv(out / "results.csv").groupby("run_id").size()
        assert len(per_run) == RUNS and (per_run == 2 * 2).all()


@pytest.mark.slow
@pytest.mark.parametrize("sig, to_group, workers, twice", [
    (signal.SIGINT, True, 2, True),     # a second Ctrl-C while the first is handled
    (signal.SIGINT, False, 1, False),   # runs in the main process
])
def test_more_interruptions(tmp_path, sig, to_group, workers, twice):
    out = tmp_path / "run"
    _, code, seconds, err, children = _interrupt(out, workers, sig, to_group, twice)
    saved = len((out / "completed.txt").read_text().splitlines())
    assert code == 130 and seconds < 15 and "Traceback" not in err
    assert err == f"interrupted: {saved} runs saved; rerun the same command to resume\n"
    time.sleep(0.5)
    assert not [c for c in children if _running(c)]

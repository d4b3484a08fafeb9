"""The one results store: a tidy ``results.csv`` appended per finished run, safely.

Layout of a results folder::

    results.csv     tidy rows: one per run x task x metric
    completed.txt   run ids whose rows are all in results.csv (written after the rows)
    failures.jsonl  runs that raised or diverged, with their error
    spec.yaml       the resolved spec; meta.json: versions, code commit, device, command
    figures/        built from results.csv alone

A run's rows are appended with one ``write`` on an ``O_APPEND`` descriptor and fsynced before its
id goes into ``completed.txt``. On opening, rows of runs not recorded complete (a run killed
mid-write) and a torn last line are dropped, so a rerun resumes and never duplicates a row.
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from synergy_bench.registry import UserError

COLUMNS = ["run_id", "experiment", "generator", "generator_label", "generator_params", "method",
           "method_label", "method_params", "trained", "grid_index", "seed", "task", "metric", "value", "chance",
           "truth_bits", "truth_redundancy", "truth_unique1", "truth_unique2", "truth_synergy",
           "train_seconds", "final_loss", "device", "version",
           # rows of estimator validations (synergy_bench.pid.validate); empty for runs
           "samples", "truth", "abs_error", "needed"]


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultsStore:
    """Append-only, resumable store in ``out_dir`` for the runs of one experiment.

    Holds an exclusive lock on the folder while open: a second process writing to the same folder
    is refused with a clear message.
    """

    def __init__(self, out_dir: str | Path, spec: dict[str, Any], force: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"another synergy-bench process is writing to {self.dir}; wait for it "
                            f"to finish or choose another --out") from None
        self.csv, self.done_file = self.dir / "results.csv", self.dir / "completed.txt"
        old = self.dir / "spec.yaml"
        if old.exists() and not force:
            previous = (yaml.safe_load(old.read_text()) or {}).get("name")
            if previous != spec["name"]:
                self.close()
                raise UserError(f"{self.dir} holds results of spec {previous!r}, not {spec['name']!r}; "
                                f"choose another --out or pass --force")
        _atomic_write(old, yaml.safe_dump(spec, sort_keys=False))
        self.completed = self._recover()

    def _recover(self) -> set[str]:
        done = set(self.done_file.read_text().split()) if self.done_file.exists() else set()
        if not self.csv.exists():
            _atomic_write(self.csv, ",".join(COLUMNS) + "\n")
            return done
        text = self.csv.read_text()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]  # torn last line
        header, body = lines[:1] or [",".join(COLUMNS) + "\n"], lines[1:]
        kept = [ln for ln in body if ln.split(",", 1)[0] in done]
        if header[0].rstrip("\n") != ",".join(COLUMNS):     # written before columns were added
            buf = io.StringIO()
            writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(csv.DictReader(io.StringIO("".join(header + kept))))
            _atomic_write(self.csv, buf.getvalue())
        elif len(kept) != len(body) or "".join(header + kept) != text:
            _atomic_write(self.csv, "".join(header + kept))
        return done

    def add(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Append a finished run's rows, then mark it complete."""
        buf = io.StringIO()
        csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n").writerows(rows)
        _append(self.csv, buf.getvalue())
        _append(self.done_file, run_id + "\n")
        self.completed.add(run_id)

    def write_meta(self, **fields: Any) -> None:
        """Record ``fields`` (device, command) beside the results (``meta.json``), with the package
        and torch versions and the commit of the code that runs (:func:`code_commit`)."""
        import torch

        from synergy_bench import __version__

        meta = {"version": __version__, "torch": torch.__version__, "commit": code_commit(), **fields}
        _atomic_write(self.dir / "meta.json", json.dumps(meta, indent=2) + "\n")

    def fail(self, run_id: str, label: str, error: str) -> None:
        _append(self.dir / "failures.jsonl", json.dumps({"run_id": run_id, "run": label, "error": error}) + "\n")

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()


def code_commit() -> str | None:
    """The git commit of this package's code when it runs from a git checkout (an editable
    install), with ``+dirty`` when its tracked code differs from that commit; None otherwise."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=30)

    try:
        if git("ls-files", "--error-unmatch", Path(__file__).name).returncode:
            return None  # not a tracked checkout of this package
        head = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", "../generators").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


def load(out_dir: str | Path) -> pd.DataFrame:
    """Read a results folder's ``results.csv`` (a UserError if missing or damaged)."""
    path = Path(out_dir)
    path = path / "results.csv" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"no results.csv at {path}; run `synergy-bench run` with --out {out_dir} first")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is damaged ({str(err).splitlines()[0]}); delete it and rerun") from None
    missing = {"method_label", "task", "metric", "value", "seed"} - set(df.columns)
    if missing:
        raise UserError(f"{path} is not a synergy-bench results table (missing {sorted(missing)})")
    return df


def summary(df: pd.DataFrame, metric: str = "balanced_accuracy") -> pd.DataFrame:
    """Mean and std over seeds of ``metric``: rows = methods (in grid order), columns = tasks."""
    sub = df[df.metric == metric]
    order = list(sub.groupby("method_label").grid_index.min().sort_values().index)
    tasks = list(dict.fromkeys(sub.task))
    g = sub.groupby(["method_label", "task"]).value
    mean = g.mean().unstack()[tasks].reindex(order)
    std = g.std(ddof=1).unstack()[tasks].reindex(order).fillna(0.0)
    return pd.concat({"mean": mean, "std": std}, axis=1)


def format_table(df: pd.DataFrame) -> str:
    """Plain-text table: balanced accuracy and certified bits per method and task (mean ± std)."""
    lines = []
    for gen_label, part in df.groupby("generator_label", sort=False):
        acc, bits = summary(part, "balanced_accuracy"), summary(part, "bits")
        tasks = list(acc["mean"].columns)
        truth = part.drop_duplicates("task").set_index("task").truth_bits
        width = max(len(m) for m in acc.index) + 2
        lines.append(f"{gen_label}: balanced accuracy (chance in brackets) | certified bits, mean ± std "
                     f"over {part.seed.nunique()} seed(s)")
        chance = part.drop_duplicates("task").set_index("task").chance
        head = "".join(f"{t + f' ({chance[t]:.2f})':>16}" for t in tasks)
        lines.append(f"{'method':<{width}}{head}   |" + "".join(f"{t:>13}" for t in tasks))
        for m in acc.index:
            a = "".join(f"{acc['mean'].at[m, t]:>10.3f}±{acc['std'].at[m, t]:<5.3f}" for t in tasks)
            b = "".join(f"{bits['mean'].at[m, t]:>8.3f}±{bits['std'].at[m, t]:<4.2f}" for t in tasks)
            lines.append(f"{m:<{width}}{a}   |{b}")
        lines.append(f"{'truth (bits)':<{width}}{'':>{16 * len(tasks)}}   |"
                     + "".join(f"{truth[t]:>13.3f}" for t in tasks))
    return "\n".join(lines)

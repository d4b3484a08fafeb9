"""The one results store: a tidy ``results.csv`` appended per finished run, checked on every open.

Layout of a results folder::

    results.csv     tidy rows: one per run x measure x task x metric (columns: COLUMNS)
    completed.txt   one line per finished run: its id and its number of rows (after the rows)
    failures.jsonl  runs that raised or diverged, with their error
    spec.yaml       the resolved spec
    meta.json       provenance of the last invocation, and ``history``: one entry per invocation
    figures/        built from results.csv alone

A run's rows are appended with one ``write`` on an ``O_APPEND`` descriptor and fsynced before its
line goes into ``completed.txt``. Opening a folder checks ``results.csv`` against
``completed.txt``: a run whose rows are missing, torn or damaged is recomputed, rows of runs not
recorded complete are dropped, and a torn last line of either file is dropped. A file that
cannot be read at all (not text, an unknown header, a folder in its place) is a one-line
:class:`~synergy_bench.registry.UserError` naming it, and nothing in the folder is written.

Columns mean the same for every measure: ``run_id`` the run, ``trained`` whether the method was
trained, ``measure``/``measure_label`` what was computed, ``value`` its value for ``task`` and
``metric``, ``truth_*`` the task's exact PID (bits; NaN where not exact), ``train_seconds`` the
training time, ``measure_seconds`` the time of the measure on the task, ``details`` the measure's
diagnostics (JSON), ``commit`` the code's commit (``+dirty`` where the tree differed).
"""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from synergy_bench.registry import UserError

COLUMNS = ["run_id", "experiment", "commit", "generator", "generator_label", "generator_params",
           "method", "method_label", "method_params", "trained", "measure", "measure_label",
           "measure_params", "grid_index", "seed", "task", "metric", "value", "chance", "truth_bits",
           "truth_redundancy", "truth_unique1", "truth_unique2", "truth_synergy", "train_seconds",
           "measure_seconds", "final_loss", "details", "device", "version"]
#: columns of the layouts written before measures were plug-ins (read and upgraded, never written)
OLD_COLUMNS = ("samples", "truth", "abs_error", "needed")
#: columns that hold text (never read as numbers; empty where a layout lacks them)
TEXT = ("run_id", "experiment", "commit", "generator", "generator_label", "generator_params", "method",
        "method_label", "method_params", "trained", "measure", "measure_label", "measure_params", "task",
        "metric", "details", "device", "version")
REQUIRED = ("run_id", "method_label", "task", "metric", "value", "seed")
_RUN_ID = re.compile(r"[0-9a-f]{16}")


def _append(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _damaged(path: Path, what: str, fix: str | None = None) -> UserError:
    fix = fix or f"move {path.name} out of {path.parent} (or choose another --out) and rerun"
    return UserError(f"{path} {what}; {fix}")


def _text(path: Path) -> str | None:
    """A file's text (None if absent); a UserError if it is not a readable UTF-8 text file."""
    if not os.path.lexists(path):
        return None
    if not path.is_file():
        raise _damaged(path, "is not a file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "is not UTF-8 text") from None
    except OSError as err:
        raise _damaged(path, f"cannot be read ({err.strerror})") from None


# ---------------------------------------------------------------------------- completed.txt
def read_completed(path: Path) -> tuple[dict[str, int | None], bool]:
    """Run id -> its number of rows (None where an older folder recorded only the id), and
    whether the file ended in a torn line (dropped)."""
    text = _text(path)
    if text is None:
        return {}, False
    lines = text.split("\n")
    torn = lines[-1] != ""
    done: dict[str, int | None] = {}
    for number, line in enumerate(lines[:-1], 1):
        parts = line.split()
        if not parts:
            continue
        count = parts[1] if len(parts) == 2 else None
        if len(parts) > 2 or not _RUN_ID.fullmatch(parts[0]) or count is not None and not count.isdigit():
            raise _damaged(path, f"line {number} is not 'RUN_ID ROWS' ({line[:40]!r})",
                           "delete that line (its run is recomputed) and rerun")
        done[parts[0]] = int(count) if count is not None else None
    return done, torn


# ---------------------------------------------------------------------------- results.csv
def _upgrade(row: dict[str, str]) -> dict[str, str]:
    """A row of an older layout in today's columns. Rows without a measure are probe rows; rows
    of the former estimator validation (``samples`` set) become rows of the ``pid_<estimator>``
    measure on the observations (no method), with the sample size as the generator's ``n_train``
    and the estimator's needs as details."""
    if row.get("measure"):
        return row
    if not row.get("samples"):
        return {**row, "measure": "probe", "measure_label": "probe", "measure_params": "{}"}
    params = json.loads(row.get("generator_params") or "{}")
    params["n_train"] = int(float(row["samples"]))
    return {**row, "measure": f"pid_{row['method']}", "measure_label": f"pid_{row['method_label']}",
            "measure_params": row.get("method_params") or "{}", "method": "", "method_label": "",
            "method_params": "{}", "trained": "False", "measure_seconds": row.get("train_seconds", ""),
            "train_seconds": "", "generator_params": json.dumps(params, sort_keys=True),
            "generator_label": _with_size(row.get("generator_label", ""), params["n_train"]),
            "details": row.get("needed") or ""}


def _with_size(label: str, n: int) -> str:
    item = f"n_train={n}"
    return f"{label[:-1]},{item}]" if label.endswith("]") else f"{label}[{item}]"


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_rows(path: Path, text: str) -> tuple[list[str], list[tuple[int, list[str]]], bool]:
    """Header, (line number, fields) of each row, and whether a torn last line was dropped.

    A UserError where the header is not a synergy-bench header."""
    torn = bool(text) and not text.endswith("\n")
    lines = text.split("\n")[:-1]  # the empty string after the last newline, or a torn line
    if not lines:
        return [], [], torn
    try:
        header = next(csv.reader([lines[0]]))
    except csv.Error:
        header = []
    known = set(COLUMNS) | set(OLD_COLUMNS)
    if not set(REQUIRED) <= set(header) or not set(header) <= known or len(set(header)) != len(header):
        raise _damaged(path, f"has no synergy-bench header (it starts {lines[0][:60]!r})")
    rows = []
    for number, fields in enumerate(csv.reader(lines[1:]), 2):
        rows.append((number, fields))
    return header, rows, torn


def _row_problem(header: list[str], fields: list[str]) -> str | None:
    if len(fields) != len(header):
        return f"has {len(fields)} fields, the header {len(header)}"
    row = dict(zip(header, fields))
    if not _RUN_ID.fullmatch(row["run_id"]):
        return f"has run_id {row['run_id'][:30]!r}"
    for col in ("value", "seed"):
        if row[col] and not _number(row[col]):
            return f"has {col} {row[col][:30]!r}, not a number"
    return None


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def load(out_dir: str | Path) -> pd.DataFrame:
    """Read a results folder's table (or a ``results.csv`` path) in today's columns.

    Rows of runs not recorded in ``completed.txt`` (where it exists) and a torn last line are
    left out; rows of older layouts are upgraded. A UserError, naming the file, the line and the
    fix, where the table is missing or damaged.
    """
    path = Path(out_dir)
    path = path / "results.csv" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"no results.csv at {path}; run `synergy-bench run SPEC --out {out_dir}` first")
    header, rows, _ = parse_rows(path, _text(path) or "")
    try:
        done, _ = read_completed(path.parent / "completed.txt")
    except UserError:
        done = {}
    out = []
    for number, fields in rows:
        problem = _row_problem(header, fields)
        if problem:
            raise _damaged(path, f"line {number} {problem}",
                           "rerun the command that made it (the damaged run is recomputed) or delete that line")
        row = dict(zip(header, fields))
        if not done or row["run_id"] in done:
            out.append(_upgrade(row))
    df = pd.read_csv(io.StringIO(_csv_text(out)), keep_default_na=True, dtype={c: str for c in TEXT})
    for col in TEXT:
        df[col] = df[col].fillna("")
    df["trained"] = df["trained"].str.lower().eq("true")
    df["grid_index"] = df["grid_index"].fillna(0)
    return df


# ---------------------------------------------------------------------------- the store
class ResultsStore:
    """Append-only, resumable store in ``out_dir`` for the runs of one experiment.

    Holds an exclusive lock on the folder while open (a second process writing to the same folder
    is refused). Everything in the folder is read and checked before anything is written.

    Parameters
    ----------
    out_dir : path
        The folder (made if absent).
    spec : dict
        The resolved spec, written to ``spec.yaml``.
    force : bool
        Write into a folder holding another spec's results.
    provenance : dict, optional
        This invocation's provenance (:func:`synergy_bench.provenance.record`): appended to the
        history in ``meta.json``; its commit is stored in every row added.

    Attributes
    ----------
    completed : dict
        Run id -> number of rows, of the runs complete in the folder.
    notes : list of str
        One line per repair made on opening (runs to recompute, torn lines dropped).
    """

    def __init__(self, out_dir: str | Path, spec: dict[str, Any], force: bool = False,
                 provenance: dict[str, Any] | None = None):
        self.dir = Path(out_dir)
        self.notes: list[str] = []
        make_folder(self.dir)
        try:
            self._lock = open(self.dir / ".lock", "w")
        except OSError as err:
            raise _damaged(self.dir / ".lock", f"cannot be opened ({err.strerror})") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"another synergy-bench process is writing to {self.dir}; wait for it "
                            f"to finish or choose another --out") from None
        try:
            self._open(spec, force, provenance)
        except BaseException:
            self.close()
            raise

    def _open(self, spec: dict[str, Any], force: bool, provenance: dict[str, Any] | None) -> None:
        self.csv, self.done_file = self.dir / "results.csv", self.dir / "completed.txt"
        old = _text(self.dir / "spec.yaml")
        if old is not None:
            try:
                previous = yaml.safe_load(old)
            except yaml.YAMLError:
                previous = None
            if not isinstance(previous, dict) or not isinstance(previous.get("name"), str):
                raise _damaged(self.dir / "spec.yaml", "is not a resolved spec")
            if previous["name"] != spec["name"] and not force:
                raise UserError(f"{self.dir} holds results of spec {previous['name']!r}, not {spec['name']!r}; "
                                f"choose another --out or pass --force")
        meta = read_meta(self.dir)
        figures = self.dir / "figures"
        if os.path.lexists(figures) and not figures.is_dir():
            raise _damaged(figures, "is not a folder")
        for name in ("failures.jsonl",):
            if os.path.lexists(self.dir / name) and not (self.dir / name).is_file():
                raise _damaged(self.dir / name, "is not a file")
        rows, done = self._recover()
        # everything is readable: now write
        if rows is not None:
            _atomic_write(self.csv, _csv_text(rows))
            _atomic_write(self.done_file, "".join(f"{r} {n}\n" for r, n in done.items()))
        _atomic_write(self.dir / "spec.yaml", yaml.safe_dump(spec, sort_keys=False))
        self.commit = None
        if provenance is not None:
            from synergy_bench.provenance import commit_label

            history = meta.pop("history", None)
            history = history if isinstance(history, list) else ([meta] if meta else [])
            _atomic_write(self.dir / "meta.json",
                          json.dumps({**provenance, "history": [*history, provenance]}, indent=2) + "\n")
            self.commit = commit_label(provenance.get("commit"), provenance.get("dirty", False))
        self.completed = done

    def _recover(self) -> tuple[list[dict[str, str]] | None, dict[str, int | None]]:
        """Check results.csv against completed.txt. The rows and completion lines to write back
        (None where both files are already as they should be), and the complete runs."""
        done, torn_done = read_completed(self.done_file)
        text = _text(self.csv)
        if text is None:
            if done:
                self.notes.append(f"{self.csv} is missing: the {len(done)} run(s) recorded complete are recomputed")
            return [], {}
        header, parsed, torn = parse_rows(self.csv, text)
        if not header:
            if done:
                self.notes.append(f"{self.csv} is empty: the {len(done)} run(s) recorded complete are recomputed")
            return [], {}
        by_run: dict[str, list[dict[str, str]]] = {}
        damaged: set[str] = set()
        for _, fields in parsed:
            problem = _row_problem(header, fields)
            run_id = fields[0] if fields else ""
            if problem:
                damaged.add(run_id)
            else:
                by_run.setdefault(dict(zip(header, fields))["run_id"], []).append(dict(zip(header, fields)))
        kept: dict[str, int | None] = {}
        redo = []
        for run_id, count in done.items():
            rows = by_run.get(run_id, [])
            if run_id in damaged or not rows or count is not None and len(rows) != count:
                redo.append(run_id)
            else:
                kept[run_id] = len(rows)
        if redo:
            self.notes.append(f"{self.csv}: {len(redo)} run(s) recorded complete have missing or damaged "
                              "rows; they are recomputed")
        if torn:
            self.notes.append(f"{self.csv}: a torn last line (a run stopped while writing) is dropped")
        rows = [_upgrade(r) for run_id in kept for r in by_run[run_id]]
        unchanged = (not redo and not torn and not torn_done and header == COLUMNS
                     and len(parsed) == len(rows) and all(n is not None for n in done.values()))
        return (None if unchanged else rows), kept

    def add(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Append a finished run's rows (with this invocation's commit), then mark it complete."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writerows({**r, "commit": self.commit or r.get("commit", "")} for r in rows)
        _append(self.csv, buf.getvalue())
        _append(self.done_file, f"{run_id} {len(rows)}\n")
        self.completed[run_id] = len(rows)

    def fail(self, run_id: str, label: str, error: str) -> None:
        _append(self.dir / "failures.jsonl", json.dumps({"run_id": run_id, "run": label, "error": error}) + "\n")

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_folder(path: Path) -> None:
    """Make a results folder (and its parents), or a one-line UserError saying why it cannot be."""
    if os.path.lexists(path) and not path.exists():
        raise UserError(f"--out {path} is a symbolic link to nothing; remove it or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--out {path} is a file, or lies under one; choose a folder") from None
    except NotADirectoryError:
        raise UserError(f"--out {path} lies under a file; choose a folder") from None
    except OSError as err:
        raise UserError(f"--out {path} cannot be made ({err.strerror}); choose another folder") from None
    if not path.is_dir():
        raise UserError(f"--out {path} is not a folder; choose a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"--out {path} is not writable; choose another folder")


def read_meta(folder: Path) -> dict[str, Any]:
    """A folder's ``meta.json`` as a dict ({} where absent); a UserError where it is damaged."""
    text = _text(folder / "meta.json")
    if text is None:
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise _damaged(folder / "meta.json", "is not a JSON object of provenance")
    return meta


def commits(df: pd.DataFrame, folder: Path) -> list[str]:
    """The code versions the rows of ``df`` come from: the ``commit`` column (``unknown`` for rows
    written before rows named it), or, for folders where no row names one, the commits in
    ``meta.json``."""
    column = list(dict.fromkeys(df.get("commit", pd.Series(dtype=str))))
    if any(column):  # rows written before rows named their commit count as one unknown version
        return [c or "unknown" for c in column]
    try:
        meta = read_meta(folder)
    except UserError:
        return []
    entries = meta.get("history") if isinstance(meta.get("history"), list) else [meta]
    out = []
    for e in entries:
        if isinstance(e, dict) and e.get("commit"):
            label = str(e["commit"])
            out.append(label if label.endswith("+dirty") or not e.get("dirty") else label + "+dirty")
    return list(dict.fromkeys(out))

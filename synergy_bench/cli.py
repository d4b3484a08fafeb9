"""synergy-bench: how much of the synergy between two modalities does a method capture?

Generators make multimodal data whose redundant, unique and synergistic information is known
exactly; methods learn representations of it; measures (linear and MLP probes, the PID of the
probes' predictions, sample PID estimators) say how much of each task a representation holds.
A spec (YAML) names the grid: generator points x methods x measures x seeds. `run` runs it into
a results folder (resumable), `report` prints and exports its tables, `compare` pairs two folders.

examples:
  synergy-bench list                                   what can be run (generators, methods, measures, specs)
  synergy-bench run                                    the quick spec: every method on the latent generator
  synergy-bench run quick --set train.epochs=5 --set "seeds=[0,1]"
  synergy-bench run quick --set "generator.k=[2,4]"    a list expands into a grid
  synergy-bench run trifeature_s --set profile=paper --dry-run
  synergy-bench run estimators                         the PID estimators against exact truth
  synergy-bench report results/quick --format markdown --out table.md
  synergy-bench compare results/quick results/quick-new
  synergy-bench pid latent --set k=4                   the exact PID of a generator's tasks
  synergy-bench check my_method.py                     the contract checks of a plug-in

exit status:
  0    success
  1    some runs failed (their errors are in DIR/failures.jsonl), or a plug-in check failed
  2    a mistake in the command, the spec or a results folder (one line says which and how to fix it)
  130  interrupted by Ctrl-C (143: by SIGTERM); finished runs are saved, rerun the same command to resume
  141  the output pipe closed early (e.g. `synergy-bench list | head`)
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from synergy_bench import __version__
from synergy_bench.registry import (
    GENERATORS,
    MEASURES,
    METHODS,
    UserError,
    get_generator,
    load_plugin,
    load_plugins,
    make_params,
    param_fields,
)

SET_HELP = ("override a key (repeat the flag for several): dotted keys reach into mappings "
            "(train.epochs=5, generator.k=4, probe.Cs=[1.0]); the value is YAML; a list where one "
            "value is expected expands into a grid (generator.k=[2,4])")
PLUGIN_HELP = "load a plug-in first: a .py file or a module (repeatable)"
FORMATS = ("text", "markdown", "latex", "csv")
ATOMS = ("redundancy", "unique1", "unique2", "synergy")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one-line UserErrors (exit 2, no usage dump)."""

    def error(self, message: str):
        raise UserError(f"{message}; see `{self.prog} --help`")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; a default shown where there is one and the help does not say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not any(action.default is v for v in (None, False, argparse.SUPPRESS)) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _load_plugins(refs: list[str] | None) -> None:
    load_plugins()
    for ref in refs or []:
        load_plugin(ref)


def _kv(sets: list[str] | None) -> dict:
    """--set k=v pairs (YAML values) for a generator's parameters."""
    from synergy_bench.spec import apply_overrides

    return apply_overrides({}, sets or [])


def _generator_params(name: str, sets: list[str] | None):
    """The class of generator ``name`` and its parameters from ``--set`` pairs, checked as in a spec."""
    from synergy_bench.spec import check_fields

    cls, values = get_generator(name), _kv(sets)
    check_fields(cls, values, f"generator[{name}]")
    return cls, make_params(cls, values, f"generator[{name}]")


def _generator(name: str, sets: list[str] | None, seed: int):
    cls, params = _generator_params(name, sets)
    return cls(params, seed)


def _seed(value: int, flag: str = "--seed") -> int:
    if value < 0 or value >= 2 ** 63:
        raise UserError(f"{flag} {value} must be an integer in 0 .. 2**63 - 1")
    return value


# ---------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    from synergy_bench.spec import packaged_specs

    _load_plugins(args.plugin)
    for title, table in (("generators", GENERATORS), ("methods", METHODS), ("measures", MEASURES)):
        print(f"{title}:")
        for name, cls in sorted(table.items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            extra = ""
            if table is GENERATORS:
                extra = f"  tasks: {', '.join(cls(cls.Params(), 0).tasks)}"
            elif table is METHODS and not cls.trainable:
                extra = "  (control: probed untrained)"
            elif table is MEASURES:
                extra = f"  (reads the {cls.reads})"
            print(f"  {name:<12} {doc}{extra}")
            for field, default, help_ in param_fields(cls):
                print(f"      {field:<16} = {default!r:<12} {help_}")
    print("experiment specs:")
    for name, path in sorted(packaged_specs().items()):
        print(f"  {name:<20} {path}")
    return 0


# ---------------------------------------------------------------------------- run
def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    import yaml
    from tqdm import tqdm

    from synergy_bench import results
    from synergy_bench.provenance import record
    from synergy_bench.runner import (
        Interrupted,
        get_executor,
        plugin_sources,
        resolve_device,
        signals_held,
        stop_on_signals,
    )
    from synergy_bench.spec import expand, load, resolve
    from synergy_bench.train import check_amp

    _load_plugins(args.plugin)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be >= 1")
    raw = load(args.spec if args.spec is not None else args.default_spec, args.set)
    if args.device is not None:
        raw["device"] = args.device
    notes: list[str] = []
    spec = resolve(raw, notes, here=not args.dry_run)
    runs = expand(spec)
    if args.dry_run:
        print(yaml.safe_dump(spec, sort_keys=False), end="")
        print(f"# {len(runs)} runs")
        for n in notes:
            _note(n)
        return 0
    executor = get_executor(args.executor, args.address)
    if args.executor == "local":  # on Ray, devices are placed per task
        device = resolve_device(spec["device"])
        for tp in {json.dumps(r.train, sort_keys=True): r.train for r in runs}.values():
            check_amp(device, tp["amp"])
    else:
        device = spec["device"]
    for n in notes:
        _note(n)
    out = Path(args.out or Path("results") / (spec["name"] + (f"-{spec['profile']}" if spec["profile"] else "")))
    store = results.ResultsStore(out, spec, force=args.force, provenance=record(_command(args), device=device))
    for n in store.notes:
        _note(n)
    others = len(set(store.completed) - {r.run_id for r in runs})
    if others:
        _note(f"{out} also holds {others} run(s) outside this grid (another grid, or code that numbered runs "
              "differently); `report` shows them too: use a fresh --out for this grid alone")
    failed = 0
    todo = [r for r in runs if r.run_id not in store.completed]
    print(f"{spec['name']}: {len(runs)} runs ({len(runs) - len(todo)} already in {out}), device {device}",
          flush=True)
    bar = tqdm(total=len(todo), unit="run", file=sys.stderr, disable=args.quiet)
    try:
        with stop_on_signals():
            workers = args.workers or os.cpu_count() or 1
            for run, rows, error in executor(todo, workers, plugins=plugin_sources(spec["plugins"])):
                with signals_held():
                    if error is None:
                        store.add(run.run_id, rows)
                    else:
                        failed += 1
                        store.fail(run.run_id, _describe(run), error)
                if error is not None:
                    tqdm.write(f"run failed: {_describe(run)}: {error.splitlines()[0]}", file=sys.stderr)
                bar.update(1)
    except Interrupted as stop:
        bar.close()
        saved = sum(r.run_id in store.completed for r in runs)
        print(f"interrupted: {saved} runs saved; rerun the same command to resume", file=sys.stderr)
        return 128 + stop.signum
    finally:
        bar.close()
        store.close()
    df = results.load(out)
    df = df[df.run_id.isin({r.run_id for r in runs})]
    if len(df):
        print(report_text(df, "text"))
        for p in write_figures(df, out / "figures"):
            print(f"wrote {p}")
    if failed:
        print(f"{failed} run(s) failed; errors in {out / 'failures.jsonl'}", file=sys.stderr)
        return 1
    return 0


def _describe(run) -> str:
    what = run.method_label or "+".join(name for name, _ in run.measures)
    return f"{what} on {run.generator_label} seed {run.seed}"


# ---------------------------------------------------------------------------- report, compare
def _measure_groups(df):
    """(measure class, its rows) per report group: measures that share a table function are
    reported together; a measure not registered here gets the generic tables."""
    import pandas as pd

    from synergy_bench.measures.base import Measure, report_group

    load_plugins()
    groups: dict = {}
    for name, part in df.groupby("measure", sort=False):
        cls = MEASURES.get(name, Measure)
        groups.setdefault(report_group(cls), (cls, []))[1].append(part)
    return [(cls, pd.concat(parts)) for cls, parts in groups.values()]


def report_text(df, fmt: str) -> str:
    """A results table's tables in ``fmt`` (text, markdown, latex) or its cell summary (csv)."""
    from synergy_bench import tables

    if fmt == "csv":
        return tables.summary(df).to_csv(index=False).rstrip("\n")
    return tables.render([t for cls, part in _measure_groups(df) for t in cls.tables(part)], fmt)


def write_figures(df, fig_dir: Path) -> list[Path]:
    """Every measure's figures of a results table, into ``fig_dir``."""
    return [p for cls, part in _measure_groups(df) for p in cls.figures(part, fig_dir)]


def _write(text: str, out: str | None) -> None:
    if out is None:
        print(text)
        return
    path = Path(out)
    if path.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path, e.g. {path / 'table.md'}")
    from synergy_bench.results import make_folder

    make_folder(path.parent)
    try:
        path.write_text(text + "\n")
    except OSError as err:
        raise UserError(f"--out {out} cannot be written ({err.strerror}); choose another path") from None
    print(f"wrote {path}", file=sys.stderr)


def _html(folder: Path) -> int:
    try:
        from synergy_bench import html_report
    except ImportError:
        raise UserError("--html needs synergy_bench.html_report, which this installation lacks") from None
    if (folder / "results.csv").exists():
        path = html_report.write_report(folder)
    else:
        path = html_report.write_index(folder)
    print(f"wrote {path}")
    return 0


def _result_folder(folder: Path) -> None:
    if folder.is_dir() and not (folder / "results.csv").exists():
        inner = sorted(p.name for p in folder.iterdir() if (p / "results.csv").exists())
        if inner:
            raise UserError(f"{folder} holds no results.csv but folders that do ({', '.join(inner)}); give one "
                            "of them, or add --html for an index of all")


def cmd_report(args: argparse.Namespace) -> int:
    from synergy_bench import results

    folder = Path(args.dir)
    _load_plugins(args.plugin)
    if args.html:
        return _html(folder)
    _result_folder(folder)
    df = results.load(folder)
    if df.empty:
        raise UserError(f"{folder} holds no finished run yet; run its spec first")
    _warn_commits(df, folder)
    _write(report_text(df, args.format), args.out)
    if args.figures:
        for p in write_figures(df, folder / "figures"):
            print(f"wrote {p}", file=sys.stderr)
    return 0


def _warn_commits(df, folder: Path) -> None:
    from synergy_bench.results import commits

    found = commits(df, folder)
    if len(found) > 1:
        shown = ", ".join(c[:12] + ("+dirty" if c.endswith("+dirty") else "") for c in found)
        print(f"warning: {folder} holds runs from {len(found)} code versions ({shown}); rerun it on one "
              "commit for numbers from one version", file=sys.stderr)


def cmd_compare(args: argparse.Namespace) -> int:
    from synergy_bench import results, tables

    _load_plugins(args.plugin)
    if (args.dir_b is None) == (args.methods is None):
        raise UserError("give two folders (compare DIR_A DIR_B) or one folder and two methods "
                        "(compare DIR --methods A B)")
    if args.methods:
        df = results.load(Path(args.dir_a))
        found = set(df.method_label.fillna(""))
        for m in args.methods:
            if m not in found:
                raise UserError(f"--methods {m!r} is not a method of {args.dir_a}; choose from "
                                f"{sorted(x for x in found if x)}")
        a, b = (df[df.method_label == m].assign(method_label=f"{args.methods[1]} - {args.methods[0]}")
                for m in args.methods)
        name_a, name_b = args.methods
    else:
        a, b = (results.load(Path(d)) for d in (args.dir_a, args.dir_b))
        name_a, name_b = args.dir_a, args.dir_b
    if args.metric:
        a, b = a[a.metric.isin(args.metric)], b[b.metric.isin(args.metric)]
    frame, only_a, only_b = tables.compare(a, b)
    if frame.empty:
        raise UserError(f"{name_a} and {name_b} share no cell (generator point, method, measure, task, "
                        "metric and seed); nothing to compare")
    if args.format == "csv":
        text = frame.to_csv(index=False).rstrip("\n")
    else:
        text = tables.render([tables.compare_table(frame, name_a, name_b)], args.format)
    _write(text, args.out)
    if only_a or only_b:
        print(f"not compared: {only_a} value(s) only in {name_a}, {only_b} only in {name_b}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from synergy_bench.data import physical_memory, sample_bytes
    from synergy_bench.results import make_folder
    from synergy_bench.spec import format_bytes

    _load_plugins(args.plugin)
    seed = _seed(args.seed)
    out = Path(args.out if args.out.endswith(".npz") else args.out + ".npz")
    if out.is_dir():
        raise UserError(f"--out {args.out} is a folder; give a file path such as {out / 'data.npz'}")
    cls, params = _generator_params(args.name, args.set)
    need, memory = sample_bytes(cls, vars(params)), physical_memory()
    if memory and need > memory:
        raise UserError(f"generator {args.name} with these sizes needs about {format_bytes(need)} for its samples, "
                        f"more than this machine's {format_bytes(memory)}; lower n_train or n_test")
    make_folder(out.parent)
    gen = cls(params, seed)
    rng = np.random.default_rng(seed)
    arrays, meta = {}, {"generator": args.name, "params": vars(gen.params), "seed": seed,
                        "version": __version__,
                        "ground_truth": {t: (v.as_dict() if v else None) for t, v in gen.ground_truth().items()}}
    for split in ("train", "test"):
        s = gen.sample(split, rng)
        arrays.update({f"{split}/x{i + 1}": x for i, x in enumerate(s["x"])})
        arrays.update({f"{split}/y_{t}": y for t, y in s["y"].items()})
        arrays.update({f"{split}/z_{f}": z for f, z in s["z"].items()})
    tmp = out.with_name(out.name + ".tmp.npz")
    try:
        np.savez_compressed(tmp, meta=json.dumps(meta), **arrays)
        os.replace(tmp, out)
    except OSError as err:
        raise UserError(f"--out {args.out} cannot be written ({err.strerror}); choose another path") from None
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


# ---------------------------------------------------------------------------- pid
def _pid_row(label: str, source: str, pid) -> str:
    return f"{label:<6}{source:<9}" + "".join(f"{getattr(pid, a):>12.6f}" for a in ATOMS) + f"{pid.total:>12.6f}"


def _pid_header() -> str:
    return f"{'task':<6}{'source':<9}" + "".join(f"{a:>12}" for a in ATOMS) + f"{'total':>12}"


def _needed(est) -> str:
    """What an estimate needed, in a few words."""
    if est.clusters is not None:
        return f"{est.clusters[0]}x{est.clusters[1]} clusters"
    return "epochs " + " ".join(f"{k}={v}" for k, v in est.epochs.items())


def _read_table(path: str):
    import numpy as np

    try:
        table = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"--table {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--table {path} is a folder; give a .npy file") from None
    except (OSError, ValueError, EOFError):
        raise UserError(f"--table {path} is not a numpy array file; save the (|X1|, |X2|, |Y|) "
                        "table with numpy.save") from None
    if not isinstance(table, np.ndarray):                    # an .npz archive
        if len(table.files) != 1:
            raise UserError(f"--table {path} holds {len(table.files)} arrays; save one "
                            "(|X1|, |X2|, |Y|) table with numpy.save")
        table = table[table.files[0]]
    if table.dtype.kind not in "biuf":
        raise UserError(f"--table {path} holds {table.dtype} values; a joint table holds real "
                        "non-negative numbers")
    return table


def _pid_of_table(args: argparse.Namespace) -> int:
    from synergy_bench.data import physical_memory
    from synergy_bench.pid import broja
    from synergy_bench.spec import format_bytes

    if args.name is not None:
        raise UserError(f"give a generator NAME or --table FILE.npy, not both (got {args.name!r} and {args.table})")
    if args.estimator != "exact" or args.samples is not None:
        raise UserError("--table is solved exactly; --estimator and --samples apply to generator samples")
    table = _read_table(args.table)
    if table.ndim == 3:
        n1, n2, ny = table.shape
        need, memory = 8 * (4 * table.size + 2 * (min(n1, n2) * ny) ** 2), physical_memory()
        if memory and need > memory:
            raise UserError(f"--table {args.table} ({n1}x{n2}x{ny}) needs about {format_bytes(need)} to solve, "
                            f"more than this machine's {format_bytes(memory)}; merge values of X1, X2 or Y")
        if min(n1, n2) * ny > 2000:
            print(f"solving the exact PID of a {n1}x{n2}x{ny} table: Newton systems of size {min(n1, n2) * ny}, "
                  "this can take minutes", file=sys.stderr, flush=True)
    try:
        pid = broja(table)
    except ValueError as err:
        raise UserError(f"--table {args.table}: {err}") from None
    if args.json:
        print(json.dumps({**pid.as_dict(), "total": pid.total}, indent=2))
        return 0
    print(f"exact PID of {args.table}, shape {'x'.join(map(str, table.shape))} (bits)")
    print("".join(f"{a:>12}" for a in ATOMS) + f"{'total':>12}")
    print("".join(f"{getattr(pid, a):>12.6f}" for a in ATOMS) + f"{pid.total:>12.6f}")
    return 0


def cmd_pid(args: argparse.Namespace) -> int:
    """Exact PID of a table, or a generator's exact PID per task next to an estimate from samples."""
    _load_plugins(args.plugin)
    _seed(args.seed)
    if args.table is not None:
        return _pid_of_table(args)
    if args.name is None:
        raise UserError("give a generator NAME (see `synergy-bench list`) or --table FILE.npy")
    if args.estimator == "exact":
        if args.samples is not None:
            raise UserError("--samples needs --estimator cluster or batch; the exact PID uses no samples")
        gen = _generator(args.name, args.set, args.seed)
        if args.readability and not getattr(gen, "modality_factors", None):
            raise UserError(f"--readability needs a generator that names each modality's factors; {args.name} "
                            "does not: drop --readability")
        print(f"solving the exact PID of {len(gen.tasks)} task(s) of {args.name} ...", file=sys.stderr, flush=True)
        extra = gen.extra_truth()
        read = _readability(gen, args) if args.readability else None
        return _print_truth(args.name, gen.ground_truth(), args.json, extra, read)
    return _print_estimates(args)


def _readability(gen, args: argparse.Namespace) -> dict:
    import torch

    from synergy_bench.measures.readability import readability

    print("reading each factor from its modality (MLP 256 x 256, 30,000 samples) ...", file=sys.stderr, flush=True)
    torch.set_num_threads(1)
    return readability(gen, seed=args.seed, device=args.device)


def _print_truth(name: str, truth: dict, as_json: bool, extra: dict | None = None,
                 read: dict | None = None) -> int:
    """The exact PID per task, then any further decompositions ``extra`` ({title: {task: PID}}),
    then how much of each factor the observations carry (``read``, see
    :func:`synergy_bench.measures.readability.readability`)."""
    extra = extra or {}
    if as_json:
        out = {t: (v.as_dict() if v is not None else None) for t, v in truth.items()}
        if extra:
            out["extra"] = {title: {t: v.as_dict() for t, v in rows.items()} for title, rows in extra.items()}
        if read:
            out["readability"] = read
        print(json.dumps(out, indent=2))
        return 0
    print(f"exact PID of {name} (bits)")
    print(_pid_header())
    for t, v in truth.items():
        print(f"{t:<6}{'exact':<9}{'not exact':>12}" if v is None else _pid_row(t, "exact", v))
    for title, rows in extra.items():
        print(title)
        for t, v in rows.items():
            print(_pid_row(t, "exact", v))
    if read:
        print("what the observations carry: each factor read from its modality by an MLP probe "
              "(30,000 samples; bits certified, of H(F))")
        print(f"{'factor':<10}{'accuracy':>10}{'bits':>10}{'H(F)':>8}")
        for key, r in read.items():
            print(f"{key:<10}{r['accuracy']:>10.4f}{r['bits']:>10.4f}{r['entropy']:>8.4f}")
    return 0


def _print_estimates(args: argparse.Namespace) -> int:
    import numpy as np

    from synergy_bench.pid import estimate
    from synergy_bench.runner import resolve_device

    if args.samples is not None and args.samples < 2:
        raise UserError(f"--samples {args.samples} must be >= 2")
    sets = list(args.set or []) + ([f"n_train={args.samples}"] if args.samples is not None else [])
    gen = _generator(args.name, sets, args.seed)
    sample = gen.sample("train", np.random.default_rng(args.seed))
    if len(sample["x"]) != 2:
        raise UserError(f"the estimators take two modalities; generator {args.name} has {len(sample['x'])} "
                        "(set n_modalities=2)")
    options = {"device": resolve_device(args.device)} if args.estimator == "batch" else {}
    truth = gen.ground_truth()
    rows = {}
    for task in gen.tasks:
        try:
            est = estimate(sample["x"][0], sample["x"][1], sample["y"][task], args.estimator,
                           seed=args.seed, **options)
        except ValueError as err:
            raise UserError(f"--estimator {args.estimator} on {len(sample['y'][task])} samples: {err}; "
                            "raise --samples") from None
        rows[task] = (truth.get(task), est)
    n = len(sample["y"][gen.tasks[0]])
    if args.json:
        print(json.dumps({t: {"truth": v.as_dict() if v is not None else None, "estimate": e.pid.as_dict(),
                              "clusters": e.clusters, "epochs": e.epochs}
                          for t, (v, e) in rows.items()}, indent=2))
        return 0
    print(f"PID of {args.name} (bits): exact vs {args.estimator} estimate from {n} samples")
    print(_pid_header())
    for t, (v, e) in rows.items():
        print(f"{t:<6}{'exact':<9}{'not exact':>12}" if v is None else _pid_row(t, "exact", v))
        print(_pid_row("", args.estimator, e.pid) + f"   {_needed(e)}")
    return 0


# ---------------------------------------------------------------------------- bench, check
def cmd_bench(args: argparse.Namespace) -> int:
    """Run speed benchmarks; print each and write its CSV (medians, ratios, the machine)."""
    import csv

    from synergy_bench.bench import BENCHMARKS, RUNNERS, format_rows
    from synergy_bench.results import make_folder
    from synergy_bench.runner import resolve_device

    whats = BENCHMARKS if args.what == "all" else (args.what,)
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} must be >= 1")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads} must be >= 1")
    _seed(args.seed)
    out = Path(args.out)
    if out.suffix == ".csv" and len(whats) > 1:
        raise UserError(f"--out {out} is one file but `bench all` writes {len(whats)}; give a folder")
    if "pid" in whats:
        from importlib.util import find_spec

        if find_spec("cvxpy") is None:
            raise UserError("bench pid compares against cvxpy, which is not installed; "
                            "`pip install cvxpy` (or the [bench] extra)")
    device = resolve_device(args.device)
    paths = {what: out if out.suffix == ".csv" else out / f"{what}.csv" for what in whats}
    for path in paths.values():  # every output is writable before any benchmark runs
        make_folder(path.parent)
        if path.is_dir():
            raise UserError(f"--out {path} is a folder; give a .csv path or the folder that holds it")
    for what in whats:
        rows = RUNNERS[what](repeats=args.repeats, seed=args.seed, device=device, threads=args.threads)
        print(format_rows(what, rows), flush=True)
        path = paths[what]
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from synergy_bench.check import main as check_main

    _load_plugins(args.plugin)
    return check_main(args.ref, device=args.device)


# ---------------------------------------------------------------------------- parser
def _run_arguments(r: argparse.ArgumentParser, default_spec: str) -> None:
    r.add_argument("spec", nargs="?", metavar="SPEC",
                   help=f"YAML path or packaged spec name, see `synergy-bench list` (default: {default_spec})")
    r.add_argument("--out", metavar="DIR",
                   help="results folder; a rerun resumes it (default: results/<spec name>, or "
                        "results/<spec name>-<profile> for a spec with profiles)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    r.add_argument("--workers", type=int, metavar="N", help="parallel runs (default: number of cores)")
    r.add_argument("--executor", default="local", choices=("local", "ray"),
                   help="local: a process pool on this machine; ray: a Ray task per run")
    r.add_argument("--address", metavar="HOST:PORT",
                   help="Ray cluster address for --executor ray (default: start a local instance)")
    r.add_argument("--device", metavar="DEVICE",
                   help="auto, cpu, cuda or cuda:N (default: the spec's device, else auto)")
    r.add_argument("--force", action="store_true", help="write into a folder holding another spec's results")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--dry-run", action="store_true",
                   help="print the resolved spec (profile merged, overrides applied, every parameter's "
                        "value) and the number of runs; write nothing")
    r.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    r.set_defaults(fn=cmd_run, default_spec=default_spec)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="synergy-bench", description=__doc__, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"synergy-bench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)

    def command(name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=description or help_, formatter_class=_Formatter)

    ls = command("list", "the registered generators (with their tasks), methods, measures and their "
                         "parameters, and the packaged specs")
    ls.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    ls.set_defaults(fn=cmd_list)

    _run_arguments(command("run", "run an experiment spec into a results folder and print its tables",
                           "Run every run of a spec not yet in the results folder (a rerun resumes; Ctrl-C "
                           "saves the finished runs), then print its tables and write its figures.\n\n"
                           "  synergy-bench run quick --set train.epochs=5 --set 'seeds=[0,1]'\n"
                           "  synergy-bench run my_spec.yaml --out results/mine --workers 4\n"
                           "  synergy-bench run trifeature_s --set profile=paper --dry-run"), "quick")
    _run_arguments(command("validate", "alias of `run` whose default spec is estimators (the PID "
                                       "estimators against exact truth)"), "estimators")

    rep = command("report", "print or export a results folder's tables (mean ± standard error over seeds)",
                  "Print the tables of DIR/results.csv, or export them for a paper; figures are rewritten "
                  "only with --figures.\n\n"
                  "  synergy-bench report results/quick\n"
                  "  synergy-bench report results/quick --format latex --out table.tex\n"
                  "  synergy-bench report results --html        an index page of every folder")
    rep.add_argument("dir", metavar="DIR", help="a results folder (holding results.csv); with --html also a "
                                                "folder of results folders")
    rep.add_argument("--format", default="text", choices=FORMATS,
                     help="text, markdown or latex tables, or csv: one row per cell with mean, se and n")
    rep.add_argument("--out", metavar="PATH", help="write the tables to this file (default: print them)")
    rep.add_argument("--figures", action="store_true", help="also rewrite the figures in DIR/figures")
    rep.add_argument("--html", action="store_true",
                     help="write DIR/report.html (or, for a folder of results folders, an index page)")
    rep.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    rep.set_defaults(fn=cmd_report)

    cmp_ = command("compare", "paired differences between two results folders, or two methods of one folder, over "
                              "the cells and seeds they share",
                   "For every cell (generator point, method, measure, task, metric) and seed both folders hold: "
                   "the mean of each and the mean difference B - A with its standard error over the "
                   "shared seeds. With --methods A B, the two methods of one folder are paired instead.\n\n"
                   "  synergy-bench compare results/quick results/quick-new --metric bits\n"
                   "  synergy-bench compare results/reference/quick --methods comm infmasking")
    cmp_.add_argument("dir_a", metavar="DIR_A", help="results folder A")
    cmp_.add_argument("dir_b", metavar="DIR_B", nargs="?", help="results folder B")
    cmp_.add_argument("--methods", nargs=2, metavar=("A", "B"),
                      help="pair method settings A and B (their labels) of DIR_A instead of two folders")
    cmp_.add_argument("--metric", action="append", metavar="METRIC",
                      help="compare only this metric (repeatable; default: every metric)")
    cmp_.add_argument("--format", default="text", choices=FORMATS, help="text, markdown, latex or csv")
    cmp_.add_argument("--out", metavar="PATH", help="write the table to this file (default: print it)")
    cmp_.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    cmp_.set_defaults(fn=cmd_compare)

    g = command("generate", "write a generator's samples, labels, latents and metadata to an .npz file")
    g.add_argument("name", metavar="NAME", help="generator name (see `synergy-bench list`)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="generator parameter, e.g. n_train=500")
    g.add_argument("--seed", type=int, default=0, help="seed of the generator's world and samples (>= 0)")
    g.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    g.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    g.set_defaults(fn=cmd_generate)

    pid = command("pid", "exact PID (bits) of a generator's tasks, next to an estimate from samples, or of a table",
                  "  synergy-bench pid latent --set k=4\n"
                  "  synergy-bench pid bitwise --estimator cluster --samples 10000\n"
                  "  synergy-bench pid --table joint.npy")
    pid.add_argument("name", nargs="?", metavar="NAME", help="generator name (see `synergy-bench list`)")
    pid.add_argument("--table", metavar="FILE.npy", help="solve this (|X1|, |X2|, |Y|) table exactly instead")
    pid.add_argument("--estimator", default="exact", choices=("exact", "cluster", "batch"),
                     help="exact: ground truth only; cluster or batch: also estimate from samples")
    pid.add_argument("--samples", type=int, metavar="N",
                     help="samples the estimate uses (default: the generator's n_train)")
    pid.add_argument("--device", default="cpu", help="batch estimator device: auto, cpu, cuda or cuda:N")
    pid.add_argument("--set", action="append", metavar="KEY=VALUE", help="generator parameter, e.g. k=4")
    pid.add_argument("--seed", type=int, default=0, help="seed of the generator's world, samples and estimator")
    pid.add_argument("--json", action="store_true", help="print JSON")
    pid.add_argument("--readability", action="store_true",
                     help="also read each factor from its modality with a large-sample MLP (about 30 s a factor)")
    pid.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    pid.set_defaults(fn=cmd_pid)

    b = command("bench", "speed benchmarks against plain references (ratios measured in one process)")
    b.add_argument("what", nargs="?", default="all", choices=("loss", "train", "pid", "all"),
                   help="loss: the InfMasking mask term; train: the InfMasking step and epoch; pid: the exact "
                        "PID solver against cvxpy; all: the three")
    b.add_argument("--out", default=str(Path("results") / "bench"), metavar="PATH",
                   help="folder of the CSVs (<what>.csv), or a .csv file for one benchmark")
    b.add_argument("--repeats", type=int, default=3,
                   help="timed calls after a warm-up; pid: random tables per shape")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads (as in runs)")
    b.add_argument("--device", default="cpu", help="loss and train: auto, cpu, cuda or cuda:N")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    b.set_defaults(fn=cmd_bench)

    c = command("check", "the contract checks of a plug-in: every method and generator it registers, on a "
                         "tiny configuration (PASS or FAIL with the reason; exit 1 if any fails)",
                "  synergy-bench check my_method.py\n  synergy-bench check my_package.methods --device cuda")
    c.add_argument("ref", metavar="PLUGIN", help="a .py file or a module name")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    c.add_argument("--plugin", action="append", metavar="FILE.py|MODULE", help=PLUGIN_HELP)
    c.set_defaults(fn=cmd_check)
    return p


def _command(args: argparse.Namespace) -> str:
    """The command line as given (recorded in meta.json)."""
    return shlex.join(["synergy-bench", *args.argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
        args.argv = argv
        return args.fn(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that stopped early (``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())

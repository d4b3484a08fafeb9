"""The ``synergy-bench`` command line: list, run, report, generate, pid, validate, bench."""
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
    METHODS,
    UserError,
    get_generator,
    load_plugins,
    make_params,
    param_fields,
)


def _kv(sets: list[str] | None) -> dict:
    """--set k=v pairs (YAML values) for a generator's parameters."""
    from synergy_bench.spec import apply_overrides

    return apply_overrides({}, sets or [])


def _generator(name: str, sets: list[str] | None, seed: int):
    cls = get_generator(name)
    return cls(make_params(cls, _kv(sets), f"generator[{name}]"), seed)


def cmd_list(args: argparse.Namespace) -> int:
    from synergy_bench.spec import packaged_specs

    load_plugins()
    for title, table in (("generators", GENERATORS), ("methods", METHODS)):
        print(f"{title}:")
        for name, cls in sorted(table.items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            extra = ""
            if table is GENERATORS:
                extra = f"  tasks: {', '.join(cls(cls.Params(), 0).tasks)}"
            elif not cls.trainable:
                extra = "  (control: probed untrained)"
            print(f"  {name:<12} {doc}{extra}")
            for field, default, help_ in param_fields(cls):
                print(f"      {field:<16} = {default!r:<12} {help_}")
    print("experiment specs:")
    for name, path in sorted(packaged_specs().items()):
        print(f"  {name:<20} {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from synergy_bench import plots, results
    from synergy_bench.runner import get_executor, resolve_device
    from synergy_bench.spec import expand, load, resolve
    from synergy_bench.train import check_amp

    raw = load(args.spec, args.set)
    if args.device:
        raw["device"] = args.device
    spec = resolve(raw)
    device = resolve_device(spec["device"])  # this machine's; on Ray, auto is resolved per task
    executor = get_executor(args.executor, args.address)
    if args.executor == "local" or spec["device"] != "auto":
        for tp in spec["train"]:
            check_amp(device, tp["amp"])
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be >= 1")
    runs = expand(spec)
    folder = spec["name"] + (f"-{spec['profile']}" if spec["profile"] else "")
    out = Path(args.out or Path("results") / folder)
    store = results.ResultsStore(out, spec, force=args.force)
    store.write_meta(device=device, command=_command(args))
    failed = 0
    try:
        todo = [r for r in runs if r.run_id not in store.completed]
        print(f"{spec['name']}: {len(runs)} runs ({len(runs) - len(todo)} already in {out}), "
              f"device {device}", flush=True)
        workers = args.workers or os.cpu_count() or 1
        bar = tqdm(total=len(todo), unit="run", file=sys.stderr, disable=args.quiet)
        for run, rows, error in executor(todo, workers):
            label = f"{run.method_label} on {run.generator_label} seed {run.seed}"
            if error is None:
                store.add(run.run_id, rows)
            else:
                failed += 1
                store.fail(run.run_id, label, error)
                tqdm.write(f"run failed: {label}: {error.splitlines()[0]}", file=sys.stderr)
            bar.update(1)
        bar.close()
    finally:
        store.close()
    ids = {r.run_id for r in runs}
    df = results.load(out)
    df = df[df.run_id.isin(ids)]
    return _show(df, results.format_table, plots.report, out, failed, "run(s)")


def _show(df, table, figures, out: Path, failed: int, what: str) -> int:
    """Print a finished grid's table, write its figures, report failures; the exit status."""
    if len(df):
        print(table(df))
        for p in figures(df, out / "figures"):
            print(p.read_text() if p.suffix == ".txt" else f"wrote {p}")  # text tables in full
    if failed:
        print(f"{failed} {what} failed; errors in {out / 'failures.jsonl'}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from synergy_bench import plots, results

    return _show(results.load(args.dir), results.format_table, plots.report, Path(args.dir), 0, "")


def cmd_generate(args: argparse.Namespace) -> int:
    import numpy as np

    gen = _generator(args.name, args.set, args.seed)
    rng = np.random.default_rng(args.seed)
    arrays, meta = {}, {"generator": args.name, "params": gen.params.__dict__, "seed": args.seed,
                        "version": __version__,
                        "ground_truth": {t: (v.as_dict() if v else None) for t, v in gen.ground_truth().items()}}
    for split in ("train", "test"):
        s = gen.sample(split, rng)
        arrays.update({f"{split}/x{i + 1}": x for i, x in enumerate(s["x"])})
        arrays.update({f"{split}/y_{t}": y for t, y in s["y"].items()})
        arrays.update({f"{split}/z_{f}": z for f, z in s["z"].items()})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, meta=json.dumps(meta), **arrays)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


ATOMS = ("redundancy", "unique1", "unique2", "synergy")


def _pid_row(label: str, source: str, pid) -> str:
    return f"{label:<6}{source:<9}" + "".join(f"{getattr(pid, a):>12.6f}" for a in ATOMS) + f"{pid.total:>12.6f}"


def _pid_header() -> str:
    return f"{'task':<6}{'source':<9}" + "".join(f"{a:>12}" for a in ATOMS) + f"{'total':>12}"


def _needed(est) -> str:
    """What an estimate needed, in a few words."""
    if est.clusters is not None:
        return f"{est.clusters[0]}x{est.clusters[1]} clusters"
    return "epochs " + " ".join(f"{k}={v}" for k, v in est.epochs.items())


def _pid_of_table(args: argparse.Namespace) -> int:
    import numpy as np

    from synergy_bench.pid import broja

    if args.name is not None:
        raise UserError(f"give a generator NAME or --table FILE.npy, not both (got {args.name!r} and {args.table})")
    if args.estimator != "exact" or args.samples is not None:
        raise UserError("--table is solved exactly; --estimator and --samples apply to generator samples")
    try:
        table = np.load(args.table, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"--table {args.table}: no such file") from None
    except (OSError, ValueError):
        raise UserError(f"--table {args.table} is not a numpy array file; save the (|X1|, |X2|, |Y|) "
                        "table with numpy.save") from None
    if not isinstance(table, np.ndarray):                    # an .npz archive
        if len(table.files) != 1:
            raise UserError(f"--table {args.table} holds {len(table.files)} arrays; save one "
                            "(|X1|, |X2|, |Y|) table with numpy.save")
        table = table[table.files[0]]
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
    if args.table is not None:
        return _pid_of_table(args)
    if args.name is None:
        raise UserError("give a generator NAME (see `synergy-bench list`) or --table FILE.npy")
    if args.estimator == "exact":
        if args.samples is not None:
            raise UserError("--samples needs --estimator cluster or batch; the exact PID uses no samples")
        gen = _generator(args.name, args.set, args.seed)
        return _print_truth(args.name, gen.ground_truth(), args.json, gen.extra_truth())
    return _print_estimates(args)


def _print_truth(name: str, truth: dict, as_json: bool, extra: dict | None = None) -> int:
    """The exact PID per task, then any further decompositions ``extra`` ({title: {task: PID}})."""
    extra = extra or {}
    if as_json:
        out = {t: (v.as_dict() if v is not None else None) for t, v in truth.items()}
        if extra:
            out["extra"] = {title: {t: v.as_dict() for t, v in rows.items()} for title, rows in extra.items()}
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
    options = {"device": resolve_device(args.device)} if args.estimator == "batch" else {}
    truth = gen.ground_truth()
    rows = {}
    for task in gen.tasks:
        est = estimate(sample["x"][0], sample["x"][1], sample["y"][task], args.estimator,
                       seed=args.seed, **options)
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


def cmd_validate(args: argparse.Namespace) -> int:
    """Run an estimator-validation spec: PID estimators from samples against exact truth."""
    from synergy_bench.pid import validate

    spec = validate.load_spec(args.spec, args.set)
    out = Path(args.out or Path("results") / spec["name"])
    df, failed = validate.run_validation(spec, out, force=args.force, quiet=args.quiet,
                                         command=_command(args))
    return _show(df, validate.format_table, validate.figures, out, failed, "cell(s)")


def cmd_bench(args: argparse.Namespace) -> int:
    """Run speed benchmarks; print each and write its CSV (medians, ratios, the machine)."""
    import csv

    from synergy_bench.bench import BENCHMARKS, RUNNERS, format_rows
    from synergy_bench.runner import resolve_device

    whats = BENCHMARKS if args.what == "all" else (args.what,)
    if args.what != "all" and args.what not in BENCHMARKS:
        raise UserError(f"bench {args.what!r} is unknown; choose one of {', '.join(BENCHMARKS)} or all")
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} must be >= 1")
    if args.threads < 1:
        raise UserError(f"--threads {args.threads} must be >= 1")
    out = Path(args.out)
    if out.suffix == ".csv" and len(whats) > 1:
        raise UserError(f"--out {out} is one file but `bench all` writes {len(whats)}; give a folder")
    if "pid" in whats:
        from importlib.util import find_spec

        if find_spec("cvxpy") is None:
            raise UserError("bench pid compares against cvxpy, which is not installed; "
                            "`pip install cvxpy` (or the [bench] extra)")
    device = resolve_device(args.device)
    for what in whats:
        rows = RUNNERS[what](repeats=args.repeats, seed=args.seed, device=device, threads=args.threads)
        print(format_rows(what, rows), flush=True)
        path = out if out.suffix == ".csv" else out / f"{what}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="synergy-bench", description=__doc__)
    p.add_argument("--version", action="version", version=f"synergy-bench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="registered generators, methods, tasks and packaged specs").set_defaults(fn=cmd_list)

    r = sub.add_parser("run", help="run an experiment spec and print its table")
    r.add_argument("spec", nargs="?", help="YAML path or packaged spec name (default: quick)")
    r.add_argument("--out", help="results folder (default: results/<spec name>/)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (YAML value)")
    r.add_argument("--workers", type=int, help="parallel runs (default: number of cores)")
    r.add_argument("--executor", default="local", help="local (process pool) or ray (a task per run)")
    r.add_argument("--address", help="Ray cluster address for --executor ray (default: start a local instance)")
    r.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the spec's, else auto)")
    r.add_argument("--force", action="store_true", help="write into a folder holding another spec's results")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="rebuild the table and figures from DIR/results.csv")
    rep.add_argument("dir")
    rep.set_defaults(fn=cmd_report)

    g = sub.add_parser("generate", help="write samples, labels, latents and metadata to .npz")
    g.add_argument("name", help="generator name (see `synergy-bench list`)")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="generator parameter")
    g.add_argument("--seed", type=int, default=0, help="seed of the generator's world and samples")
    g.add_argument("--out", required=True, help="output .npz file")
    g.set_defaults(fn=cmd_generate)

    pid = sub.add_parser("pid", help="exact PID (bits) of a generator's tasks, next to an estimate "
                                     "from samples, or of a table")
    pid.add_argument("name", nargs="?", help="generator name (see `synergy-bench list`)")
    pid.add_argument("--table", metavar="FILE.npy", help="solve this (|X1|, |X2|, |Y|) table exactly instead")
    pid.add_argument("--estimator", default="exact", choices=("exact", "cluster", "batch"),
                     help="exact: ground truth only; cluster or batch: also estimate from samples")
    pid.add_argument("--samples", type=int, help="samples the estimate uses (default: the generator's n_train)")
    pid.add_argument("--device", default="cpu", help="batch estimator device: auto, cpu, cuda or cuda:N")
    pid.add_argument("--set", action="append", metavar="KEY=VALUE", help="generator parameter")
    pid.add_argument("--seed", type=int, default=0, help="seed of the generator's world, samples and estimator")
    pid.add_argument("--json", action="store_true", help="print JSON")
    pid.set_defaults(fn=cmd_pid)

    v = sub.add_parser("validate", help="validate the PID estimators against exact truth (an estimators spec)")
    v.add_argument("spec", nargs="?", help="YAML path or packaged spec name (default: estimators)")
    v.add_argument("--out", help="results folder (default: results/<spec name>/)")
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (YAML value)")
    v.add_argument("--force", action="store_true", help="write into a folder holding another spec's results")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(fn=cmd_validate)

    b = sub.add_parser("bench", help="speed benchmarks against plain references (ratios measured in one process)")
    b.add_argument("what", nargs="?", default="all",
                   help="loss (InfMasking mask term), train (InfMasking step and epoch), pid (exact "
                        "PID solver) or all (default)")
    b.add_argument("--out", default=str(Path("results") / "bench"),
                   help="folder of the CSVs, <what>.csv (default: %(default)s), or a .csv file for one benchmark")
    b.add_argument("--repeats", type=int, default=3,
                   help="timed calls after a warm-up; pid: random tables per shape (default: %(default)s)")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s, as in runs)")
    b.add_argument("--device", default="cpu", help="loss and train: auto, cpu, cuda or cuda:N (default: %(default)s)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    b.set_defaults(fn=cmd_bench)
    return p


def _command(args: argparse.Namespace) -> str:
    """The command line as given (recorded in meta.json)."""
    return shlex.join(["synergy-bench", *args.argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return args.fn(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a reader that stopped early (``| head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())

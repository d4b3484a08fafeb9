"""The ``synergy-bench`` command line: list, run, report, generate, pid."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from synergy_bench import __version__
from synergy_bench.registry import (GENERATORS, METHODS, UserError, get_generator, load_plugins,
                                    make_params, param_fields)


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
    from synergy_bench.runner import EXECUTORS, resolve_device
    from synergy_bench.spec import apply_overrides, expand, read_spec, resolve

    raw = apply_overrides(read_spec(args.spec), args.set)
    if args.device:
        raw["device"] = args.device
    spec = resolve(raw)
    resolve_device(spec["device"])
    if args.executor not in EXECUTORS:
        raise UserError(f"executor {args.executor!r} is unknown; choose one of {', '.join(EXECUTORS)}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers} must be >= 1")
    runs = expand(spec)
    out = Path(args.out or Path("results") / spec["name"])
    store = results.ResultsStore(out, spec, force=args.force)
    failed = 0
    try:
        todo = [r for r in runs if r.run_id not in store.completed]
        print(f"{spec['name']}: {len(runs)} runs ({len(runs) - len(todo)} already in {out}), "
              f"device {resolve_device(spec['device'])}", flush=True)
        workers = args.workers or os.cpu_count() or 1
        bar = tqdm(total=len(todo), unit="run", file=sys.stderr, disable=args.quiet)
        for run, rows, error in EXECUTORS[args.executor](todo, workers):
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
    if len(df):
        print(results.format_table(df))
        for p in plots.report(df, out / "figures"):
            print(f"wrote {p}")
    if failed:
        print(f"{failed} run(s) failed; errors in {out / 'failures.jsonl'}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from synergy_bench import plots, results

    df = results.load(args.dir)
    print(results.format_table(df))
    for p in plots.report(df, Path(args.dir) / "figures"):
        print(f"wrote {p}")
    return 0


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


def cmd_pid(args: argparse.Namespace) -> int:
    truth = _generator(args.name, args.set, args.seed).ground_truth()
    table = {t: (v.as_dict() if v is not None else None) for t, v in truth.items()}
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"exact PID of {args.name} (bits)")
    print(f"{'task':<8}{'redundancy':>12}{'unique1':>10}{'unique2':>10}{'synergy':>10}{'total':>10}")
    for t, v in truth.items():
        if v is None:
            print(f"{t:<8}{'not exact':>12}")
        else:
            print(f"{t:<8}{v.redundancy:>12.6f}{v.unique1:>10.6f}{v.unique2:>10.6f}{v.synergy:>10.6f}{v.total:>10.6f}")
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
    r.add_argument("--executor", default="local", help="local (process pool)")
    r.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the spec's, else auto)")
    r.add_argument("--force", action="store_true", help="write into a folder holding another spec's results")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_run)

    rep = sub.add_parser("report", help="rebuild the table and figures from DIR/results.csv")
    rep.add_argument("dir")
    rep.set_defaults(fn=cmd_report)

    for name, fn, text in (("generate", cmd_generate, "write samples, labels, latents and metadata to .npz"),
                           ("pid", cmd_pid, "exact ground-truth PID (bits) of every task of a generator")):
        g = sub.add_parser(name, help=text)
        g.add_argument("name", help="generator name (see `synergy-bench list`)")
        g.add_argument("--set", action="append", metavar="KEY=VALUE", help="generator parameter")
        g.add_argument("--seed", type=int, default=0, help="seed of the generator's world and samples")
        if name == "generate":
            g.add_argument("--out", required=True, help="output .npz file")
        else:
            g.add_argument("--json", action="store_true", help="print JSON")
        g.set_defaults(fn=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Estimator validation through the one engine: the estimators spec, the rows the PID measures
write through the results store, resuming, the tables and figures, and reading a folder of
the former layout."""
import json

import numpy as np
import pytest
import yaml

from synergy_bench.cli import main
from synergy_bench.measures.pid_estimate import case_label
from synergy_bench.pid import estimate
from synergy_bench.registry import get_generator, make_params
from synergy_bench.results import COLUMNS, load
from synergy_bench.spec import expand, load as load_spec, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

ATOMS = ("redundancy", "unique1", "unique2", "synergy")
TINY_BATCH = {"name": "pid_batch", "hidden": 8, "layers": 1, "max_epochs": 2, "patience": 1, "align_epochs": 1,
              "sinkhorn_iters": 10}
TINY = {"name": "tiny", "measures": [{"name": "pid_cluster", "clusters": 4, "n_init": 1}], "seeds": 1,
        "cases": [{"generator": {"name": "latent", "k": 2, "n_train": 300}, "tasks": ["R", "S"]},
                  {"generator": {"name": "bitwise", "dist": "xor", "n_train": 300},
                   "measures": [{"name": "pid_cluster", "clusters": 4, "n_init": 1}, TINY_BATCH]},
                  {"generator": {"name": "gaussian", "setting": "redundancy", "n_train": 300}}]}


def test_packaged_spec_resolves_to_its_grid():
    runs = expand(resolve(load_spec("estimators")))
    sizes = {(m, r.generator_params["n_train"]) for r in runs if r.generator != "gaussian" for m, _ in r.measures}
    assert sizes == {(m, n) for m in ("pid_cluster", "pid_batch") for n in (1000, 10000, 100000)}
    big_batch = {r.generator_label for r in runs if r.generator_params["n_train"] == 100000
                 and "pid_batch" in [m for m, _ in r.measures]}
    assert big_batch == {"bitwise[n_train=100000]", "bitwise[dist=redundant_xor,n_train=100000]"}
    gaussian = [r for r in runs if r.generator == "gaussian"]
    assert len(gaussian) == 10 * 5 and {r.generator_params["n_train"] for r in gaussian} == {14000}
    assert all(r.method is None and r.tasks for r in runs) and len({r.run_id for r in runs}) == len(runs)
    latent = [r for r in runs if r.generator == "latent" and r.seed == 0]
    assert sorted((r.generator_params["nuisance_scale"], r.generator_params["n_train"], len(r.measures))
                  for r in latent) == [(0.5, 1000, 2), (0.5, 10000, 2), (0.5, 100000, 1),
                                       (2.0, 1000, 2), (2.0, 10000, 2), (2.0, 100000, 1)]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("validate")
    spec = folder / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = folder / "out"
    code = main(["run", str(spec), "--out", str(out), "--quiet", "--workers", "1"])
    return spec, out, code


def test_rows_hold_estimates_beside_the_exact_truth(tiny_run):
    _, out, code = tiny_run
    assert code == 0
    df = load(out)
    assert list(df.columns) == COLUMNS
    assert df.run_id.nunique() == 3 and (df.method == "").all() and not df.trained.any()
    assert sorted(set(df.measure_label)) == ["pid_batch[hidden=8,layers=1,max_epochs=2,patience=1,align_epochs=1,"
                                             "sinkhorn_iters=10]", "pid_cluster[clusters=4,n_init=1]"]
    assert all(sorted(p.metric) == sorted(ATOMS) for _, p in df.groupby(["run_id", "measure", "task"]))
    for label, part in df[df.generator != "gaussian"].groupby("generator_label"):
        gen = part.iloc[0]
        cls = get_generator(gen.generator)
        truth = cls(make_params(cls, json.loads(gen.generator_params), "g"), 0).ground_truth()
        for _, row in part.iterrows():
            assert row[f"truth_{row.metric}"] == pytest.approx(truth[row.task].as_dict()[row.metric], abs=1e-9)
    assert df[df.generator == "gaussian"].truth_synergy.isna().all()
    assert (df.value >= 0).all() and (df.measure_seconds > 0).all() and df.train_seconds.eq(0).all()
    needed = [json.loads(s) for s in df.details]
    assert all(n == {"clusters": [4, 4]} for n, m in zip(needed, df.measure) if m == "pid_cluster")
    assert all(set(n["epochs"]) == {"x1", "x2", "x12", "align"} for n, m in zip(needed, df.measure) if m == "pid_batch")


def test_the_engine_gives_the_estimator_s_own_numbers(tiny_run):
    """A stored estimate equals estimate() called by hand on the run's samples with its seed."""
    from synergy_bench.measures.base import Context
    from synergy_bench.runner import build_generator

    _, out, _ = tiny_run
    df = load(out)
    run = next(r for r in expand(resolve(TINY)) if r.generator == "latent")
    gen = build_generator(run)
    sample = gen.sample("train", np.random.default_rng(run.data_seed))
    ctx = Context(run, gen, sample, {}, sample, "cpu")
    est = estimate(*sample["x"], sample["y"]["S"], "cluster", seed=ctx.seed("S", "pid_cluster"), clusters=4,
                   n_init=1)
    stored = df[(df.run_id == run.run_id) & (df.task == "S")].set_index("metric").value
    assert stored.to_dict() == pytest.approx(est.pid.as_dict(), abs=1e-12)


def test_tables_and_figures(tiny_run, capsys):
    _, out, _ = tiny_run
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "|estimate - truth| per atom (bits), mean ± standard error over 1 seed" in text
    assert "where the truth is not exact" in text and "gaussian" in text and "4x4 clusters" in text
    df = load(out)
    s = df[(df.generator == "latent") & (df.task == "S") & (df.metric == "synergy")].iloc[0]
    line = next(ln for ln in text.splitlines() if ln.startswith("latent ") and " S " in ln)
    assert f"{abs(s.value - s.truth_synergy):.3f}" in line.split()
    for name in ("errors", "estimates"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.pdf").exists()


def test_rerun_skips_completed_runs_and_validate_is_an_alias(tiny_run, capsys):
    spec, out, _ = tiny_run
    before = (out / "results.csv").read_text()
    assert main(["validate", str(spec), "--out", str(out), "--quiet"]) == 0
    assert "3 runs (3 already in" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == before


FORMER_HEADER = ("run_id,experiment,generator,generator_label,generator_params,method,method_label,method_params,"
                 "trained,grid_index,seed,task,metric,value,chance,truth_bits,truth_redundancy,truth_unique1,"
                 "truth_unique2,truth_synergy,train_seconds,final_loss,device,version,samples,truth,abs_error,needed")
FORMER_PARAMS = '"{""dim"": 32, ""k"": 2, ""n_test"": 2000, ""synergy"": ""xor""}"'


def test_a_folder_of_the_former_layout_loads_and_reports(tmp_path, capsys):
    """The former validation pipeline wrote cell ids, `samples`, `truth`, `abs_error` and the
    estimator as the method: such a folder loads upgraded (a pid_<estimator> measure, no method,
    the sample size as n_train), and its table gives the errors it stored."""
    errors = {"redundancy": 0.012, "unique1": 0.0018, "unique2": 0.0021, "synergy": 0.3125}
    lines = [FORMER_HEADER]
    for metric, err in errors.items():
        truth = 1.0 if metric == "synergy" else 0.0
        value = truth - err if metric == "synergy" else err
        lines.append(f"95d4d29bad7e87e5,estimators,latent,latent[k=2],{FORMER_PARAMS},cluster,cluster,"
                     f'"{{""clusters"": 20}}",False,6,0,S,{metric},{value},,1.0,0.0,0.0,0.0,1.0,0.126,,cpu,0.1.0,'
                     f'1000,{truth},{err},"{{""clusters"": [20, 20]}}"')
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "completed.txt").write_text("95d4d29bad7e87e5\n")
    df = load(tmp_path)
    assert set(df.measure) == {"pid_cluster"} and (df.method == "").all() and len(df) == 4
    assert (df.generator_label == "latent[k=2,n_train=1000]").all()
    assert main(["report", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    case = case_label("latent", json.loads(FORMER_PARAMS[1:-1].replace('""', '"')) | {"n_train": 1000}, "")
    line = next(ln for ln in text.splitlines() if ln.startswith(case + " ") and " S " in ln
                and " 1000 " in ln and "pid_cluster" in ln)
    assert line.split()[4:8] == ["0.012", "0.002", "0.002", "0.312"], line

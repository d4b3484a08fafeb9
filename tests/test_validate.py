"""Estimator validation: the spec, the rows it writes through the results store, resuming,
the figures, and results tables written before the validation columns existed."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from synergy_bench.cli import main
from synergy_bench.pid import validate
from synergy_bench.registry import UserError, get_generator, make_params
from synergy_bench.results import COLUMNS, ResultsStore, load

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY_BATCH = {"name": "batch", "hidden": 8, "layers": 1, "max_epochs": 2, "patience": 1, "align_epochs": 1,
              "sinkhorn_iters": 10}
TINY = {"kind": "estimators", "name": "tiny", "samples": [300],
        "estimators": [{"name": "cluster", "clusters": 4, "n_init": 1}],
        "cases": [{"name": "latent", "k": 2, "tasks": ["R", "S"]},
                  {"name": "bitwise", "dist": "xor",
                   "estimators": [{"name": "cluster", "clusters": 4, "n_init": 1}, TINY_BATCH]},
                  {"name": "gaussian", "setting": "redundancy"}]}


def test_packaged_spec_resolves_to_its_grid():
    spec = validate.load_spec("estimators")
    cells = validate.expand(spec)
    sizes = {(c.estimator, c.samples) for c in cells if c.generator != "gaussian"}
    assert sizes == {("cluster", 1000), ("cluster", 10000), ("cluster", 100000),
                     ("batch", 1000), ("batch", 10000), ("batch", 100000)}
    big_batch = {(c.case_label, c.task) for c in cells if c.estimator == "batch" and c.samples == 100000}
    assert big_batch == {("bitwise[dist=xor]", "Y"), ("bitwise[dist=redundant_xor]", "Y")}
    gaussian = [c for c in cells if c.generator == "gaussian"]
    assert len(gaussian) == 2 * 10 and {c.samples for c in gaussian} == {14000}
    assert len({c.cell_id for c in cells}) == len(cells)
    latent = {(c.task, c.estimator, c.samples) for c in cells if c.case_label == "latent[k=2]"}
    assert len(latent) == 4 * (3 + 2)


def test_overrides_and_spelling_change_no_cell():
    spec = validate.load_spec("estimators", ["samples=[1000]", "seeds=[3]"])
    cells = validate.expand(spec)
    assert {c.samples for c in cells if c.generator == "latent"} == {1000} and {c.seed for c in cells} == {3}
    a, b = (validate.expand(validate.resolve({**TINY, "cases": [case]}))[0]
            for case in ({"name": "bitwise"}, {"name": "bitwise", "dist": "xor"}))
    assert a.case_label == "bitwise" and b.case_label == "bitwise[dist=xor]"
    assert (a.cell_id, a.world_seed, a.sample_seed, a.estimator_seed) == \
        (b.cell_id, b.world_seed, b.sample_seed, b.estimator_seed)


@pytest.mark.parametrize("change, message", [
    ({"sampels": [10]}, "unknown spec key 'sampels'; did you mean 'samples'"),
    ({"kind": None}, "add `kind: estimators`"),
    ({"samples": [1]}, "samples = [1] must be an integer >= 2"),
    ({"seeds": 0}, "seeds = 0 must be a count >= 1"),
    ({"estimators": [{"name": "cluster", "clustres": 5}]}, "did you mean 'clusters'"),
    ({"estimators": [{"name": "cluster", "clusters": 0}]}, "clusters = 0 is out of range"),
    ({"estimators": ["knn"]}, "unknown estimator 'knn'"),
    ({"cases": [{"name": "latent", "tsks": ["R"]}]}, "did you mean 'tasks'"),
    ({"cases": [{"name": "latent", "k": 1}]}, "k = 1 is out of range"),
    ({"cases": [{"name": "latent", "n_train": 50}]}, "n_train is set by the sample sizes"),
    ({"cases": [{"name": "latent", "tasks": ["Y"]}]}, "task 'Y' is not a task of generator 'latent'"),
    ({"cases": [{"name": "latnt"}]}, "unknown generator 'latnt'"),
])
def test_bad_specs_are_named(change, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate.resolve({k: v for k, v in {**TINY, **change}.items() if v is not None})


def test_cli_refuses_an_experiment_spec(capsys):
    assert main(["validate", "quick", "--out", "unused"]) == 2
    assert "not 'estimators'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("validate")
    spec = folder / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = folder / "out"
    code = main(["validate", str(spec), "--out", str(out), "--quiet"])
    return spec, out, code


def test_rows_hold_estimate_truth_and_error(tiny_run, capsys):
    _, out, code = tiny_run
    assert code == 0
    df = load(out)
    assert list(df.columns) == COLUMNS
    cells = validate.expand(validate.resolve(TINY))
    assert len(cells) == 5 and len(df) == 4 * 5
    assert set(df.method) == {"cluster", "batch"} and (df.samples == 300).all()
    assert all(sorted(part.metric) == sorted(validate.ATOMS) for _, part in df.groupby("run_id"))
    exact = df[df.generator != "gaussian"]
    assert np.allclose(exact.abs_error, (exact.value - exact.truth).abs())
    for (label, task), part in exact.groupby(["generator_label", "task"]):
        case = next(c for c in cells if c.case_label == label)
        cls = get_generator(case.generator)
        truth = cls(make_params(cls, case.params, "g"), 0).ground_truth()[task].as_dict()
        assert dict(zip(part.metric, part.truth)) == pytest.approx(truth)
        assert np.allclose(part.truth, part[[f"truth_{a}" for a in part.metric]].to_numpy().diagonal())
    gauss = df[df.generator == "gaussian"]
    assert gauss.truth.isna().all() and gauss.abs_error.isna().all() and gauss.value.notna().all()
    assert (df.value >= 0).all() and (df.train_seconds >= 0).all()
    needed = [json.loads(s) for s in df.needed]
    assert all(n == {"clusters": [4, 4]} for n, m in zip(needed, df.method) if m == "cluster")
    assert all(set(n["epochs"]) == {"x1", "x2", "x12", "align"} for n, m in zip(needed, df.method) if m == "batch")


def test_same_cell_same_numbers(tiny_run):
    _, out, _ = tiny_run
    df = load(out)
    cell = next(c for c in validate.expand(validate.resolve(TINY)) if c.task == "S")
    again = {r["metric"]: r["value"] for r in validate.execute(cell, "cpu")}
    stored = df[df.run_id == cell.cell_id].set_index("metric").value
    assert again == pytest.approx(stored.to_dict(), abs=1e-12)


def test_table_and_figures(tiny_run, capsys):
    _, out, _ = tiny_run
    text = validate.format_table(load(out))
    assert "mean |estimate - truth| per atom" in text and "where the truth is not exact" in text
    assert "gaussian[setting=redundancy]" in text and "4x4 clusters" in text
    for name in ("errors", "estimates"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
        assert (out / "figures" / f"{name}.pdf").exists()


def test_rerun_skips_completed_cells(tiny_run, capsys, monkeypatch):
    spec, out, _ = tiny_run
    before = (out / "results.csv").read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a completed cell ran again")

    monkeypatch.setattr(validate, "execute", fail)
    assert main(["validate", str(spec), "--out", str(out), "--quiet"]) == 0
    assert "5 cells (5 already in" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == before


def test_tables_written_before_the_new_columns_still_load_and_resume(tmp_path):
    ref = ROOT / "results" / "reference" / "quick"
    old = pd.read_csv(ref / "results.csv")
    assert load(ref).shape == old.shape                       # the committed table loads as it is
    shutil.copy(ref / "results.csv", tmp_path / "results.csv")
    shutil.copy(ref / "spec.yaml", tmp_path / "spec.yaml")
    (tmp_path / "completed.txt").write_text("".join(f"{r}\n" for r in old.run_id.unique()))
    spec = yaml.safe_load((ref / "spec.yaml").read_text())
    store = ResultsStore(tmp_path, spec)                      # rewrites the header, keeps every row
    store.add("new", [{"run_id": "new", "experiment": spec["name"], "method_label": "m", "task": "R",
                       "metric": "redundancy", "value": 0.5, "seed": 0, "trained": False, "grid_index": 0,
                       "samples": 10, "truth": 1.0, "abs_error": 0.5}])
    store.close()
    df = load(tmp_path)
    assert list(df.columns) == COLUMNS and len(df) == len(old) + 1
    pd.testing.assert_frame_equal(df.iloc[:-1][list(old.columns)], old, check_dtype=False)
    assert df.iloc[-1].abs_error == 0.5 and df.iloc[:-1].samples.isna().all()

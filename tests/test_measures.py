"""Measures as plug-ins: the probe measure's kinds and defaults, the estimator measures' defaults,
a measure of one's own run through a spec and reported, and the tables' statistics."""
import importlib
import inspect
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from synergy_bench import probe as probe_module
from synergy_bench.cli import main
from synergy_bench.measures.base import Context
from synergy_bench.measures.pid_estimate import PIDBatch, PIDCluster
from synergy_bench.measures.probe import Probe, ProbeParams
from synergy_bench.registry import make_params
from synergy_bench.results import COLUMNS, load
from synergy_bench.tables import Stat, Table, latex_escape, render

pytestmark = pytest.mark.usefixtures("one_thread")
estimate_module = importlib.import_module("synergy_bench.pid.estimate")  # the package exports a function of that name


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_probe_measure_defaults_are_fit_probe_s():
    mine = vars(ProbeParams())
    fit, mlp = _defaults(probe_module.fit_probe), _defaults(probe_module._mlp)
    assert mine["kind"] == fit["kind"] and mine["holdout"] == fit["holdout"] and mine["max_iter"] == fit["max_iter"]
    assert tuple(mine["Cs"]) == tuple(fit["Cs"]) and tuple(mine["hidden"]) == tuple(mlp["hidden"])
    assert {k: mine[k] for k in ("lr", "batch_size", "max_epochs", "patience")} == \
        {k: mlp[k] for k in ("lr", "batch_size", "max_epochs", "patience")}


@pytest.mark.parametrize("cls, fn", [(PIDCluster, estimate_module._cluster), (PIDBatch, estimate_module._batch)])
def test_estimator_measure_defaults_are_the_estimator_s(cls, fn):
    theirs = _defaults(fn)
    options = cls(cls.Params()).options("cpu")
    assert {k: theirs[k] for k in options} == {**options, **({"device": "cpu"} if "device" in options else {})}


def _xor_context(seed: int = 0):
    """Two informative features whose XOR is the label (plus noise features): readable by an
    MLP, not by a linear probe."""
    rng = np.random.default_rng(seed)

    def draw(n):
        a, b = rng.integers(0, 2, n), rng.integers(0, 2, n)
        x = np.c_[a + 0.1 * rng.standard_normal(n), b + 0.1 * rng.standard_normal(n), rng.standard_normal((n, 2))]
        return x.astype(np.float32), a ^ b

    (xtr, ytr), (xte, yte) = draw(2000), draw(1000)
    gen = SimpleNamespace(n_classes=lambda task: 2, modality_codes=lambda z: None)
    run = SimpleNamespace(tasks=("S",), data_seed=1, method="m")
    embeddings = {"probe": xtr, "test": xte}
    return Context(run, gen, {"y": {"S": ytr}}, {"y": {"S": yte}, "z": {}}, {"y": {"S": ytr}}, "cpu",
                   embed=embeddings.__getitem__)


def test_the_mlp_probe_reads_an_xor_the_linear_probe_cannot():
    rows = {}
    for kind in ("linear", "mlp"):
        measure = Probe(make_params(Probe, {"kind": kind, "hidden": [32], "max_epochs": 100}, "probe"))
        rows[kind] = {r["metric"]: r for r in measure(_xor_context())}
    assert abs(rows["linear"]["balanced_accuracy"]["value"] - 0.5) < 0.06
    assert rows["mlp"]["balanced_accuracy"]["value"] > 0.97 and rows["mlp"]["bits"]["value"] > 0.8
    assert rows["mlp"]["bits"]["details"]["C"] is None and rows["linear"]["bits"]["details"]["C"] in ProbeParams().Cs
    assert rows["mlp"]["bits"]["details"]["epochs"] >= 1
    assert set(rows["mlp"]) == {"balanced_accuracy", "bits"}  # no discrete latents: no prediction PID


WIDTH = """
from dataclasses import dataclass

import synergy_bench as sb


@dataclass
class WidthParams:
    scale: float = sb.param(1.0, "multiplies the width", gt=0)


@sb.register_measure
class Width(sb.Measure):
    \"\"\"The representation's width.\"\"\"

    name = "test_width"
    Params = WidthParams

    def __call__(self, ctx):
        x = ctx.embedding("test")
        return [{"task": t, "metric": "width", "value": self.params.scale * x.shape[1]} for t in ctx.run.tasks]
"""


def test_a_measure_of_one_s_own_runs_through_a_spec_and_is_reported(tmp_path, capsys, clean_registry):
    """A measure in a plug-in file named by the spec, run in a pool of two workers (which load
    the file themselves), stored and reported like the built-in ones."""
    (tmp_path / "width.py").write_text(WIDTH)
    spec = {"name": "own", "plugins": ["width.py"], "generator": {"name": "latent", "n_train": 128, "n_test": 64},
            "methods": [], "controls": ["raw"], "measures": [{"name": "test_width", "scale": 0.5}, "probe"],
            "tasks": ["R", "S"], "seeds": 2, "probe": {"Cs": [1.0], "prediction_pid": False}}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(tmp_path / "own.yaml"), "--out", str(tmp_path / "out"), "--workers", "2",
                 "--quiet"]) == 0
    df = load(tmp_path / "out")
    mine = df[df.measure == "test_width"]
    assert list(df.columns) == COLUMNS and len(mine) == 2 * 2
    assert (mine.value == 0.5 * 2 * 64).all() and set(mine.measure_label) == {"test_width[scale=0.5]"}
    assert mine.method.eq("raw").all() and (mine.truth_bits == 1.0).all()
    text = capsys.readouterr().out
    assert "test_width[scale=0.5]: width, mean ± standard error over 2 seeds" in text
    assert "balanced accuracy | certified bits" in text


def test_runner_names_no_metric():
    from pathlib import Path

    import synergy_bench.runner as runner

    source = Path(runner.__file__).read_text()
    for name in ("balanced_accuracy", '"bits"', "probe(", "linear_probe", "fit_probe", "prediction_pid", "estimate("):
        assert name not in source, name


def test_stat_is_the_mean_and_standard_error_by_hand():
    values = [0.2, 0.5, 0.9, 0.4]
    s = Stat.of(values + [math.nan])
    mean = sum(values) / 4
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / 3) / 2
    assert (s.mean, s.se, s.n) == (pytest.approx(mean), pytest.approx(se), 4)
    assert Stat.of([0.7]).text() == "0.700" and Stat.of([]).text() == "-"


def test_tables_render_in_every_format():
    t = Table("a_b: 50% | x", ["method", "S"], [["cross_self", Stat(0.5, 0.01, 3)], ["raw", Stat(0.25, math.nan, 1)]])
    text, md, tex = (render([t], f) for f in ("text", "markdown", "latex"))
    assert text.splitlines()[2].split() == ["cross_self", "0.500", "±", "0.010"]
    assert "| cross_self | 0.500 ± 0.010 |" in md and "a_b: 50% \\| x" in md
    assert r"cross\_self & $0.500 \pm 0.010$ \\" in tex and r"\caption{a\_b: 50\% | x}" in tex
    assert latex_escape("{$&#^~\\}") == r"\{\$\&\#\textasciicircum{}\textasciitilde{}\textbackslash{}\}"


def test_measure_rows_keep_their_metrics_apart_in_a_report(tmp_path):
    """Two probes (linear, mlp) in one folder: each gets its own table, none mixes the other's rows."""
    from synergy_bench.cli import report_text

    rows = []
    for label, value in (("probe", 0.6), ("probe[kind=mlp]", 0.9)):
        for seed in (0, 1):
            rows.append({"run_id": f"{seed:016x}", "experiment": "x", "generator_label": "g", "method_label": "raw",
                         "measure": "probe", "measure_label": label, "task": "S", "metric": "balanced_accuracy",
                         "value": value + 0.01 * seed, "seed": seed, "grid_index": 0, "chance": 0.5,
                         "truth_bits": 1.0})
    text = report_text(pd.DataFrame(rows).reindex(columns=COLUMNS), "text")
    assert "g - probe: balanced accuracy" in text and "g - probe[kind=mlp]: balanced accuracy" in text
    assert "0.605 ± 0.005" in text and "0.905 ± 0.005" in text


def test_readability_measure_runs_once_per_point_and_seed_and_skips_a_generator_without_factors(tmp_path):
    """The readability measure reads each latent factor from its modality (no method), with the
    factor's chance; on a generator that names no factors per modality it writes no rows."""
    small = {"name": "readability", "n": 800, "n_test": 800, "hidden": [16], "patience": 2}
    spec = {"name": "read", "generator": {"name": "latent", "n_train": 200, "n_test": 200, "k": 4},
            "methods": [], "controls": [], "measures": [small], "tasks": ["S"], "seeds": [0]}
    path = tmp_path / "read.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--workers", "1"]) == 0
    df = load(tmp_path / "out")
    assert set(df.task) == {"r@x1", "u1@x1", "s1@x1", "r@x2", "u2@x2", "s2@x2"}
    assert (df.method_label.fillna("") == "").all() and df.run_id.nunique() == 1
    assert np.allclose(df.chance, 0.25) and df.truth_synergy.isna().all()
    acc = df[df.metric == "balanced_accuracy"].value
    assert acc.between(0.9, 1.0).all(), df
    spec.update(generator={"name": "gaussian", "n_train": 200, "n_test": 200}, tasks=["Y"])
    path.write_text(yaml.safe_dump(spec))
    spec.update(measures=["probe", small], controls=["raw"])
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path), "--out", str(tmp_path / "out2"), "--workers", "1"]) == 0
    other = load(tmp_path / "out2")
    assert set(other.task) == {"Y"} and set(other.measure) == {"probe"}  # no factors named: no rows


def test_masked_embedding_keeps_the_published_token_count_and_is_the_full_one_unmasked():
    """embed_masked with ratio 0 is embed; at ratio rho each modality keeps floor(L (1 - rho))
    tokens, and the result differs from the full embedding; the measure skips unfused methods."""
    import torch

    from synergy_bench.check import tiny_method
    from synergy_bench.measures.masked_probe import MaskedProbe
    from synergy_bench.methods.comm import random_token_masks
    from synergy_bench.check import batch
    from synergy_bench.registry import get_method

    xs = batch(0, b=6)
    for name in ("comm", "infmasking"):
        m = tiny_method(get_method(name)).eval()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            full = m.embed(xs)
        assert torch.allclose(m.embed_masked(xs, 0.0, gen), full, atol=1e-6)
        assert not torch.allclose(m.embed_masked(xs, 0.7, gen), full, atol=1e-3)
    masks = random_token_masks([10, 4], 0.7, 3, 5, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert masks.shape == (3, 5, 14)
    assert (masks[..., :10].sum(-1) == 7).all() and (masks[..., 10:].sum(-1) == 3).all()  # keep 3 and 1
    ctx = SimpleNamespace(method=tiny_method(get_method("cross")))
    assert MaskedProbe(MaskedProbe.Params())(ctx) == []

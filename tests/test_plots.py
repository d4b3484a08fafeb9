"""Figure frames compute the right numbers from synthetic results tables, and ``report`` draws the
figures that the grid calls for (and only those)."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

from synergy_bench import plots
from synergy_bench.published import TRIFEATURE
from synergy_bench.results import COLUMNS

SEEDS = (0, 1, 2)


def _label(name: str, params: dict) -> str:
    return f"{name}[{','.join(f'{k}={v}' for k, v in sorted(params.items()))}]" if params else name


def results_frame(generator, gen_grid, methods, tasks, value, truth=None, chance=None):
    """A results table with every column of ``results.COLUMNS``.

    ``value(gen_params, method, method_params, task, metric, seed)`` gives each value;
    ``truth(gen_params, task)`` -> (truth_bits, truth_synergy); ``chance(task)``.
    """
    rows = []
    for gp in gen_grid:
        for index, (method, mp) in enumerate(methods):
            for seed in SEEDS:
                run_id = hashlib.sha256(json.dumps([gp, method, mp, seed], sort_keys=True).encode()).hexdigest()[:16]
                for task in tasks:
                    bits, syn = truth(gp, task) if truth else (1.0, 0.0)
                    for metric in ("balanced_accuracy", "bits"):
                        rows.append({
                            "run_id": run_id, "experiment": "test", "commit": "0123abc", "generator": generator,
                            "generator_label": _label(generator, gp), "generator_params": json.dumps(gp, sort_keys=True),
                            "method": method, "method_label": _label(method, mp),
                            "method_params": json.dumps(mp, sort_keys=True), "trained": True, "measure": "probe",
                            "measure_label": "probe", "measure_params": "{}", "grid_index": index,
                            "seed": seed, "task": task, "metric": metric,
                            "value": value(gp, method, mp, task, metric, seed),
                            "chance": chance(task) if chance else 0.5, "truth_bits": bits,
                            "truth_redundancy": 0.0, "truth_unique1": 0.0, "truth_unique2": 0.0,
                            "truth_synergy": syn, "train_seconds": 1.0, "measure_seconds": 0.1, "final_loss": 0.1,
                            "details": "{}", "device": "cpu",
                            "version": "0.1.0"})
    df = pd.DataFrame(rows)
    assert set(COLUMNS) == set(df.columns)
    return df


def written(paths):
    return sorted(p.name for p in paths)


# ---------------------------------------------------------------------------- generic grid
def test_generic_grid_gets_one_rus_figure_per_generator_setting(tmp_path):
    df = results_frame("latent", [{"noise": 0.25}, {"noise": 0.75}], [("comm", {}), ("cross", {})],
                       ["R", "S"], lambda gp, m, mp, t, metric, s: 0.6 + 0.1 * s)
    assert plots.synergy_frame(df).empty and plots.masking_frame(df).empty and plots.published_frame(df).empty
    names = written(plots.report(df, tmp_path))
    # labels with dots keep their full names (no two settings share a file)
    assert names == ["rus_latent_noise=0.25.pdf", "rus_latent_noise=0.25.png",
                     "rus_latent_noise=0.75.pdf", "rus_latent_noise=0.75.png"]
    assert all((tmp_path / n).stat().st_size > 0 for n in names)
    frame = plots.rus_frame(df[df.generator_label == "latent[noise=0.25]"])
    assert np.allclose(frame["mean"], 0.7) and np.allclose(frame["se"], 0.1 / np.sqrt(3)) and (frame.n == 3).all()


def test_one_task_grid_gets_one_figure_with_a_group_per_point(tmp_path):
    df = results_frame("latent", [{"noise": 0.25, "k": 2}, {"noise": 0.75, "k": 2}], [("comm", {})],
                       ["S"], lambda gp, m, mp, t, metric, s: gp["noise"] + 0.1 * s)
    assert plots.grid_points(df)[:1] == ["noise=0.25"]  # only the varying parameters name a point
    assert written(plots.report(df, tmp_path)) == ["rus.pdf", "rus.png"]
    frame = plots.rus_frame(df.assign(task=plots.grid_points(df)))
    assert list(frame.task) == ["noise=0.25", "noise=0.75"] and np.allclose(frame["mean"], [0.35, 0.85])
    other = results_frame("bitwise", [{"noise": 0.5}], [("comm", {})], ["S"], lambda *a: 0.5)
    both = pd.concat([df, other])                  # several generators: points named by their labels
    assert list(dict.fromkeys(plots.grid_points(both))) == ["latent[k=2,noise=0.25]", "latent[k=2,noise=0.75]",
                                                             "bitwise[noise=0.5]"]


# ---------------------------------------------------------------------------- synergy strength
def _syn_truth(gp, task):
    s = math.log2(gp["k"]) * (1 - gp["label_noise"]) if task == "S" else 0.0
    return s + 0.1, s


def _syn_value(gp, method, mp, task, metric, seed):
    s = _syn_truth(gp, task)[1]
    gain = {"comm": 0.5, "cross": 0.0}[method]
    return gain * s + 0.01 * seed if metric == "bits" else 0.5 + 0.1 * gain * s + 0.01 * seed


def test_synergy_frame_and_figure(tmp_path):
    grid = [{"k": k, "label_noise": e, "n_train": 100} for k in (2, 4) for e in (0.0, 0.5)]
    df = results_frame("latent", grid, [("cross", {}), ("comm", {})], ["R", "S"], _syn_value, _syn_truth)
    frame = plots.synergy_frame(df)
    assert frame.attrs["varying"] == ["k", "label_noise"]
    assert len(frame) == 8 and list(frame.method_label.unique()) == ["cross", "comm"]  # grid order
    row = frame[(frame.method_label == "comm") & (frame.k == 4) & (frame.label_noise == 0.5)].iloc[0]
    assert row.truth_synergy == pytest.approx(1.0) and row.truth_bits == pytest.approx(1.1)
    assert row.bits_mean == pytest.approx(0.5 + 0.01) and row.bits_se == pytest.approx(0.01 / np.sqrt(3))
    assert row.fraction_mean == pytest.approx(np.mean([(0.5 + 0.01 * s) / 1.1 for s in SEEDS]))
    assert row.acc_mean == pytest.approx(0.55 + 0.01) and row.n_seeds == 3
    comm = frame[frame.method_label == "comm"]
    assert list(comm.truth_synergy) == sorted(comm.truth_synergy)  # lines run along the x axis
    names = written(plots.report(df, tmp_path))
    assert "synergy.png" in names and "synergy.pdf" in names and "masking.png" not in names


def test_synergy_frame_needs_two_exact_synergies():
    grid = [{"k": 2, "label_noise": 0.0, "n_train": n} for n in (100, 200)]  # one exact S: nothing to plot
    df = results_frame("latent", grid, [("comm", {})], ["S"], _syn_value, _syn_truth)
    assert plots.synergy_frame(df).empty


def test_synergy_frame_compares_settings_of_one_generator_only():
    """Two generators with one setting each (different exact S) give no synergy curve; a generator
    with two settings beside them gives one over its own settings."""
    one = results_frame("latent", [{"k": 2, "label_noise": 0.0}], [("comm", {})], ["S"], _syn_value, _syn_truth)
    other = results_frame("bitwise", [{"k": 4, "label_noise": 0.0}], [("comm", {})], ["S"], _syn_value, _syn_truth)
    assert plots.synergy_frame(pd.concat([one, other])).empty
    two = results_frame("latent", [{"k": k, "label_noise": 0.0} for k in (2, 4)], [("comm", {})], ["S"],
                        _syn_value, _syn_truth)
    frame = plots.synergy_frame(pd.concat([two, other]))
    assert sorted(frame.k) == [2, 4] and set(frame.generator_label) == set(two.generator_label)


# ---------------------------------------------------------------------------- masking ablation
def _mask_value(gp, method, mp, task, metric, seed):
    if method == "comm":
        return 0.6 + 0.01 * seed
    return 0.5 + 0.2 * mp["mask_ratio"] + 0.01 * mp["num_masks"] + 0.05 * mp["mask_lambda"] + 0.01 * seed


def _inf(ratio, masks, lam):
    return ("infmasking", {"mask_ratio": ratio, "num_masks": masks, "mask_lambda": lam, "masked_from": "same"})


def test_masking_frame_heat_map_curves_and_lambda(tmp_path):
    methods = [_inf(r, t, 1.0) for r in (0.3, 0.7) for t in (2, 6)] + [_inf(0.7, 6, lam) for lam in (0.0, 2.0)]
    methods.append(("comm", {}))
    df = results_frame("latent", [{"k": 2}], methods, ["S"], _mask_value)
    frame = plots.masking_frame(df)
    assert len(frame) == 7 and frame.reference.sum() == 1 and (frame.chance == 0.5).all()
    one = frame[(frame.mask_ratio == 0.3) & (frame.num_masks == 6)].iloc[0]
    assert one["mean"] == pytest.approx(0.5 + 0.06 + 0.06 + 0.05 + 0.01) and one["n"] == 3
    panels = plots.masking_panels(frame[frame.task == "S"])
    heat = panels["heat"]
    assert list(heat.index) == [0.3, 0.7] and list(heat.columns) == [2, 6]
    assert heat.loc[0.7, 2] == pytest.approx(0.5 + 0.14 + 0.02 + 0.05 + 0.01)
    assert list(panels["lambda"].mask_lambda) == [0.0, 1.0, 2.0]
    assert np.allclose(np.diff(panels["lambda"]["mean"]), 0.05)
    assert list(panels["reference"].method_label) == ["comm"]
    assert len(panels["ratio"]) == len(panels["masks"]) == 4
    names = written(plots.report(df, tmp_path))
    assert names == ["masking.pdf", "masking.png", "rus.pdf", "rus.png"]


def test_masking_lambda_sweep_alone_draws_curves_only(tmp_path):
    df = results_frame("latent", [{"k": 2}], [_inf(0.7, 6, lam) for lam in (0.0, 0.5, 1.0)], ["S"], _mask_value)
    panels = plots.masking_panels(plots.masking_frame(df))
    assert set(panels) == {"reference", "lambda"}
    assert "masking.png" in written(plots.report(df, tmp_path))


def test_no_masking_figure_when_the_knobs_are_fixed():
    df = results_frame("latent", [{"k": 2}], [_inf(0.7, 6, 1.0), ("comm", {})], ["S"], _mask_value)
    assert plots.masking_frame(df).empty


# ---------------------------------------------------------------------------- ours vs published
COMM = ("comm", {"temperature": 0.1})
INF = ("infmasking", {"temperature": 0.1, "mask_ratio": 0.7, "num_masks": 6, "mask_lambda": 1.0, "masked_from": "same"})


def _tri_value(gp, method, mp, task, metric, seed):
    ours = {"comm": {"R": 0.997, "U1": 0.85, "U2": 0.85, "S": 0.70},
            "infmasking": {"R": 0.999, "U1": 0.90, "U2": 0.90, "S": 0.80},
            "factorcl": {"R": 0.9, "U1": 0.6, "U2": 0.6, "S": 0.5},
            "supervised": {"R": 1.0, "U1": 1.0, "U2": 1.0, "S": 1.0}}[method][task]
    if task == "S" and gp["protocol"] == "ru":
        ours = 0.5  # the S control of the R/U protocol: must not be compared
    return ours + 0.01 * (seed - 1)


def _tri_df(methods=(COMM, INF, ("supervised", {})), size=224):
    grid = [{"protocol": p, "image_size": size, "n_train": 10000} for p in ("ru", "s")]
    return results_frame("trifeature", grid, list(methods),
                         ["R", "U1", "U2", "S"], _tri_value, chance=lambda t: 0.5 if t == "S" else 0.1)


def test_published_frame_deviations_in_published_std():
    frame = plots.published_frame(_tri_df())
    pub = {(r.name, t): v for r in TRIFEATURE for t, v in r.scores.items()}
    # R and U from the ru protocol, S from the s protocol; supervised has no published row
    ru, s = "trifeature[image_size=224,n_train=10000,protocol=ru]", "trifeature[image_size=224,n_train=10000,protocol=s]"
    assert set(zip(frame.generator_label, frame.task)) == {(ru, "R"), (ru, "U1"), (s, "S")}
    assert set(frame.method) == {"comm", "infmasking"}
    assert (frame.method == "comm").sum() == 5  # R once, U and S against both CoMM rows
    r = frame[(frame.published == "CoMM") & (frame.task == "R")].iloc[0]
    # seeds 0, 1, 2 at 99.7 - 1, 99.7, 99.7 + 1: std 1, SE 1 / sqrt(3)
    assert r.ours_mean == pytest.approx(99.7) and r.ours_se == pytest.approx(1 / np.sqrt(3)) and r.n_seeds == 3
    assert r.published_mean == pub["CoMM", "R"][0]
    assert r.deviation == pytest.approx((99.7 - 99.9) / 0.1)
    s = frame[(frame.published == "InfMasking") & (frame.task == "S")].iloc[0]
    assert s.ours_mean == pytest.approx(80.0) and s.deviation == pytest.approx((80.0 - 77.0) / 4.2)
    assert s.chance == pytest.approx(50.0)
    assert list(frame.method.unique()) == ["comm", "infmasking"]  # grid order


def test_published_only_for_the_published_setting():
    """Of a masking grid, only the setting of the published run is compared; a FactorCL with
    another critic than the paper's is not compared at all."""
    off = [("infmasking", {**INF[1], "mask_ratio": r, "num_masks": t}) for r, t in ((0.3, 6), (0.7, 2), (0.9, 10))]
    df = _tri_df([COMM, *off, INF, ("factorcl", {"critic": "separable"})])
    frame = plots.published_frame(df)
    assert set(frame[frame.method == "infmasking"].method_label) == {_label(*INF)}
    assert "factorcl" not in set(frame.method)
    concat = plots.published_frame(_tri_df([("factorcl", {"critic": "concat"})]))
    assert set(concat.published) == {"FactorCL"} and len(concat) == 3


def test_no_published_comparison_off_the_published_data():
    """The cpu profiles' 32 px images (or fewer pairs) are not the published setting."""
    assert plots.published_frame(_tri_df(size=32)).empty
    assert plots.published_frame(_tri_df().assign(generator_params=lambda d: d.generator_params.str.replace(
        '"n_train": 10000', '"n_train": 2000'))).empty


def test_published_deviation_is_missing_without_a_published_std():
    df = results_frame("trifeature", [{"protocol": "ru", "image_size": 224, "n_train": 10000}], [("cross", {})], ["R", "U1"],
                       lambda gp, m, mp, t, metric, s: 0.9, chance=lambda t: 0.1)
    frame = plots.published_frame(df)
    assert len(frame) == 2 and frame.deviation.isna().all() and frame.published_std.isna().all()
    assert frame.ours_se.tolist() == [0.0, 0.0]
    text = plots.format_published(frame)
    assert "Cross" in text and "90.0 ± 0.0" in text and "100.0" in text and "SE" in text


def test_published_text_and_report_files(tmp_path):
    df = _tri_df()
    text = plots.format_published(plots.published_frame(df))
    assert f"{(99.7 - 99.9) / 0.1:+.1f}" in text and "Wen, Dai et al." in text and "CoMM (own paper)" in text
    names = written(plots.report(df, tmp_path))
    assert {"published.txt", "published.png", "published.pdf"} <= set(names)
    assert (tmp_path / "published.txt").read_text().strip() == text
    assert not {"synergy.png", "masking.png"} & set(names)


def test_no_published_comparison_off_trifeature():
    df = results_frame("latent", [{"k": 2}], [("comm", {})], ["R", "U1", "S"], lambda *a: 0.8)
    assert plots.published_frame(df).empty and plots.format_published(plots.published_frame(df)) == ""


# ---------------------------------------------------------------------------- what the drawings show
@pytest.fixture
def figures(monkeypatch):
    """The figures the draw functions make, kept open instead of written."""
    made = []
    monkeypatch.setattr(plots, "_save", lambda fig, stem: made.append(fig) or [stem])
    yield made
    for fig in made:
        plots.plt.close(fig)


def test_error_note_names_the_statistic_and_the_seed_count():
    assert plots.error_note([3, 3]) == "mean ± SE over 3 seeds"
    assert plots.error_note([2, 5]) == "mean ± SE over 2–5 seeds"
    assert plots.error_note([1, 3]).endswith("no bar where 1 seed")
    assert plots.error_note([1]) == "1 seed, no error bars"


def test_bar_errors_are_standard_errors(figures):
    values = {0: 0.6, 1: 0.7, 2: 0.95}
    df = results_frame("latent", [{"k": 2}], [("comm", {}), ("cross", {})], ["R", "S"],
                       lambda gp, m, mp, t, metric, s: values[s])
    plots.draw_rus(plots.rus_frame(df), "t", Path("x"))
    ax = figures[0].axes[0]
    assert "mean ± SE over 3 seeds" in ax.get_ylabel()
    se = np.std(list(values.values()), ddof=1) / np.sqrt(3)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]  # one per method
    segments = [seg for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    assert len(bars) == 2 and len(segments) == 4
    assert all(seg[1, 1] - seg[0, 1] == pytest.approx(2 * se) for seg in segments)


def test_many_settings_become_a_heat_map(figures):
    methods = [_inf(r, t, 1.0) for r in (0.1, 0.3, 0.5, 0.7, 0.9) for t in (1, 2, 4)]
    df = results_frame("latent", [{"k": 2}], methods, ["S"], _mask_value)
    frame = plots.rus_frame(df)
    plots.draw_rus(frame, "t", Path("x"))
    ax = figures[0].axes[0]
    assert not ax.patches and len(ax.images) == 1
    share = ax.images[0].get_array()
    assert share.shape == (15, 1)
    assert np.allclose(share[:, 0], (frame["mean"] - 0.5) / 0.5)  # the way from chance to 1
    assert [t.get_text() for t in ax.get_yticklabels()] == list(frame.method_label)


@pytest.mark.parametrize("grid", [[{"k": k, "label_noise": e} for k in (2, 4, 8) for e in (0.0, 0.2)],
                                  [{"n_train": 2000}, {"n_train": 10000}]])
def test_grid_point_names_on_the_axis_do_not_overlap(figures, grid):
    df = results_frame("latent", grid, [("supervised", {})], ["S"], lambda *a: 0.9)
    plots.draw_rus(plots.rus_frame(df.assign(task=plots.grid_points(df))), "t", Path("x"))
    fig = figures[0]
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in fig.axes[0].get_xticklabels()]
    assert len(boxes) == len(grid)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("n", [1, 7, 10, 11, 20, 21, 34])
def test_colours_never_repeat(n):
    assert len({tuple(np.round(c, 6)) for c in plots.distinct_colors(n)}) == n


def test_synergy_lines_have_distinct_colours_and_a_bits_axis_without_outliers(figures):
    methods = [("comm", {"temperature": t}) for t in np.linspace(0.05, 0.6, 12)]

    def value(gp, method, mp, task, metric, seed):
        if metric == "bits" and mp["temperature"] == 0.6 and gp["k"] == 4:
            return -3.0  # a badly calibrated probe: must not set the axis
        return 0.3 * _syn_truth(gp, task)[1] if metric == "bits" else 0.6

    grid = [{"k": k, "label_noise": 0.0} for k in (2, 4, 8)]
    df = results_frame("latent", grid, methods, ["S"], value, _syn_truth)
    plots.draw_synergy(plots.synergy_frame(df), "t", Path("x"))
    bits_ax, frac_ax = figures[0].axes  # one panel column: bits above, fraction below
    legend = {t.get_text() for t in bits_ax.get_legend().get_texts()}
    assert len(legend) == 13  # 12 methods and the exact S
    colours = {c.get_label(): tuple(c.lines[0].get_color()) for c in bits_ax.containers}
    assert set(colours) == legend - {"exact S"} and len(set(colours.values())) == 12
    top = 1.1 * max(_syn_truth({"k": 8, "label_noise": 0.0}, "S"))
    assert bits_ax.get_ylim() == pytest.approx((plots.BITS_FLOOR, top))
    marks = [line for line in bits_ax.get_lines() if line.get_marker() == "v"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(plots.BITS_FLOOR)
    assert any("-3.00" in t.get_text() for t in bits_ax.texts)
    assert frac_ax.get_ylim() == pytest.approx((plots.BITS_FLOOR, 1.1))
